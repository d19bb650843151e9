package httpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// weather is a private channel with fields 1, 2 and 4 and four entries.
type weather struct {
	*env
	ch *channels.Channel
}

func newWeather(t *testing.T) weather {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Weather", "Roof sensors", false, map[int]string{1: "Temperature", 2: "Humidity", 4: "Pressure"})
	e.entry(ch.ID, at(10, 0, 0), map[int]string{0: "21.5", 1: "40"})
	e.entry(ch.ID, at(10, 15, 0), map[int]string{0: "22", channels.Status: "ok", channels.Latitude: "52.5",
		channels.Longitude: "13.4", channels.Elevation: "34"})
	e.entry(ch.ID, at(10, 30, 0), map[int]string{1: "41", 2: "stale"}) // field3 is disabled
	e.entry(ch.ID, at(11, 0, 0), map[int]string{0: `23,5 "x"`, 3: "1013"})
	return weather{e, ch}
}

// url returns /channels/<id>/<path> with the read key appended.
func (w weather) url(path string, query ...string) string {
	q := append([]string{"api_key=" + w.ch.ReadKey}, query...)
	return "/channels/" + strconv.FormatUint(w.ch.ID, 10) + "/" + path + "?" + strings.Join(q, "&")
}

const weatherChannel = `{"id":1,"name":"Weather","description":"Roof sensors","field1":"Temperature","field2":"Humidity","field4":"Pressure","created_at":"2026-11-01T09:00:00Z","updated_at":"2026-11-01T09:00:00Z","last_entry_id":4}`

func TestFeedsJSON(t *testing.T) {
	w := newWeather(t)
	w.get(w.url("feeds.json")).want(t, 200, ctJSON, `{"channel":`+weatherChannel+`,"feeds":[`+
		`{"created_at":"2026-11-22T10:00:00Z","entry_id":1,"field1":"21.5","field2":"40","field4":null},`+
		`{"created_at":"2026-11-22T10:15:00Z","entry_id":2,"field1":"22","field2":null,"field4":null},`+
		`{"created_at":"2026-11-22T10:30:00Z","entry_id":3,"field1":null,"field2":"41","field4":null},`+
		`{"created_at":"2026-11-22T11:00:00Z","entry_id":4,"field1":"23,5 \"x\"","field2":null,"field4":"1013"}]}`)

	// status and location add their values after the fields.
	w.get(w.url("feeds.json", "results=2", "status=true", "location=true")).want(t, 200, ctJSON, `{"channel":`+weatherChannel+`,"feeds":[`+
		`{"created_at":"2026-11-22T10:30:00Z","entry_id":3,"field1":null,"field2":"41","field4":null,"latitude":null,"longitude":null,"elevation":null,"status":null},`+
		`{"created_at":"2026-11-22T11:00:00Z","entry_id":4,"field1":"23,5 \"x\"","field2":null,"field4":"1013","latitude":null,"longitude":null,"elevation":null,"status":null}]}`)
	w.get(w.url("feeds.json", "results=1", "start=2026-11-22%2010:15:00", "end=2026-11-22%2010:15:00", "status=1")).want(t, 200, ctJSON, `{"channel":`+weatherChannel+`,"feeds":[`+
		`{"created_at":"2026-11-22T10:15:00Z","entry_id":2,"field1":"22","field2":null,"field4":null,"status":"ok"}]}`)
}

