package httpd_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// listen serves e's API on a loopback port and returns its base URL.
func (e *env) listen() string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: e.h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}

// fetch GETs url as curl would and returns status, Content-Type and body.
func fetch(t *testing.T, url string) response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// meter is a private channel with fields 1 and 2 and six entries on 22
// November 2026, with an empty hour (10:00) between them:
//
//	09:05  1     10
//	09:20  2     ok
//	09:40  4     -
//	09:59  -3    20
//	11:10  2,5   -
//	11:50  x     -
const meterChannel = `{"id":1,"name":"Meter","field1":"Temperature","field2":"Humidity","created_at":"2026-11-01T09:00:00Z","updated_at":"2026-11-01T09:00:00Z","last_entry_id":6}`

func newMeter(t *testing.T) (*env, *channels.Channel, string) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Meter", "", false, map[int]string{1: "Temperature", 2: "Humidity"})
	e.entry(ch.ID, at(9, 5, 0), map[int]string{0: "1", 1: "10", channels.Status: "first"})
	e.entry(ch.ID, at(9, 20, 0), map[int]string{0: "2", 1: "ok"})
	e.entry(ch.ID, at(9, 40, 0), map[int]string{0: "4"})
	e.entry(ch.ID, at(9, 59, 0), map[int]string{0: "-3", 1: "20"})
	e.entry(ch.ID, at(11, 10, 0), map[int]string{0: "2,5"})
	e.entry(ch.ID, at(11, 50, 0), map[int]string{0: "x"})
	return e, ch, e.listen() + "/channels/1/"
}

