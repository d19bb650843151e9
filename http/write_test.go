package httpd_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

const ctForm = "application/x-www-form-urlencoded"

// entries returns every stored entry of a channel.
func (e *env) entries(ch uint64) []channels.Entry {
	e.t.Helper()
	list, err := e.db.Entries(e.t.Context(), ch, channels.EntryFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// stored checks that the newest entry is the one the publisher fanned out
// last and returns its JSON.
func (e *env) stored(ch uint64) string {
	e.t.Helper()
	list := e.entries(ch)
	out := e.pub.fannedOut()
	if len(list) == 0 || len(out) == 0 {
		e.t.Fatalf("stored %d entries, fanned out %d", len(list), len(out))
	}
	got, want := list[len(list)-1].AppendJSON(nil), out[len(out)-1].AppendJSON(nil)
	if string(got) != string(want) {
		e.t.Fatalf("stored %s, fanned out %s", got, want)
	}
	return string(got)
}

func entryJSON(id int, createdAt string, vals string) string {
	return `{"channel_id":1,"created_at":"` + createdAt + `","entry_id":` + strconv.Itoa(id) + `,` + vals + `}`
}

// nulls are the twelve values of an entry that sets nothing; with sets
// them one by one.
func with(set map[string]string) string {
	var parts []string
	for i := range channels.NumValues {
		name := channels.ValueName(i)
		if v, ok := set[name]; ok {
			parts = append(parts, `"`+name+`":`+v)
		} else {
			parts = append(parts, `"`+name+`":null`)
		}
	}
	return strings.Join(parts, ",")
}

func TestUpdate(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("W", "", false, map[int]string{1: "a", 2: "b"})
	key := ch.WriteKey

	// GET with the query string: the answer is the entry_id as text.
	e.get("/update?api_key="+key+"&field1=23.5&field2=x%26y").want(t, 200, ctText, "1")
	if got, want := e.stored(1), entryJSON(1, "2026-11-01T09:00:00Z", with(map[string]string{"field1": `"23.5"`, "field2": `"x&y"`})); got != want {
		t.Errorf("GET /update stored\n%s\nwant\n%s", got, want)
	}

	// POST with a form body.
	e.post("/update", ctForm, "api_key="+key+"&field2=hello+world%21&status=%C3%A9t%C3%A9&lat=52.5&long=13.4&elevation=-2").want(t, 200, ctText, "2")
	if got, want := e.stored(1), entryJSON(2, "2026-11-01T09:00:00Z", with(map[string]string{
		"field2": `"hello world!"`, "latitude": `"52.5"`, "longitude": `"13.4"`, "elevation": `"-2"`, "status": `"été"`,
	})); got != want {
		t.Errorf("POST /update stored\n%s\nwant\n%s", got, want)
	}

	// POST a JSON body to /update.json: numbers keep their literal text,
	// and the answer is the entry exactly as subscribers receive it.
	want := entryJSON(3, "2026-11-22T10:00:00Z", with(map[string]string{
		"field1": `"24.90"`, "field2": `"a&b=c%d+e\n"`, "latitude": `"-33.9"`, "longitude": `"151"`, "elevation": `"12"`,
		"status": `"true"`,
	}))
	e.post("/update.json", "application/json", `{"api_key":"`+key+`","field1":24.90,"field2":"a&b=c%d+e\n","field3":null,`+
		`"lat":-33.9,"long":151,"elevation":12,"status":true,"created_at":"2026-11-22T10:00:00Z","other":{"x":[1]}}`).
		want(t, 200, ctJSON, want)
	if got := e.stored(1); got != want {
		t.Errorf("POST /update.json stored\n%s\nwant\n%s", got, want)
	}

	// The key in the THINGSPEAKAPIKEY header; a form body without a
	// content type; body values override the query's.
	e.do(http.MethodPost, "/update?field1=query", strings.NewReader("field1=body&1=alias"), "THINGSPEAKAPIKEY", key).want(t, 200, ctText, "4")
	if got := e.stored(1); !strings.Contains(got, `"field1":"alias"`) {
		t.Errorf("merged values: %s", got)
	}
	e.post("/update.json?api_key=WRONG", "application/json; charset=utf-8", `{"api_key":"`+key+`","field1":"1"}`).want(t, 200, ctJSON,
		entryJSON(5, "2026-11-01T09:00:00Z", with(map[string]string{"field1": `"1"`})))
	// A GET body is ignored.
	e.do(http.MethodGet, "/update?api_key="+key+"&field1=7", strings.NewReader("field1=8")).want(t, 200, ctText, "6")
	if got := e.stored(1); !strings.Contains(got, `"field1":"7"`) {
		t.Errorf("GET body used: %s", got)
	}
	if n := len(e.pub.fannedOut()); n != 6 {
		t.Errorf("fanned out %d entries, want 6", n)
	}
}

func TestUpdate_CreatedAtZone(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("W", "", false, map[int]string{1: "a"})
	for _, c := range []struct{ query, want string }{
		{"created_at=2026-11-22%2005:00:00&timezone=America/New_York", "2026-11-22T10:00:00Z"},
		{"created_at=2026-07-22T06:00:00&timezone=America/New_York", "2026-07-22T10:00:00Z"}, // summer time
		{"created_at=2026-11-22%2012:30:00&offset=2.5", "2026-11-22T10:00:00Z"},
		{"created_at=2026-11-22T10:00:00Z&timezone=Asia/Tokyo", "2026-11-22T10:00:00Z"}, // its own zone wins
		{"created_at=2026-11-22T11:00:00.5%2B01:00&offset=-5", "2026-11-22T10:00:00Z"},
		{"created_at=2026-11-22%2010:00:00", "2026-11-22T10:00:00Z"},
		{"timezone=Asia/Tokyo", "2026-11-01T09:00:00Z"}, // server time is not shifted
	} {
		r := e.get("/update.json?api_key=" + ch.WriteKey + "&field1=1&" + c.query)
		if r.status != 200 || !strings.Contains(r.body, `"created_at":"`+c.want+`"`) {
			t.Errorf("%s: %d %s, want created_at %s", c.query, r.status, r.body, c.want)
		}
	}
	e.get("/update?api_key="+ch.WriteKey+"&field1=1&timezone=Nowhere/Special").want(t, 400, ctText, "0")
	e.get("/update?api_key="+ch.WriteKey+"&field1=1&created_at=1970-01-01%2000:30:00&offset=1").want(t, 400, ctText, "0")
}

func TestUpdate_Refused(t *testing.T) {
	e := newEnv(t, channels.Limits{MaxValueLen: 5, MaxPayload: 60})
	ch := e.channel("W", "", true, map[int]string{1: "a", 2: "b"})
	key := ch.WriteKey
	bad := func(details string) string {
		return `{"status":"400","error":{"error_code":"error_bad_request","message":"Bad Request","details":` + strconv.Quote(details) + `}}`
	}
	tooLarge := func(details string) string {
		return `{"status":"413","error":{"error_code":"error_request_too_large","message":"Request Entity Too Large","details":` + strconv.Quote(details) + `}}`
	}
	for _, c := range []struct {
		name, query, ct, body string
		plainStatus           int
		jsonStatus            int
		jsonBody              string
	}{
		{"no key", "field1=1", "", "", 400, 401, authBody},
		{"wrong key", "api_key=ABCDEFGHIJKLMNOP&field1=1", "", "", 400, 401, authBody},
		{"malformed key", "api_key=nope&field1=1", "", "", 400, 401, authBody},
		{"read key", "api_key=" + ch.ReadKey + "&field1=1", "", "", 400, 401, authBody},
		{"lower-case key", "api_key=" + strings.ToLower(key) + "&field1=1", "", "", 400, 401, authBody},
		{"only fields not enabled", "api_key=" + key + "&field3=1&field8=2", "", "", 400, 400,
			bad("payload sets only fields not enabled on channel 1 (field3, field8): enable them or write to an enabled field.")},
		{"no values", "api_key=" + key + "&field9=1", "", "", 400, 400,
			bad("The write sets no value: send at least one of field1..field8, lat, long, elevation or status.")},
		{"empty value", "api_key=" + key + "&field1=", "", "", 400, 400,
			bad("payload sets no field: send at least one of field1..field8, lat, long, elevation or status.")},
		{"bad latitude", "api_key=" + key + "&lat=91", "", "", 400, 400, bad("lat must be a decimal number from -90 to 90, such as 52.5163.")},
		{"bad created_at", "api_key=" + key + "&field1=1&created_at=now", "", "", 400, 400,
			bad("created_at must look like 2014-12-31 23:59:59 or 2014-12-31T23:59:59Z, optionally with fractional seconds and a zone such as +01:00.")},
		{"control character", "api_key=" + key + "&field1=%01", "", "", 400, 400, bad("field1 contains the control character 0x01.")},
		{"value too long", "api_key=" + key + "&field1=123456", "", "", 400, 400, bad("field1 is 6 characters long; the limit is 5.")},
		{"payload too large", "api_key=" + key, ctForm, "field1=1&field2=2&status=12345&lat=1.00000000000&long=2.000000000000", 413, 413,
			tooLarge("payload is 68 bytes; the limit is 60.")},
		{"body too large", "api_key=" + key, ctForm, "field1=1&x=" + strings.Repeat("x", 4200), 413, 413,
			tooLarge("The request body is over 4156 bytes.")},
		{"bad query", "api_key=" + key + "&field1=%zz", "", "", 400, 400, bad(`The query string is malformed: invalid URL escape "%zz"`)},
		{"bad form", "api_key=" + key, ctForm, "field1=%", 400, 400, bad(`The form body is malformed: invalid URL escape "%"`)},
		{"JSON array", "", "application/json", `[1]`, 400, 400, bad(`The body must be a JSON object such as {"api_key":"...","field1":23.5}.`)},
		{"JSON garbage", "", "application/json", `{"field1":1} x`, 400, 400, bad("The body must hold one JSON object and nothing after it.")},
		{"JSON object value", "api_key=" + key, "application/json", `{"field1":{"v":1}}`, 400, 400, bad("field1 must be a string or a number.")},
		{"JSON bad key", "", "application/json", `{"api_key":1,"field1":1}`, 400, 401, authBody},
	} {
		for _, path := range []string{"/update", "/update.json"} {
			method := http.MethodGet
			if c.body != "" || c.ct != "" {
				method = http.MethodPost
			}
			hdr := []string{}
			if c.ct != "" {
				hdr = []string{"Content-Type", c.ct}
			}
			r := e.do(method, path+"?"+c.query, strings.NewReader(c.body), hdr...)
			if path == "/update" {
				if r.status != c.plainStatus || r.body != "0" {
					t.Errorf("%s %s: %d %q, want %d \"0\"", c.name, path, r.status, r.body, c.plainStatus)
				}
			} else {
				if r.status != c.jsonStatus || r.body != c.jsonBody {
					t.Errorf("%s %s: %d %s\nwant %d %s", c.name, path, r.status, r.body, c.jsonStatus, c.jsonBody)
				}
			}
		}
	}
	if n := len(e.entries(ch.ID)); n != 0 {
		t.Errorf("refused writes stored %d entries", n)
	}
	if n := len(e.pub.fannedOut()); n != 0 {
		t.Errorf("refused writes fanned out %d entries", n)
	}
}

func TestUpdate_PublisherRefuses(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("W", "", false, map[int]string{1: "a"})
	target := "?api_key=" + ch.WriteKey + "&field1=1"

	// A rate-limited write is 0 with 200, as on ThingSpeak.
	e.pub.fail(fmtErr(channels.ERATELIMIT, "channel 1 accepts an entry every 15s"))
	e.get("/update"+target).want(t, 200, ctText, "0")
	e.get("/update.json"+target).want(t, 200, ctText, "0")

	e.pub.fail(errors.New("disk on fire"))
	e.get("/update"+target).want(t, 500, ctText, "0")
	e.get("/update.json"+target).want(t, 500, ctJSON,
		`{"status":"500","error":{"error_code":"error_internal","message":"Internal Server Error","details":"The server could not complete the request; try again later."}}`)

	e.pub.fail(fmtErr(channels.ENOTFOUND, "channel 1 not found"))
	e.get("/update"+target).want(t, 400, ctText, "0")
	e.get("/update.json"+target).want(t, 401, ctJSON, authBody)

	e.pub.fail(fmtErr(channels.EINVALID, "entry sets unknown values"))
	e.get("/update"+target).want(t, 400, ctText, "0")
	e.get("/update.json"+target).want(t, 400, ctJSON,
		`{"status":"400","error":{"error_code":"error_bad_request","message":"Bad Request","details":"entry sets unknown values."}}`)

	e.pub.fail(nil)
	e.get("/update"+target).want(t, 200, ctText, "1")
}

func fmtErr(code, msg string) error { return channels.Errorf(code, "%s", msg) }

func TestUpdate_KeyChanges(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	a := e.channel("A", "", false, map[int]string{1: "a"})
	e.get("/update?api_key="+a.WriteKey+"&field1=1").want(t, 200, ctText, "1")

	// A channel created after the key index was built is found at once.
	b := e.channel("B", "", false, map[int]string{1: "b"})
	e.get("/update?api_key="+b.WriteKey+"&field1=1").want(t, 200, ctText, "1")

	// A regenerated write key replaces the old one at once.
	a2, err := e.svc.RegenerateKey(t.Context(), a.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	e.get("/update?api_key="+a.WriteKey+"&field1=1").want(t, 400, ctText, "0")
	e.get("/update?api_key="+a2.WriteKey+"&field1=2").want(t, 200, ctText, "2")

	// A deleted channel's key stops working.
	if err := e.svc.DeleteChannel(t.Context(), b.ID); err != nil {
		t.Fatal(err)
	}
	e.get("/update?api_key="+b.WriteKey+"&field1=1").want(t, 400, ctText, "0")
	if n := len(e.entries(a.ID)); n != 2 {
		t.Errorf("channel A has %d entries, want 2", n)
	}
}

func TestUpdate_Concurrent(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	var chs []*channels.Channel
	for i := range 3 {
		chs = append(chs, e.channel("C"+strconv.Itoa(i), "", false, map[int]string{1: "a"}))
	}
	const perChannel = 20
	var wg sync.WaitGroup
	for _, ch := range chs {
		for i := range perChannel {
			wg.Go(func() {
				form := url.Values{"api_key": {ch.WriteKey}, "field1": {strconv.Itoa(i)}}.Encode()
				req, _ := http.NewRequest(http.MethodPost, "/update", strings.NewReader(form))
				req.Header.Set("Content-Type", ctForm)
				rec := httptest.NewRecorder()
				e.h.ServeHTTP(rec, req)
				if rec.Code != 200 || rec.Body.String() == "0" {
					t.Errorf("concurrent write: %d %s", rec.Code, rec.Body)
				}
			})
		}
	}
	wg.Wait()
	for _, ch := range chs {
		list := e.entries(ch.ID)
		if len(list) != perChannel || list[perChannel-1].ID != perChannel {
			t.Errorf("channel %d: %d entries", ch.ID, len(list))
		}
	}
}

// TestUpdateThenRead writes over HTTP and reads the entry back.
func TestUpdateThenRead(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("W", "", false, map[int]string{1: "Temp", 2: "Hum"})
	e.get("/update?api_key="+ch.WriteKey+"&field2=55&created_at=2026-11-22T10:00:00Z").want(t, 200, ctText, "1")
	e.get("/channels/1/feeds/last.json?api_key="+ch.ReadKey).want(t, 200, ctJSON,
		`{"created_at":"2026-11-22T10:00:00Z","entry_id":1,"field1":null,"field2":"55"}`)
	e.get("/channels/1/fields/2/last.txt?api_key="+ch.ReadKey).want(t, 200, ctText, "55")
}

// TestUpdate_DisabledFieldsDropped checks that a sketch that always sends
// field1..field8 to a two-field channel keeps the two readings, as on
// ThingSpeak, and that the dropped values are counted.
func TestUpdate_DisabledFieldsDropped(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("two", "", true, map[int]string{1: "Temp", 2: "Hum"})
	var dropped atomic.Uint64
	e.h = httpd.NewAPI(httpd.APIOptions{
		Store: e.db, Registry: e.svc.Registry, Publisher: e.pub, FieldsDropped: &dropped,
		Now: func() time.Time { return now },
	})
	all := "&field1=21.5&field2=40&field3=3&field4=4&field5=5&field6=6&field7=7&field8=8"
	e.get("/update?api_key="+ch.WriteKey+all).want(t, 200, ctText, "1")
	if got, want := e.stored(ch.ID), entryJSON(1, "2026-11-01T09:00:00Z", with(map[string]string{"field1": `"21.5"`, "field2": `"40"`})); got != want {
		t.Errorf("stored %s\nwant %s", got, want)
	}
	r := e.post("/update.json", ctForm, "api_key="+ch.WriteKey+"&field2=41&field7=x&status=ok")
	if r.status != 200 || !strings.Contains(r.body, `"entry_id":2,"field1":null,"field2":"41","field3":null`) || !strings.Contains(r.body, `"field7":null`) {
		t.Errorf("/update.json: %d %s", r.status, r.body)
	}
	if n := dropped.Load(); n != 7 {
		t.Errorf("FieldsDropped = %d, want 7", n)
	}
	// Only disabled fields: nothing to store, refused, not counted as stored.
	e.get("/update?api_key="+ch.WriteKey+"&field3=1").want(t, 400, ctText, "0")
	if n := len(e.entries(ch.ID)); n != 2 {
		t.Errorf("%d entries stored, want 2", n)
	}
}
