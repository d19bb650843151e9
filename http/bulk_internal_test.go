package httpd

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// rowString shows a decoded row as "payload|T" (T: it has a time) or
// "payload|d=DELTA".
func rowString(r bulkRow) string {
	s := string(r.payload)
	switch {
	case r.delta != "":
		s += "|d=" + r.delta
	case r.hasTime:
		s += "|T"
	}
	return s
}

func rowStrings(rows []bulkRow) string {
	var parts []string
	for _, r := range rows {
		parts = append(parts, rowString(r))
	}
	return strings.Join(parts, " ; ")
}

func TestParseBulkCSV(t *testing.T) {
	for _, tc := range []struct {
		name, updates string
		relative      bool
		want          string // rowStrings, or the error's details
		status        int    // of the error; 0 for none
	}{
		{"one row", "2026-11-30 10:00:00,1.5,2", false, "field1=1.5&field2=2&created_at=2026-11-30 10:00:00|T", 0},
		{"every column", "2026-11-30T10:00:00Z,1,2,3,4,5,6,7,8,52.5,-13.4,-2,all good", false,
			"field1=1&field2=2&field3=3&field4=4&field5=5&field6=6&field7=7&field8=8&latitude=52.5&longitude=-13.4&elevation=-2&status=all good&created_at=2026-11-30T10:00:00Z|T", 0},
		{"status keeps its commas", "1796032800,,,,,,,,,,,,a,b,,c", false, "status=a,b,,c&created_at=2026-11-30T10:00:00Z|T", 0},
		{"empty columns are unset", "1796032800,,7", false, "field2=7&created_at=2026-11-30T10:00:00Z|T", 0},
		{"escapes the payload syntax", "1796032800,a&b=c%d+e", false, "field1=a%26b%3Dc%25d%2Be&created_at=2026-11-30T10:00:00Z|T", 0},
		{"rows and a trailing pipe", "5,1|10,2|", true, "field1=1|d=5 ; field1=2|d=10", 0},
		{"trailing line end", "5,1\r\n", true, "field1=1|d=5", 0},
		{"time only", "5", true, "|d=5", 0},
		{"no time", ",1", false, "field1=1", 0},
		{"spaces around the time", " 5 ,1", true, "field1=1|d=5", 0},
		{"empty", "", false, "updates holds no update: send at least one.", 400},
		{"only a pipe", "|", false, "updates holds no update: send at least one.", 400},
		{"empty row", "5,1||6,2", true, "updates[1] is empty: separate updates with one |.", 400},
		{"blank row", "5,1| |6,2", true, "updates[1] is empty: separate updates with one |.", 400},
		{"too many rows", strings.Repeat("1,1|", MaxBulkUpdates) + "1,1", true, "updates holds 961 updates; the limit is 960 per request.", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := parseBulkCSV(tc.updates, tc.relative)
			if tc.status != 0 {
				ae, ok := err.(*apiError)
				if !ok || ae.status != tc.status || ae.details != tc.want {
					t.Fatalf("err = %v, want %d %q", err, tc.status, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rowStrings(rows); got != tc.want {
				t.Errorf("rows = %s\nwant   %s", got, tc.want)
			}
		})
	}
}

func TestDecodeBulkJSON(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		key        string
		relative   bool
		want       string // rowStrings, or the error's details (prefix)
		status     int
	}{
		{"absolute", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":24.90,"field2":"x"}]}`,
			"K", false, "field1=24.90&field2=x&created_at=2026-11-30 10:00:00|T", 0},
		{"relative", `{"write_api_key":"K","updates":[{"delta_t":0,"field1":1},{"delta_t":"15","field1":2}]}`,
			"K", true, "field1=1|d=0 ; field1=2|d=15", 0},
		{"aliases, bools and nulls", `{"api_key":"K","updates":[{"created_at":1796032800,"1":true,"lat":"1","long":2,"elevation":null,"status":"s"}]}`,
			"K", false, "1=true&lat=1&long=2&status=s&created_at=2026-11-30T10:00:00Z|T", 0},
		{"unknown names are ignored", `{"write_api_key":"K","extra":[1],"updates":[{"created_at":"2026-11-30 10:00:00","field1":1,"wavelength":5,"api_key":"X"}]}`,
			"K", false, "field1=1&created_at=2026-11-30 10:00:00|T", 0},
		{"write_api_key wins over api_key", `{"api_key":"A","write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":1}]}`,
			"K", false, "field1=1&created_at=2026-11-30 10:00:00|T", 0},
		{"null key", `{"write_api_key":null,"updates":[{"delta_t":1,"field1":1}]}`, "", true, "field1=1|d=1", 0},
		{"no time", `{"updates":[{"field1":1}]}`, "", false, "field1=1", 0},
		{"empty created_at is no time", `{"updates":[{"created_at":" ","field1":1}]}`, "", false, "field1=1&created_at= ", 0},
		{"escapes", `{"updates":[{"delta_t":1,"status":"a&b=c%+\n"}]}`, "", true, "status=a%26b%3Dc%25%2B%0A|d=1", 0},
		{"not an object", `[1]`, "", false, "The body must be a JSON object", 400},
		{"null body", `null`, "", false, "The body must be a JSON object", 400},
		{"empty body", ``, "", false, "The body must be a JSON object", 400},
		{"trailing data", `{"updates":[]}x`, "", false, "The body must be a JSON object", 400},
		{"key not a string", `{"write_api_key":5,"updates":[]}`, "", false, "write_api_key must be a string.", 400},
		{"no updates", `{"write_api_key":"K"}`, "", false, "updates is missing", 400},
		{"updates not an array", `{"updates":"1,2"}`, "", false, "updates must be an array of objects.", 400},
		{"update not an object", `{"updates":[{"delta_t":1,"field1":1},"x"]}`, "", false, "updates[1] must be an object", 400},
		{"array value", `{"updates":[{"delta_t":1,"field1":[1]}]}`, "", false, "updates[0].field1 must be a string or a number.", 400},
		{"delta_t and created_at", `{"updates":[{"delta_t":1,"created_at":"2026-11-30 10:00:00","field1":1}]}`, "", false, "updates[0] sets both created_at and delta_t: use one.", 400},
		{"mixed", `{"updates":[{"created_at":"2026-11-30 10:00:00","field1":1},{"delta_t":1,"field1":1}]}`, "", false, "updates[0] sets created_at and updates[1] delta_t: use one of them for every update.", 400},
		{"too many", `{"updates":[` + strings.Repeat(`{},`, MaxBulkUpdates) + `{}]}`, "", false, "updates holds more than 960 updates; the limit is 960 per request.", 413},
		{"many tiny updates", `{"updates":[` + strings.Repeat(`{},`, 100000) + `{}]}`, "", false, "updates holds more than 960 updates", 413},
		{"updates array unclosed", `{"updates":[{}`, "", false, "The body must be a JSON object", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, aerr := decodeBulkJSON([]byte(tc.body))
			if tc.status != 0 {
				if aerr == nil || aerr.status != tc.status || !strings.HasPrefix(aerr.details, tc.want) {
					t.Fatalf("err = %v, want %d %q", aerr, tc.status, tc.want)
				}
				return
			}
			if aerr != nil {
				t.Fatal(aerr)
			}
			if b.key != tc.key || b.relative != tc.relative {
				t.Errorf("key %q relative %v, want %q %v", b.key, b.relative, tc.key, tc.relative)
			}
			if got := rowStrings(b.rows); got != tc.want {
				t.Errorf("rows = %s\nwant   %s", got, tc.want)
			}
		})
	}
}