// TestAggregateParams reads each parameter in JSON and CSV over HTTP and
// compares with rows computed by hand.
func TestAggregateParams(t *testing.T) {
	_, ch, base := newMeter(t)
	key := "api_key=" + ch.ReadKey
	feeds := func(rows ...string) string {
		return `{"channel":` + meterChannel + `,"feeds":[` + strings.Join(rows, ",") + `]}`
	}
	// feedsAt is feeds with the channel's times in another zone.
	feedsAt := func(channelTime string, rows ...string) string {
		return strings.ReplaceAll(feeds(rows...), `"2026-11-01T09:00:00Z"`, `"`+channelTime+`"`)
	}
	emptyHour := `{"created_at":"2026-11-22T10:00:00Z","field1":null,"field2":null}`
	cases := []struct{ query, json, csv string }{
		{"timescale=60", feeds(
			`{"created_at":"2026-11-22T09:00:00Z","field1":"1","field2":"10"}`, emptyHour,
			`{"created_at":"2026-11-22T11:00:00Z","field1":"2,5","field2":null}`),
			"created_at,field1,field2\n2026-11-22 09:00:00 UTC,1,10\n2026-11-22 10:00:00 UTC,,\n2026-11-22 11:00:00 UTC,\"2,5\",\n"},
		// 1+2+4-3; 10+20 ("ok" and "x" are no numbers). After "2,5" the
		// answer writes numbers with a decimal comma.
		{"sum=60", feeds(
			`{"created_at":"2026-11-22T09:00:00Z","field1":"4.0","field2":"30.0"}`, emptyHour,
			`{"created_at":"2026-11-22T11:00:00Z","field1":"2,5","field2":null}`),
			"created_at,field1,field2\n2026-11-22 09:00:00 UTC,4.0,30.0\n2026-11-22 10:00:00 UTC,,\n2026-11-22 11:00:00 UTC,\"2,5\",\n"},
		{"average=60", feeds(
			`{"created_at":"2026-11-22T09:00:00Z","field1":"1.0","field2":"15.0"}`, emptyHour,
			`{"created_at":"2026-11-22T11:00:00Z","field1":"2,5","field2":null}`),
			"created_at,field1,field2\n2026-11-22 09:00:00 UTC,1.0,15.0\n2026-11-22 10:00:00 UTC,,\n2026-11-22 11:00:00 UTC,\"2,5\",\n"},
		// sorted -3 1 2 4: (1+2)/2.
		{"median=60&round=2", feeds(
			`{"created_at":"2026-11-22T09:00:00Z","field1":"1.50","field2":"15.00"}`, emptyHour,
			`{"created_at":"2026-11-22T11:00:00Z","field1":"2,50","field2":null}`),
			"created_at,field1,field2\n2026-11-22 09:00:00 UTC,1.50,15.00\n2026-11-22 10:00:00 UTC,,\n2026-11-22 11:00:00 UTC,\"2,50\",\n"},
		{"average=daily", feeds(`{"created_at":"2026-11-22T00:00:00Z","field1":"1,3","field2":"15,0"}`),
			"created_at,field1,field2\n2026-11-22 00:00:00 UTC,\"1,3\",\"15,0\"\n"},
		// daily in New York: 22 November starts at 05:00 UTC.
		{"sum=daily&timezone=America/New_York&round=1", feedsAt("2026-11-01T04:00:00-05:00", `{"created_at":"2026-11-22T00:00:00-05:00","field1":"6,5","field2":"30,0"}`),
			"created_at,field1,field2\n2026-11-22 00:00:00 -0500,\"6,5\",\"30,0\"\n"},
		// 60-minute buckets count from 00:00 UTC: at +05:30 they start at
		// half past.
		{"timescale=60&offset=5.5&results=2", feedsAt("2026-11-01T14:30:00+05:30", `{"created_at":"2026-11-22T16:30:00+05:30","field1":"2,5","field2":null}`),
			"created_at,field1,field2\n2026-11-22 16:30:00 +0530,\"2,5\",\n"},
		// results has priority: the newest 2 entries, one bucket.
		{"sum=60&results=2", feeds(`{"created_at":"2026-11-22T11:00:00Z","field1":"2,5","field2":null}`),
			"created_at,field1,field2\n2026-11-22 11:00:00 UTC,\"2,5\",\n"},
		// round on entries rounds numbers only; a comma stays.
		{"round=1&results=2", feeds(
			`{"created_at":"2026-11-22T11:10:00Z","entry_id":5,"field1":"2,5","field2":null}`,
			`{"created_at":"2026-11-22T11:50:00Z","entry_id":6,"field1":"x","field2":null}`),
			"created_at,entry_id,field1,field2\n2026-11-22 11:10:00 UTC,5,\"2,5\",\n2026-11-22 11:50:00 UTC,6,x,\n"},
		// min drops entry 4 (-3) whole; max drops entries 1 and 4
		// (field2 10 and 20 above 5).
		{"min=0", feeds(
			`{"created_at":"2026-11-22T09:05:00Z","entry_id":1,"field1":"1","field2":"10"}`,
			`{"created_at":"2026-11-22T09:20:00Z","entry_id":2,"field1":"2","field2":"ok"}`,
			`{"created_at":"2026-11-22T09:40:00Z","entry_id":3,"field1":"4","field2":null}`,
			`{"created_at":"2026-11-22T11:10:00Z","entry_id":5,"field1":"2,5","field2":null}`,
			`{"created_at":"2026-11-22T11:50:00Z","entry_id":6,"field1":"x","field2":null}`),
			"created_at,entry_id,field1,field2\n2026-11-22 09:05:00 UTC,1,1,10\n2026-11-22 09:20:00 UTC,2,2,ok\n" +
				"2026-11-22 09:40:00 UTC,3,4,\n2026-11-22 11:10:00 UTC,5,\"2,5\",\n2026-11-22 11:50:00 UTC,6,x,\n"},
		{"max=5&end=2026-11-22%2010:00:00", feeds(
			`{"created_at":"2026-11-22T09:20:00Z","entry_id":2,"field1":"2","field2":"ok"}`,
			`{"created_at":"2026-11-22T09:40:00Z","entry_id":3,"field1":"4","field2":null}`),
			"created_at,entry_id,field1,field2\n2026-11-22 09:20:00 UTC,2,2,ok\n2026-11-22 09:40:00 UTC,3,4,\n"},
		// min and max look at the sums.
		{"sum=60&min=3&max=30", feeds(
			`{"created_at":"2026-11-22T09:00:00Z","field1":"4.0","field2":"30.0"}`, emptyHour,
			`{"created_at":"2026-11-22T11:00:00Z","field1":"2,5","field2":null}`),
			"created_at,field1,field2\n2026-11-22 09:00:00 UTC,4.0,30.0\n2026-11-22 10:00:00 UTC,,\n2026-11-22 11:00:00 UTC,\"2,5\",\n"},
		// status=true: timescale keeps the first entry's status.
		{"timescale=240&status=true&end=2026-11-22%2010:00:00", feeds(`{"created_at":"2026-11-22T08:00:00Z","field1":"1","field2":"10","status":"first"}`),
			"created_at,field1,field2,status\n2026-11-22 08:00:00 UTC,1,10,first\n"},
	}
	for _, c := range cases {
		if !strings.Contains(c.query, "results=") && !strings.Contains(c.query, "end=") {
			c.query += "&results=6"
		}
		if r := fetch(t, base+"feeds.json?"+key+"&"+c.query); r.status != 200 || r.body != c.json {
			t.Errorf("feeds.json?%s: %d\n%s\nwant\n%s", c.query, r.status, r.body, c.json)
		}
		if r := fetch(t, base+"feeds.csv?"+key+"&"+c.query); r.status != 200 || r.body != c.csv || r.header.Get("Content-Type") != ctCSV {
			t.Errorf("feeds.csv?%s: %d %s\n%s\nwant\n%s", c.query, r.status, r.header.Get("Content-Type"), r.body, c.csv)
		}
	}

	// fields/<N> aggregates only that field.
	want := `{"channel":` + meterChannel + `,"feeds":[{"created_at":"2026-11-22T09:00:00Z","field2":"15.0"},` +
		`{"created_at":"2026-11-22T10:00:00Z","field2":null},{"created_at":"2026-11-22T11:00:00Z","field2":null}]}`
	if r := fetch(t, base+"fields/2.json?"+key+"&results=6&median=60"); r.body != want {
		t.Errorf("fields/2.json median:\n%s\nwant\n%s", r.body, want)
	}
	// (1+2)/2 = 1.5 and (4-3)/2 = 0.5 to no decimals, half-way to even
	// as printf does: "2" and "0"; 2,5 -> "2".
	if r := fetch(t, base+"fields/1.csv?"+key+"&results=6&average=30&round=0"); r.body !=
		"created_at,field1\n2026-11-22 09:00:00 UTC,2\n2026-11-22 09:30:00 UTC,0\n2026-11-22 10:00:00 UTC,\n"+
			"2026-11-22 10:30:00 UTC,\n2026-11-22 11:00:00 UTC,2\n2026-11-22 11:30:00 UTC,\n" {
		t.Errorf("fields/1.csv average=30&round=0: %q", r.body)
	}
}