func TestFeedsJSON_EmptyChannel(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	e.channel("Empty", "", true, map[int]string{3: `Label "3"`})
	e.get("/channels/1/feeds.json").want(t, 200, ctJSON,
		`{"channel":{"id":1,"name":"Empty","field3":"Label \"3\"","created_at":"2026-11-01T09:00:00Z","updated_at":"2026-11-01T09:00:00Z","last_entry_id":null},"feeds":[]}`)
	// ThingSpeak answers -1 for a last entry that does not exist; the
	// sketches of its Arduino library test for it.
	e.get("/channels/1/feeds/last.json").want(t, 200, ctJSON, "-1")
	e.get("/channels/1/feeds/last.txt").want(t, 200, ctText, "-1")
	e.get("/channels/1/fields/3/last.txt").want(t, 200, ctText, "-1")
	e.get("/channels/1/fields/3/last").want(t, 200, ctText, "-1")
	e.get("/channels/1/fields/3/last.json").want(t, 200, ctJSON, "-1")
	e.get("/channels/1/status/last.txt").want(t, 200, ctText, "-1")
	e.get("/channels/1/status/last.json").want(t, 200, ctJSON, "-1")
	e.get("/channels/1/feeds/last.xml").want(t, 200, ctXML, xmlHead+"<feed>\n  <entry-id type=\"integer\" nil=\"true\"></entry-id>\n</feed>\n")
	e.get("/channels/1/fields/3/last.xml").want(t, 200, ctXML, xmlHead+"<feed>\n  <entry-id type=\"integer\" nil=\"true\"></entry-id>\n</feed>\n")
	// CSV answers -1 too, on a line of its own, and so does an entry
	// asked for by number, as ThingSpeak's feed show answers all three.
	e.get("/channels/1/feeds/last.csv").want(t, 200, ctCSV, "-1\n")
	e.get("/channels/1/feeds/entry/1.json").want(t, 200, ctJSON, "-1")
	e.get("/channels/1/feeds.csv").want(t, 200, ctCSV, "created_at,entry_id,field3\n")
}

func TestFieldJSON(t *testing.T) {
	w := newWeather(t)
	w.get(w.url("fields/2.json", "results=3")).want(t, 200, ctJSON, `{"channel":`+weatherChannel+`,"feeds":[`+
		`{"created_at":"2026-11-22T10:15:00Z","entry_id":2,"field2":null},`+
		`{"created_at":"2026-11-22T10:30:00Z","entry_id":3,"field2":"41"},`+
		`{"created_at":"2026-11-22T11:00:00Z","entry_id":4,"field2":null}]}`)
	w.get(w.url("fields/1.csv", "results=2")).want(t, 200, ctCSV,
		"created_at,entry_id,field1\n2026-11-22 10:30:00 UTC,3,\n2026-11-22 11:00:00 UTC,4,\"23,5 \"\"x\"\"\"\n")
}

func TestLast(t *testing.T) {
	w := newWeather(t)
	w.get(w.url("feeds/last.json")).want(t, 200, ctJSON,
		`{"created_at":"2026-11-22T11:00:00Z","entry_id":4,"field1":"23,5 \"x\"","field2":null,"field4":"1013"}`)
	w.get(w.url("feeds/last.json", "timezone=America/New_York", "status=true")).want(t, 200, ctJSON,
		`{"created_at":"2026-11-22T06:00:00-05:00","entry_id":4,"field1":"23,5 \"x\"","field2":null,"field4":"1013","status":null}`)
	w.get(w.url("feeds/last.csv")).want(t, 200, ctCSV,
		"created_at,entry_id,field1,field2,field4\n2026-11-22 11:00:00 UTC,4,\"23,5 \"\"x\"\"\",,1013\n")

	// The last entry where the field is set, not the last entry.
	w.get(w.url("fields/2/last.json")).want(t, 200, ctJSON, `{"created_at":"2026-11-22T10:30:00Z","entry_id":3,"field2":"41"}`)
	w.get(w.url("fields/2/last.txt")).want(t, 200, ctText, "41")
	w.get(w.url("fields/1/last.txt")).want(t, 200, ctText, `23,5 "x"`)
	w.get(w.url("fields/2/last.csv")).want(t, 200, ctCSV, "created_at,entry_id,field2\n2026-11-22 10:30:00 UTC,3,41\n")
	// A field never set: -1, as ThingSpeak.
	w.get(w.url("fields/5/last.txt")).want(t, 200, ctText, "-1")
	w.get(w.url("fields/5/last.json")).want(t, 200, ctJSON, "-1")
	w.get(w.url("fields/5/last.csv")).want(t, 200, ctCSV, "-1\n")
}

