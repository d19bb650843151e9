package postgres

import (
	"testing"

	"github.com/feedmq/feedmq/channels"
)

// A notification payload comes from whatever process shares the
// database: any bytes decode to a change or an error, never a panic, and
// a decoded change survives a round trip.
func FuzzDecodeNotice(f *testing.F) {
	for _, s := range []string{`{"v":1,"k":"channel","id":1}`, `{"v":7,"k":"device","id":3,"del":true,"rev":true}`,
		`{"v":2,"k":"resync"}`, `{"v":9,"k":"from the future"}`, `{`, `[]`, `{"v":-1}`, `{"id":1e99}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeNotice(s)
		if err != nil {
			return
		}
		if c.Kind < channels.ChangeChannel || c.Kind > channels.ChangeResync {
			t.Fatalf("%q decodes to kind %d", s, c.Kind)
		}
		again, err := decodeNotice(encodeNotice(c))
		if err != nil || again != c {
			t.Fatalf("%q: %+v does not survive a round trip: %+v, %v", s, c, again, err)
		}
	})
}