// TestAggregateResultsPriority: results=120&sum=60 over an entry a minute
// gives two rows, whatever lies before.
func TestAggregateResultsPriority(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Many", "", true, map[int]string{1: "v"})
	for i := range 150 { // 09:30 .. 11:59, values 1..150
		e.entry(ch.ID, at(9, 30, 0).Add(time.Duration(i)*time.Minute), map[int]string{0: strconv.Itoa(i + 1)})
	}
	base := e.listen() + "/channels/1/"
	// entries 31..150: 10:00..10:59 sum 31..90 = 3630, 11:00..11:59
	// sum 91..150 = 7230.
	r := fetch(t, base+"feeds.csv?results=120&sum=60")
	if r.body != "created_at,field1\n2026-11-22 10:00:00 UTC,3630.0\n2026-11-22 11:00:00 UTC,7230.0\n" {
		t.Errorf("results=120&sum=60: %q", r.body)
	}

	// last_<kind>: the newest N entries (at most 100) in N-minute
	// buckets; the newest bucket.
	cases := []struct{ path, want string }{
		{"feeds/last_average.json?average=10", `{"created_at":"2026-11-22T11:50:00Z","field1":"145.5"}`},
		{"feeds/last_average?average=10", `{"created_at":"2026-11-22T11:50:00Z","field1":"145.5"}`},
		{"feeds/last_median.json?median=15", `{"created_at":"2026-11-22T11:45:00Z","field1":"143.0"}`},
		{"feeds/last_sum.json?sum=20&round=2", `{"created_at":"2026-11-22T11:40:00Z","field1":"2810.00"}`},
		{"feeds/last_sum.json?sum=20&offset=-5", `{"created_at":"2026-11-22T06:40:00-05:00","field1":"2810.0"}`},
		// 720 entries are capped at 100 (51..150), all in the 00:00 bucket.
		{"feeds/last_average.json?average=720", `{"created_at":"2026-11-22T00:00:00Z","field1":"100.5"}`},
		{"feeds/last_average.json?average=10&callback=cb", `/**/cb({"created_at":"2026-11-22T11:50:00Z","field1":"145.5"})`},
		{"feeds/last_average.csv?average=10", "created_at,field1\n2026-11-22 11:50:00 UTC,145.5\n"},
		{"feeds/last_sum.txt?sum=20&field_id=1", "2810.0"},
		{"feeds/last_sum.txt?sum=20", `{"created_at":"2026-11-22T11:40:00Z","field1":"2810.0"}`},
		{"feeds/last_sum.json?sum=20&status=true", `{"created_at":"2026-11-22T11:40:00Z","field1":"2810.0","status":null}`},
	}
	// round rounds one entry too.
	cases = append(cases,
		struct{ path, want string }{"fields/1/last.txt?round=2", "150.00"},
		struct{ path, want string }{"feeds/last.json?round=1", `{"created_at":"2026-11-22T11:59:00Z","entry_id":150,"field1":"150.0"}`},
		struct{ path, want string }{"feeds/entry/3.csv?round=0&average=60", "created_at,entry_id,field1\n2026-11-22 09:32:00 UTC,3,3\n"},
	)
	for _, c := range cases {
		if r := fetch(t, base+c.path); r.status != 200 || r.body != c.want {
			t.Errorf("%s: %d %q, want %q", c.path, r.status, r.body, c.want)
		}
	}
}