func TestEntry(t *testing.T) {
	w := newWeather(t)
	w.get(w.url("feeds/entry/2.json", "location=true")).want(t, 200, ctJSON,
		`{"created_at":"2026-11-22T10:15:00Z","entry_id":2,"field1":"22","field2":null,"field4":null,"latitude":"52.5","longitude":"13.4","elevation":"34"}`)
	w.get(w.url("feeds/entry/2.csv", "offset=2")).want(t, 200, ctCSV,
		"created_at,entry_id,field1,field2,field4\n2026-11-22 12:15:00 +0200,2,22,,\n")
	// An entry that does not exist (never written, or gone to
	// retention) answers -1 as ThingSpeak's feed show does, in every
	// format; the channel must still exist.
	w.get(w.url("feeds/entry/9.json")).want(t, 200, ctJSON, "-1")
	w.get(w.url("feeds/entry/9.csv")).want(t, 200, ctCSV, "-1\n")
	w.get(w.url("feeds/entry/9.xml")).want(t, 200, ctXML, xmlHead+"<feed>\n  <entry-id type=\"integer\" nil=\"true\"></entry-id>\n</feed>\n")
	w.get(w.url("feeds/entry/18446744073709551615.json")).want(t, 200, ctJSON, "-1")
	w.get("/channels/99/feeds/entry/1.json").want(t, 404, ctJSON,
		`{"status":"404","error":{"error_code":"error_resource_not_found","message":"Resource Not Found","details":"Channel 99 does not exist."}}`)
	w.get("/channels/"+strconv.FormatUint(w.ch.ID, 10)+"/feeds/entry/9.json").want(t, 401, ctJSON, authBody)
	// Over a real connection, as a sketch's HTTP client reads it.
	base := w.listen()
	for ext, want := range map[string]string{"json": "-1", "csv": "-1\n", "xml": "<entry-id type=\"integer\" nil=\"true\">"} {
		r := fetch(t, base+w.url("feeds/entry/5."+ext))
		if r.status != 200 || !strings.Contains(r.body, want) || r.header.Get("Content-Length") != strconv.Itoa(len(r.body)) {
			t.Errorf("entry 5.%s: %d %q (length %q), want 200 %q", ext, r.status, r.body, r.header.Get("Content-Length"), want)
		}
	}
}

func TestFeedsCSV(t *testing.T) {
	w := newWeather(t)
	w.get(w.url("feeds.csv")).want(t, 200, ctCSV, "created_at,entry_id,field1,field2,field4\n"+
		"2026-11-22 10:00:00 UTC,1,21.5,40,\n"+
		"2026-11-22 10:15:00 UTC,2,22,,\n"+
		"2026-11-22 10:30:00 UTC,3,,41,\n"+
		"2026-11-22 11:00:00 UTC,4,\"23,5 \"\"x\"\"\",,1013\n")
	w.get(w.url("feeds.csv", "results=1", "start=2026-11-22T10:15:00Z", "end=2026-11-22T10:15:00Z", "timezone=Asia/Kolkata",
		"status=true", "location=true")).want(t, 200, ctCSV,
		"created_at,entry_id,field1,field2,field4,latitude,longitude,elevation,status\n"+
			"2026-11-22 15:45:00 +0530,2,22,,,52.5,13.4,34,ok\n")
}