// fuzzChannel has every field enabled, so that fuzzed rows reach every
// check of channels.ParsePayload.
var fuzzChannel = &channels.Channel{ID: 1, Fields: [channels.NumFields]string{"1", "2", "3", "4", "5", "6", "7", "8"}}

// checkFuzzRows checks what any decoded batch must satisfy, and runs it
// through the checks a request makes: none may panic.
func checkFuzzRows(t *testing.T, rows []bulkRow, relative bool) {
	if len(rows) == 0 || len(rows) > MaxBulkUpdates {
		t.Fatalf("decoded %d rows", len(rows))
	}
	h := &handler{opts: APIOptions{Now: func() time.Time { return time.Unix(1796032800, 0) }}}
	es, aerr := h.bulkEntries(fuzzChannel, &bulkBatch{rows: rows, relative: relative})
	if aerr != nil {
		if aerr.status != http.StatusBadRequest && aerr.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d: %v", aerr.status, aerr)
		}
		return
	}
	for i := 1; i < len(es); i++ {
		if !es[i-1].CreatedAt.Before(es[i].CreatedAt) {
			t.Fatalf("entries not in strict time order: %v then %v", es[i-1].CreatedAt, es[i].CreatedAt)
		}
	}
}

func FuzzParseBulkCSV(f *testing.F) {
	f.Add("2026-11-30 10:00:00,1.5,2,,,,,,,52.5,13.4,7,ok, fine|1796032800,3", false)
	f.Add("5,1|10,2|", true)
	f.Add("0,a%zz|1,,,,,,,,,91", true)
	f.Add("|||", false)
	f.Fuzz(func(t *testing.T, updates string, relative bool) {
		rows, err := parseBulkCSV(updates, relative)
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		checkFuzzRows(t, rows, relative)
	})
}

func FuzzDecodeBulkJSON(f *testing.F) {
	f.Add([]byte(`{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":24.90,"status":"x"}]}`))
	f.Add([]byte(`{"updates":[{"delta_t":0,"field1":1},{"delta_t":"15","lat":"91"}]}`))
	f.Add([]byte(`{"updates":[{"created_at":1796032800,"1":true},{"created_at":1796032800,"2":null}]}`))
	f.Add([]byte(`{"updates":[[],{}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, aerr := decodeBulkJSON(body)
		if aerr != nil {
			if aerr.status != http.StatusBadRequest && aerr.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d: %v", aerr.status, aerr)
			}
			return
		}
		if len(b.rows) == 0 {
			return // refused later: "updates holds no update"
		}
		checkFuzzRows(t, b.rows, b.relative)
	})
}

func TestMaxBulkBody(t *testing.T) {
	for _, tc := range []struct {
		payload, want int
	}{
		{0, 960*(3000+512) + 4096}, // the default payload limit
		{1000, 960*(1000+512) + 4096},
		{64 << 10, 8 << 20}, // a raised payload limit stops at the cap
	} {
		h := &handler{opts: APIOptions{Limits: channels.Limits{MaxPayload: tc.payload}}}
		if got := h.maxBulkBody(); got != tc.want {
			t.Errorf("max_payload %d: body limit %d, want %d", tc.payload, got, tc.want)
		}
	}
}