// TestAggregateRefusals: malformed, oversized and unauthorised aggregate
// reads get a 4xx naming the parameter, and leak nothing.
func TestAggregateRefusals(t *testing.T) {
	e, ch, base := newMeter(t)
	key := "api_key=" + ch.ReadKey
	bad := map[string]string{
		"feeds.json?average=5":                              "average must be 10, 15, 20, 30, 60, 240, 720 or 1440 (minutes), or daily.",
		"feeds.json?sum=60.0":                               "sum must be 10, 15, 20, 30, 60, 240, 720 or 1440 (minutes), or daily.",
		"feeds.json?timescale=" + strings.Repeat("9", 5000): "timescale must be 10, 15, 20, 30, 60, 240, 720 or 1440 (minutes), or daily.",
		"feeds.json?median=Daily":                           "median must be 10, 15, 20, 30, 60, 240, 720 or 1440 (minutes), or daily.",
		"feeds.json?round=2.5":                              "round must be a whole number of decimals from 0 to 30.",
		"feeds.json?round=" + strings.Repeat("9", 5000):     "round must be a whole number of decimals from 0 to 30.",
		"feeds.json?min=2,5":                                "min must be a number, such as 20 or -2.5.",
		"feeds.json?max=" + strings.Repeat("9", 400):        "max must be a number, such as 20 or -2.5.",
		"fields/1.json?max=NaN":                             "max must be a number, such as 20 or -2.5.",
		"feeds/last_average.json":                           "average must be a whole number from 1: the newest entries to take (at most 100), in buckets of that many minutes.",
		"feeds/last_average.json?average=0":                 "average must be a whole number from 1: the newest entries to take (at most 100), in buckets of that many minutes.",
		"feeds/last_median.json?average=10":                 "median must be a whole number from 1: the newest entries to take (at most 100), in buckets of that many minutes.",
		"feeds/last_sum.json?sum=-1":                        "sum must be a whole number from 1: the newest entries to take (at most 100), in buckets of that many minutes.",
		"feeds/last_sum.json?sum=10&field_id=9":             "field_id must be a field number from 1 to 8.",
		"feeds/last_sum.json?sum=10&round=x":                "round must be a whole number of decimals from 0 to 30.",
	}
	for path, details := range bad {
		sep := "&"
		if !strings.Contains(path, "?") {
			sep = "?"
		}
		r := fetch(t, base+path+sep+key)
		want := `{"status":"400","error":{"error_code":"error_bad_request","message":"Bad Request","details":"` + details + `"}}`
		if r.status != 400 || r.body != want {
			t.Errorf("%s: %d %s\nwant %s", path, r.status, r.body, want)
		}
	}
	if r := fetch(t, base+"feeds.csv?average=7&"+key); r.status != 400 || r.body != "error_bad_request" {
		t.Errorf("csv refusal: %d %q", r.status, r.body)
	}

	// No key, a wrong key, another channel, no such format.
	for path, status := range map[string]int{
		"feeds/last_average.json?average=10":                   401,
		"feeds/last_average.json?average=10&api_key=WRONGKEY1": 401,
		"feeds.json?average=60":                                401,
		"feeds/last_average.html?average=10&" + key:            404,
		"feeds/last_averages.json?average=10&" + key:           404,
	} {
		if r := fetch(t, base+path); r.status != status {
			t.Errorf("%s: %d, want %d", path, r.status, status)
		}
	}
	other := strings.Replace(base, "/channels/1/", "/channels/2/", 1)
	if r := fetch(t, other+"feeds/last_sum.json?sum=10&"+key); r.status != 404 {
		t.Errorf("other channel: %d", r.status)
	}

	// A channel without entries has no last bucket: -1, as ThingSpeak
	// answers it (and a <feed> without entry-id in XML).
	empty := e.channel("Empty", "", true, map[int]string{1: "a"})
	emptyBase := strings.Replace(base, "/channels/1/", "/channels/"+strconv.FormatUint(empty.ID, 10)+"/", 1)
	if r := fetch(t, emptyBase+"feeds/last_average.json?average=10"); r.status != 200 || r.body != "-1" {
		t.Errorf("empty channel last_average: %d %s", r.status, r.body)
	}
	if r := fetch(t, emptyBase+"feeds/last_average.xml?average=10"); r.status != 200 || !strings.Contains(r.body, `<entry-id type="integer" nil="true">`) {
		t.Errorf("empty channel last_average.xml: %d %s", r.status, r.body)
	}
	if r := fetch(t, emptyBase+"feeds.json?average=10"); r.status != 200 || !strings.HasSuffix(r.body, `"feeds":[]}`) {
		t.Errorf("empty channel average: %d %s", r.status, r.body)
	}

	// Two entries decades apart in 10-minute buckets would be millions of
	// empty rows: refused before anything is sent.
	far := e.channel("Far", "", true, map[int]string{1: "a"})
	e.entry(far.ID, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), map[int]string{0: "1"})
	e.entry(far.ID, at(9, 0, 0), map[int]string{0: "2"})
	farBase := strings.Replace(base, "/channels/1/", "/channels/"+strconv.FormatUint(far.ID, 10)+"/", 1)
	wantFar := `{"status":"400","error":{"error_code":"error_bad_request","message":"Bad Request","details":"The entries span more than 100000 buckets: ask for a wider bucket, fewer results or a shorter start..end."}}`
	if r := fetch(t, farBase+"feeds.json?results=10&timescale=10"); r.status != 400 || r.body != wantFar {
		t.Errorf("far apart: %d %s", r.status, r.body)
	}
	if r := fetch(t, farBase+"feeds.json?results=10&timescale=daily"); r.status != 200 || strings.Count(r.body, "created_at") != 1+13475 {
		t.Errorf("far apart, daily: %d, %d rows", r.status, strings.Count(r.body, "created_at")-1)
	}
	// Times that do not rise with entry_id: entries are read in time
	// order, so a back-dated entry decades old widens the span as much
	// as in entry_id order, and results takes the newest by time.
	odd := e.channel("Odd", "", true, map[int]string{1: "a"})
	e.entry(odd.ID, at(9, 0, 0), map[int]string{0: "1"})
	e.entry(odd.ID, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), map[int]string{0: "2"})
	e.entry(odd.ID, at(9, 10, 0), map[int]string{0: "4"})
	oddBase := strings.Replace(base, "/channels/1/", "/channels/"+strconv.FormatUint(odd.ID, 10)+"/", 1)
	if r := fetch(t, oddBase+"feeds.csv?results=10&sum=10"); r.status != 400 {
		t.Errorf("older entry: %d %q", r.status, r.body)
	}
	if r := fetch(t, oddBase+"feeds.csv?results=2&sum=10"); r.body != "created_at,field1\n2026-11-22 09:00:00 UTC,1.0\n2026-11-22 09:10:00 UTC,4.0\n" {
		t.Errorf("older entry left out by results: %q", r.body)
	}
	e.entry(odd.ID, time.Date(2060, 1, 1, 0, 0, 0, 0, time.UTC), map[int]string{0: "8"})
	e.entry(odd.ID, at(9, 20, 0), map[int]string{0: "16"})
	if r := fetch(t, oddBase+"feeds.json?results=10&sum=10"); r.status != 400 || r.body != wantFar {
		t.Errorf("far newer entry: %d %s", r.status, r.body)
	}
	if httpd.MaxBucketRows != 100_000 {
		t.Errorf("MaxBucketRows = %d: the message above names 100000", httpd.MaxBucketRows)
	}
}