// ids returns the entry_ids of a feeds.json answer, in order.
func ids(t *testing.T, r response) []int {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out []int
	for _, part := range strings.Split(r.body, `"entry_id":`)[1:] {
		n, err := strconv.Atoi(part[:strings.IndexAny(part, ",}")])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func TestReadParams(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Many", "", true, map[int]string{1: "v"})
	// 150 entries, one a minute, the last at 11:59 (now is 12:00).
	start := now.Add(-150 * time.Minute)
	for i := range 150 {
		e.entry(ch.ID, start.Add(time.Duration(i)*time.Minute), map[int]string{0: strconv.Itoa(i + 1)})
	}
	span := func(t *testing.T, query string, first, last, n int) {
		t.Helper()
		got := ids(t, e.get("/channels/1/fields/1.json?"+query))
		if len(got) != n || (n > 0 && (got[0] != first || got[n-1] != last)) {
			t.Errorf("%s: got %d entries %v, want %d from %d to %d", query, len(got), got, n, first, last)
		}
	}
	span(t, "", 51, 150, 100) // the newest 100
	span(t, "results=3", 148, 150, 3)
	span(t, "results=0", 0, 0, 0)
	span(t, "results=99999", 1, 150, 150) // capped at 8000
	span(t, "minutes=10", 141, 150, 10)   // 11:50 .. 11:59
	span(t, "minutes=10&results=2", 149, 150, 2)
	span(t, "days=1", 1, 150, 150) // raises the default cap
	span(t, "days=0", 0, 0, 0)
	span(t, "start=2026-11-22%2011:00:00&end=2026-11-22%2011:04:00", 91, 95, 5)
	span(t, "start=2026-11-22+11:00&end=2026-11-22T11:04:30", 91, 95, 5)
	span(t, "start=2026-11-22T12:00:00%2B01:00&end=2026-11-22T12:04:00+01:00", 91, 95, 5) // "+" arrives as a space
	span(t, "start=2026-11-22%2006:00:00&end=2026-11-22%2006:04:00&timezone=America/New_York", 91, 95, 5)
	span(t, "start=2026-11-22%2009:00:00&end=2026-11-22%2009:04:00&offset=-2", 91, 95, 5)
	span(t, "start=2026-11-22%2011:58:00", 149, 150, 2)
	span(t, "end=2026-11-22%2009:31:00", 1, 2, 2)
	span(t, "start=2026-11-22%2011:58:00&minutes=100&days=3", 149, 150, 2) // start beats minutes and days
	span(t, "minutes=3&days=3", 148, 150, 3)                               // minutes beat days
	span(t, "start=2026-11-23", 0, 0, 0)

	// Offsets and zones change the timestamps.
	r := e.get("/channels/1/fields/1.json?results=1&offset=5.5")
	if !strings.Contains(r.body, `"created_at":"2026-11-22T17:29:00+05:30","entry_id":150`) ||
		!strings.Contains(r.body, `"created_at":"2026-11-01T14:30:00+05:30","updated_at":"2026-11-01T14:30:00+05:30"`) {
		t.Errorf("offset=5.5: %s", r.body)
	}
	r = e.get("/channels/1/fields/1.json?results=1&timezone=Europe/Berlin&offset=5")
	if !strings.Contains(r.body, `"created_at":"2026-11-22T12:59:00+01:00","entry_id":150`) {
		t.Errorf("timezone beats offset: %s", r.body)
	}
	r = e.get("/channels/1/fields/1.json?results=1&timezone=UTC")
	if !strings.Contains(r.body, `"created_at":"2026-11-22T11:59:00+00:00","entry_id":150`) {
		t.Errorf("timezone=UTC: %s", r.body)
	}

	bad := map[string]string{
		"results=-1":                        "results must be a whole number from 0 to 8000.",
		"results=ten":                       "results must be a whole number from 0 to 8000.",
		"days=1.5":                          "days must be a whole number of days, such as 7.",
		"minutes=x":                         "minutes must be a whole number of minutes, such as 60.",
		"start=yesterday":                   `start: must look like \"2024-12-31 23:59:59\" or \"2024-12-31T23:59:59Z\" (the time and a zone such as +01:00 are optional).`,
		"end=2026-02-30":                    "end: is not a valid date: February has no day 30.",
		"end=2026-13-01":                    "end: is not a valid date and time.",
		"timezone=Mars/Olympus":             "timezone must be an IANA time zone name such as Europe/Berlin or America/New_York.",
		"timezone=Local":                    "timezone must be an IANA time zone name such as Europe/Berlin or America/New_York.",
		"timezone=../../etc/passwd":         "timezone must be an IANA time zone name such as Europe/Berlin or America/New_York.",
		"offset=15":                         "offset must be a number of hours from -14 to 14, such as -5 or 5.5.",
		"offset=1e1":                        "offset must be a number of hours from -14 to 14, such as -5 or 5.5.",
		"status=yes":                        "status must be true or false.",
		"average=7":                         "average must be 10, 15, 20, 30, 60, 240, 720 or 1440 (minutes), or daily.",
		"timescale=60&median=weekly":        "median must be 10, 15, 20, 30, 60, 240, 720 or 1440 (minutes), or daily.",
		"round=-1":                          "round must be a whole number of decimals from 0 to 30.",
		"round=31":                          "round must be a whole number of decimals from 0 to 30.",
		"min=abc":                           "min must be a number, such as 20 or -2.5.",
		"max=1e999":                         "max must be a number, such as 20 or -2.5.",
		"callback=alert(1)":                 "callback must be a JavaScript function name such as myCallback.",
		"start=2026-11-22%2010:00:00%2025%": `The query string is malformed: invalid URL escape \"%\"`,
	}
	for q, details := range bad {
		e.get("/channels/1/feeds.json?"+q).want(t, 400, ctJSON,
			`{"status":"400","error":{"error_code":"error_bad_request","message":"Bad Request","details":"`+details+`"}}`)
	}
	e.get("/channels/1/feeds.csv?results=x").want(t, 400, ctText, "error_bad_request")
}

func TestJSONP(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("P", "", true, map[int]string{1: "v"})
	e.entry(ch.ID, at(10, 0, 0), map[int]string{0: "1"})
	e.get("/channels/1/feeds/last.json?callback=my.cb_1").want(t, 200, "application/javascript; charset=utf-8",
		`/**/my.cb_1({"created_at":"2026-11-22T10:00:00Z","entry_id":1,"field1":"1"})`)
	// Only JSON is wrapped.
	e.get("/channels/1/fields/1/last.txt?callback=cb").want(t, 200, ctText, "1")
}

func TestReadAuth(t *testing.T) {
	w := newWeather(t)
	pub := w.channel("Public", "", true, map[int]string{1: "v"})
	for _, target := range []string{
		"/channels/1/feeds.json",
		"/channels/1/feeds.json?api_key=",
		"/channels/1/feeds.json?api_key=" + w.ch.WriteKey, // the write key does not read
		"/channels/1/feeds.json?api_key=" + strings.ToLower(w.ch.ReadKey),
		"/channels/1/fields/1.json?api_key=WRONGWRONGWRONG1",
		"/channels/1/feeds/last.json",
		"/channels/1/feeds/entry/1.json",
		"/channels/1/fields/1/last.json",
	} {
		w.get(target).want(t, 401, ctJSON, authBody)
	}
	w.get("/channels/1/feeds.csv").want(t, 401, ctText, "error_auth_required")
	w.get("/channels/1/fields/1/last.txt").want(t, 401, ctText, "error_auth_required")
	// An unauthorized reader learns nothing else, not even about bad parameters.
	w.get("/channels/1/feeds.json?results=x").want(t, 401, ctJSON, authBody)

	// The read key in the query or in the THINGSPEAKAPIKEY header.
	w.get("/channels/1/fields/2/last.txt?api_key="+w.ch.ReadKey).want(t, 200, ctText, "41")
	w.get("/channels/1/fields/2/last.txt", "THINGSPEAKAPIKEY", w.ch.ReadKey).want(t, 200, ctText, "41")

	// A public channel needs no key, and a wrong one does no harm.
	if r := w.get("/channels/" + strconv.FormatUint(pub.ID, 10) + "/feeds.json?api_key=nonsense"); r.status != 200 {
		t.Errorf("public channel: %d %s", r.status, r.body)
	}

	// A regenerated read key replaces the old one at once.
	old := w.ch.ReadKey
	ch, err := w.svc.RegenerateKey(t.Context(), w.ch.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	w.get("/channels/1/feeds/last.json?api_key="+old).want(t, 401, ctJSON, authBody)
	if r := w.get("/channels/1/feeds/last.json?api_key=" + ch.ReadKey); r.status != 200 {
		t.Errorf("new read key: %d %s", r.status, r.body)
	}

	// Unknown channels are 404, before any key check.
	notFound := `{"status":"404","error":{"error_code":"error_resource_not_found","message":"Resource Not Found","details":"Channel 99 does not exist."}}`
	w.get("/channels/99/feeds.json").want(t, 404, ctJSON, notFound)
	w.get("/channels/99/feeds.json?api_key="+w.ch.ReadKey).want(t, 404, ctJSON, notFound)
	w.get("/channels/99/fields/1/last.txt").want(t, 404, ctText, "error_resource_not_found")
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	e.channel("P", "", true, map[int]string{1: "v"})
	noRoute := `{"status":"404","error":{"error_code":"error_resource_not_found","message":"Resource Not Found","details":"No such resource: check the URL. Reads are /channels/<id>/feeds.json, .../fields/<N>.json, .../feeds/last.json; writes are /update and /update.json."}}`
	for _, target := range []string{
		"/", "/channels", "/channels/", "/channels/1", "/channels/1/", "/channels/1/feeds", "/channels/1/feeds.json/",
		"/channels/1/feeds.yaml", "/channels/1/feeds.txt", "/channels/1/status", "/channels/1/status.txt",
		"/channels/1/status/last.csv", "/channels/1/status/first.json", "/channels/1/status/last/x.json", "/channels/0/feeds.json", "/channels/-1/feeds.json",
		"/channels/x/feeds.json", "/channels/18446744073709551616/feeds.json", "/channels/1/fields/0.json",
		"/channels/1/fields/9.json", "/channels/1/fields/1.txt", "/channels/1/fields/field1.json",
		"/channels/1/fields/1/first.json", "/channels/1/feeds/entry/0.json", "/channels/1/feeds/entry/x.json",
		"/channels/1/feeds/entry/1/x.json", "/channels/1/feeds/last", "/channels/1/feeds/last.XML", "/update.yaml", "/update/", "/metrics",
		"/healthz/",
	} {
		r := e.get(target)
		if r.status != 404 || !strings.HasPrefix(r.header.Get("Content-Type"), ctJSON) && r.body != "error_resource_not_found" {
			t.Errorf("GET %s: %d %q", target, r.status, r.body)
		}
	}
	e.get("/nothing").want(t, 404, ctJSON, noRoute)

	r := e.do(http.MethodPost, "/channels/1/feeds.json", nil)
	r.want(t, 405, ctJSON, `{"status":"405","error":{"error_code":"error_method_invalid","message":"Method Not Allowed","details":"Method \"POST\" is not allowed here; use GET, HEAD, OPTIONS."}}`)
	if got := r.header.Get("Allow"); got != "GET, HEAD, OPTIONS" {
		t.Errorf("Allow = %q", got)
	}
	e.do(http.MethodDelete, "/update", nil).want(t, 405, ctJSON,
		`{"status":"405","error":{"error_code":"error_method_invalid","message":"Method Not Allowed","details":"Method \"DELETE\" is not allowed here; use GET, POST, OPTIONS."}}`)
	e.do(http.MethodPost, "/healthz", nil).want(t, 405, ctJSON,
		`{"status":"405","error":{"error_code":"error_method_invalid","message":"Method Not Allowed","details":"Method \"POST\" is not allowed here; use GET, HEAD."}}`)
	e.do(http.MethodPut, "/channels/1/fields/1/last.txt", nil).want(t, 405, ctText, "error_method_invalid")

	// HEAD works on reads; httptest keeps the body a real server drops.
	if r := e.do(http.MethodHead, "/channels/1/feeds.json", nil); r.status != 200 {
		t.Errorf("HEAD: %d", r.status)
	}

	// CORS: any origin; preflight for JSON writes and the key header.
	r = e.do(http.MethodOptions, "/update.json", nil, "Origin", "https://example.com", "Access-Control-Request-Method", "POST")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" ||
		r.header.Get("Access-Control-Allow-Methods") != "GET, POST, OPTIONS" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "THINGSPEAKAPIKEY") {
		t.Errorf("preflight: %d %v", r.status, r.header)
	}
	if got := e.get("/channels/1/feeds.json").header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}

	e.get("/healthz").want(t, 200, ctText, "ok")
}

// brokenStore fails the reads the API makes.
type brokenStore struct {
	channels.Store
}

var errBroken = errors.New("disk gone")

func (brokenStore) Entries(context.Context, uint64, channels.EntryFilter) ([]channels.Entry, error) {
	return nil, errBroken
}

func (brokenStore) ListChannels(context.Context) ([]*channels.Channel, error) { return nil, errBroken }

func TestStoreFailure(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("P", "", true, map[int]string{1: "v"})
	var logs bytes.Buffer
	h := httpd.NewAPI(httpd.APIOptions{
		Store: brokenStore{e.db}, Registry: e.svc.Registry, Publisher: e.pub,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Health: func(context.Context) error { return errBroken },
	})
	e.h = h
	internal := `{"status":"500","error":{"error_code":"error_internal","message":"Internal Server Error","details":"The server could not complete the request; try again later."}}`
	e.get("/channels/1/feeds.json").want(t, 500, ctJSON, internal)
	e.get("/channels/1/fields/1/last.txt").want(t, 500, ctText, "error_internal")
	// Writes find their channel in the registry: a store whose reads
	// fail does not stop them.
	e.get("/update?field1=1&api_key="+ch.WriteKey).want(t, 200, ctText, "1")
	e.get("/healthz").want(t, 503, ctText, "unavailable\n")
	if !strings.Contains(logs.String(), "disk gone") {
		t.Errorf("store failures not logged:\n%s", logs.String())
	}
	// A cluster node adds its view of the cluster, healthy or not.
	detail := "node n1: ok\n"
	healthy := errBroken
	e.h = httpd.NewAPI(httpd.APIOptions{
		Store: brokenStore{e.db}, Registry: e.svc.Registry, Publisher: e.pub,
		Health:       func(context.Context) error { return healthy },
		HealthDetail: func() string { return detail },
	})
	e.get("/healthz").want(t, 503, ctText, "unavailable\nnode n1: ok\n")
	healthy = nil
	e.get("/healthz").want(t, 200, ctText, "ok\nnode n1: ok\n")
	e.h = h
	// FindEntry still works on the broken store.
	if r := e.get("/channels/1/feeds/entry/1.json"); r.status != 200 {
		t.Errorf("entry: %d %s", r.status, r.body)
	}
}

// TestArduinoLibrary reads and writes the way the ThingSpeak Arduino
// library does: the key in X-THINGSPEAKAPIKEY, an unescaped form body
// ending in a line feed, fields/<N>/last without an extension, and
// "status" and "created_at" picked out of feeds/last.txt.
func TestArduinoLibrary(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Lib", "", false, map[int]string{1: "a", 2: "b"})
	e.post("/update", ctForm, "field1=23&field2=24.50000&status=Too Cold!&created_at=2026-11-22 10:00:00&headers=false\n",
		"X-THINGSPEAKAPIKEY", ch.WriteKey).want(t, 200, ctText, "1")
	e.get("/channels/1/fields/2/last", "X-THINGSPEAKAPIKEY", ch.ReadKey).want(t, 200, ctText, "24.50000")
	e.get("/channels/1/feeds/last.txt?status=true", "X-THINGSPEAKAPIKEY", ch.ReadKey).want(t, 200, ctText,
		`{"created_at":"2026-11-22T10:00:00Z","entry_id":1,"field1":"23","field2":"24.50000","status":"Too Cold!"}`)
	e.get("/channels/1/fields/2/last").want(t, 401, ctText, "error_auth_required")
}

func TestLargeFeedStreams(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Big", "", true, map[int]string{1: "v"})
	long := strings.Repeat("x", 200)
	for i := range 500 {
		e.entry(ch.ID, at(0, 0, 0).Add(time.Duration(i)*time.Second), map[int]string{0: long})
	}
	small := e.get("/channels/1/feeds.json?results=2")
	if small.header.Get("Content-Length") != strconv.Itoa(len(small.body)) {
		t.Errorf("small answer: Content-Length %q for %d bytes", small.header.Get("Content-Length"), len(small.body))
	}
	for _, target := range []string{"/channels/1/feeds.json?results=500", "/channels/1/feeds.csv?results=500&callback=x"} {
		r := e.get(target)
		if r.status != 200 || r.header.Get("Content-Length") != "" || len(r.body) < 500*200 {
			t.Errorf("%s: %d, Content-Length %q, %d bytes", target, r.status, r.header.Get("Content-Length"), len(r.body))
		}
		if strings.Contains(target, "json") {
			var v struct{ Feeds []map[string]any }
			if err := json.Unmarshal([]byte(r.body), &v); err != nil || len(v.Feeds) != 500 {
				t.Errorf("%s: %d feeds, %v", target, len(v.Feeds), err)
			}
		} else if n := strings.Count(r.body, "\n"); n != 501 {
			t.Errorf("%s: %d lines", target, n)
		}
	}
}

// TestNonCanonicalChannelID: a channel ID has one spelling, as in MQTT
// topics. /channels/01/... is no path of channel 1, whatever the key: it
// gets the 404 of any path the API does not serve.
func TestNonCanonicalChannelID(t *testing.T) {
	w := newWeather(t)
	if r := w.get("/channels/1/feeds.json?api_key=" + w.ch.ReadKey); r.status != 200 {
		t.Fatalf("canonical ID: %d %s", r.status, r.body)
	}
	noSuch := `{"status":"404","error":{"error_code":"error_resource_not_found","message":"Resource Not Found","details":"No such resource: check the URL. Reads are /channels/<id>/feeds.json, .../fields/<N>.json, .../feeds/last.json; writes are /update and /update.json."}}`
	for _, id := range []string{"01", "001", "0", "+1", "18446744073709551617", strings.Repeat("9", 5000)} {
		w.get("/channels/"+id+"/feeds.json?api_key="+w.ch.ReadKey).want(t, 404, ctJSON, noSuch)
		w.get("/channels/"+id+"/fields/1/last.txt?api_key="+w.ch.ReadKey).want(t, 404, ctJSON, noSuch)
	}
}

// TestDefaultWindow checks ThingSpeak's default read window: without
// results, days or start, only the last 24 hours; minutes alone reaches
// back as far as it says. The default holds on json, csv and the field
// reads.
func TestDefaultWindow(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Window", "", true, map[int]string{1: "v"})
	e.entry(ch.ID, now.Add(-50*time.Hour), map[int]string{0: "1"})
	e.entry(ch.ID, now.Add(-25*time.Hour), map[int]string{0: "2"})
	e.entry(ch.ID, now.Add(-23*time.Hour), map[int]string{0: "3"})
	e.entry(ch.ID, now.Add(-time.Minute), map[int]string{0: "4"})
	for _, c := range []struct {
		query string
		want  []int
	}{
		{"", []int{3, 4}},
		{"results=8000", []int{1, 2, 3, 4}},
		{"results=3", []int{2, 3, 4}},
		{"days=2", []int{2, 3, 4}},
		{"start=2026-11-01", []int{1, 2, 3, 4}},
		{"minutes=1560", []int{2, 3, 4}}, // 26 hours
		{"minutes=2", []int{4}},
		{"end=2026-11-21%2013:00:00", []int{3}}, // end alone keeps the last day
	} {
		got := ids(t, e.get("/channels/1/feeds.json?"+c.query))
		if !slices.Equal(got, c.want) {
			t.Errorf("feeds.json?%s: entries %v, want %v", c.query, got, c.want)
		}
		if got := ids(t, e.get("/channels/1/fields/1.json?"+c.query)); !slices.Equal(got, c.want) {
			t.Errorf("fields/1.json?%s: entries %v, want %v", c.query, got, c.want)
		}
	}
	e.get("/channels/1/feeds.csv").want(t, 200, ctCSV,
		"created_at,entry_id,field1\n2026-11-21 13:00:00 UTC,3,3\n2026-11-22 11:59:00 UTC,4,4\n")
}

// A JSONP read of an entry that does not exist calls its callback with
// -1, as ThingSpeak's does (a page that loads the read as a script waits
// for its callback).
func TestMissingEntryJSONP(t *testing.T) {
	w := newWeather(t)
	const ctJS = "application/javascript; charset=utf-8"
	w.get(w.url("feeds/entry/9.json", "callback=f")).want(t, 200, ctJS, "/**/f(-1)")
	w.get(w.url("fields/5/last.json", "callback=f")).want(t, 200, ctJS, "/**/f(-1)")
	empty := w.channel("Empty", "", true, map[int]string{1: "a"})
	w.get("/channels/"+strconv.FormatUint(empty.ID, 10)+"/feeds/last.json?callback=g").want(t, 200, ctJS, "/**/g(-1)")
	// Other formats take no callback.
	w.get(w.url("feeds/entry/9.csv", "callback=f")).want(t, 200, ctCSV, "-1\n")
}
