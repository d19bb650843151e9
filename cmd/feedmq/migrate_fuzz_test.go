package main

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeFeedEntry feeds arbitrary feeds.json entries to the migration's
// decoder: it must not crash, and an entry it accepts has an ID, a time
// and no value set to "".
func FuzzDecodeFeedEntry(f *testing.F) {
	f.Add(`{"created_at":"2021-05-21T16:41:53Z","entry_id":91,"field1":"100","field2":null}`)
	f.Add(`{"created_at":"2021-05-21 16:41:53 UTC","entry_id":1,"field1":21.5,"latitude":" 52.5 ","status":""}`)
	f.Add(`{"created_at":"2021-05-21T16:41:53+02:00","entry_id":18446744073709551615,"elevation":1e400}`)
	f.Fuzz(func(t *testing.T, in string) {
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(in), &m) != nil {
			return
		}
		e, err := decodeFeedEntry(m)
		if err != nil {
			return
		}
		if e.ID == 0 || e.CreatedAt.IsZero() {
			t.Fatalf("accepted %+v", e)
		}
		for i := range e.Values {
			if v, ok := e.Value(i); ok && v == "" {
				t.Fatalf("value %d set but empty: %+v", i, e)
			}
		}
	})
}