// TestAggregateBackDated: an entry written with a created_at older than
// entries before it (a back-dated /update, or history added to a channel
// that already has readings) is aggregated into the bucket of its own
// time, as ThingSpeak, which reads feeds in created_at order, does. It
// must not fold into the bucket of a newer entry and collapse the range.
func TestAggregateBackDated(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Late", "", true, map[int]string{1: "v"})
	e.entry(ch.ID, at(11, 5, 0), map[int]string{0: "10"})
	e.entry(ch.ID, at(11, 40, 0), map[int]string{0: "20"})
	e.entry(ch.ID, at(9, 10, 0), map[int]string{0: "1000"}) // back-dated
	base := e.listen() + "/channels/1/"
	want := "created_at,field1\n2026-11-22 09:00:00 UTC,1000.0\n2026-11-22 10:00:00 UTC,\n2026-11-22 11:00:00 UTC,15.0\n"
	for _, q := range []string{"average=60", "average=60&start=2026-11-22%2000:00:00&end=2026-11-22%2023:00:00"} {
		if r := fetch(t, base+"feeds.csv?"+q); r.status != 200 || r.body != want {
			t.Errorf("%s: %d %q, want %q", q, r.status, r.body, want)
		}
	}
}

// TestLastAggregateBackDated: last_average, last_median and last_sum take
// the newest entries by created_at, as ThingSpeak's do, so a back-dated
// entry neither joins the newest bucket nor pushes a newer entry out of
// the count.
func TestLastAggregateBackDated(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Late", "", true, map[int]string{1: "v"})
	e.entry(ch.ID, at(11, 5, 0), map[int]string{0: "10"})
	e.entry(ch.ID, at(11, 40, 0), map[int]string{0: "20"})
	e.entry(ch.ID, at(9, 10, 0), map[int]string{0: "1000"}) // back-dated
	base := e.listen() + "/channels/1/feeds/"
	for q, want := range map[string]string{
		"last_average.json?average=60": `{"created_at":"2026-11-22T11:00:00Z","field1":"15.0"}`,
		"last_sum.json?sum=60":         `{"created_at":"2026-11-22T11:00:00Z","field1":"30.0"}`,
		"last_median.json?median=60":   `{"created_at":"2026-11-22T11:00:00Z","field1":"15.0"}`,
		// The newest two by time are 11:05 and 11:40, not 11:40 and
		// the back-dated one.
		"last_sum.json?sum=2": `{"created_at":"2026-11-22T11:40:00Z","field1":"20.0"}`,
	} {
		if r := fetch(t, base+q); r.status != 200 || r.body != want {
			t.Errorf("%s: %d %s, want %s", q, r.status, r.body, want)
		}
	}
}
