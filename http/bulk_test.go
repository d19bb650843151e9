package httpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/storage"
)

// bulkNow is the server's clock in bulk tests, for relative times.
var bulkNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// bulkEnv is feedmq as serve wires it: a broker with an MQTT listener and
// the REST API on a real listener, both on 127.0.0.1 port 0.
type bulkEnv struct {
	t    *testing.T
	db   testStore
	svc  *admin.Local
	srv  *broker.Server
	base string
	logs *syncBuffer
}

func newBulkEnv(t *testing.T) *bulkEnv {
	t.Helper()
	return newBulkEnvOver(t, nil)
}

// newBulkEnvOver is newBulkEnv with the broker writing to wrap's store
// over the database (nil: the database itself).
func newBulkEnvOver(t *testing.T, wrap func(testStore) channels.Store) *bulkEnv {
	t.Helper()
	db := openStore(t, nil)
	svc, err := admin.NewLocal(t.Context(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var store channels.Store = db
	if wrap != nil {
		store = wrap(db)
	}
	srv, err := broker.New(broker.Options{Logger: log, MQTTAddr: "127.0.0.1:0"}, store, svc.Registry)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	s := httpd.NewServer(httpd.ServerOptions{
		Addr:   "127.0.0.1:0",
		Logger: log,
		API: httpd.APIOptions{Store: db, Registry: svc.Registry, Publisher: srv,
			Now: func() time.Time { return bulkNow }},
		Dashboard: httpd.DashboardOptions{Store: db, Registry: svc.Registry, Watcher: srv},
	})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &bulkEnv{t: t, db: db, svc: svc, srv: srv, base: "http://" + s.Addr().String(), logs: logs}
}

// channel creates a channel with fields 1 and 2 and the given rate limit.
func (e *bulkEnv) channel(rate time.Duration) *channels.Channel {
	e.t.Helper()
	spec := auth.ChannelSpec{Name: "bulk", Fields: [channels.NumFields]string{"temp", "hum"}, RateLimit: rate}
	c, err := e.svc.CreateChannel(e.t.Context(), spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// subscriber connects a real MQTT client allowed to subscribe to ch and
// subscribes it to channels/<ch>/subscribe.
func (e *bulkEnv) subscriber(ch uint64) *mqtttest.Conn {
	e.t.Helper()
	cr, err := e.svc.CreateDevice(e.t.Context(), auth.DeviceSpec{Name: "sub",
		Grants: []auth.Grant{{ChannelID: ch, Subscribe: true}}})
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := mqtttest.Dial(e.srv.Addr("mqtt").String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if code, err := c.Connect(mqtttest.Connect{ClientID: cr.Device.ClientID, Username: cr.Device.Username,
		Password: cr.Password, Clean: true, Keepalive: 60}); err != nil || code != 0 {
		e.t.Fatalf("connect: code %d, %v", code, err)
	}
	if code, err := c.Subscribe(1, channels.FeedTopic(ch)); err != nil || code != 0 {
		e.t.Fatalf("subscribe: code %d, %v", code, err)
	}
	return c
}

// post sends a bulk request with a real HTTP client.
func (e *bulkEnv) post(path, contentType string, body io.Reader, header ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (e *bulkEnv) postJSON(ch uint64, body string, header ...string) (int, string) {
	e.t.Helper()
	return e.post(fmt.Sprintf("/channels/%d/bulk_update.json", ch), "application/json", strings.NewReader(body), header...)
}

func (e *bulkEnv) postCSV(ch uint64, form url.Values) (int, string) {
	e.t.Helper()
	return e.post(fmt.Sprintf("/channels/%d/bulk_update.csv", ch), ctForm, strings.NewReader(form.Encode()))
}

func (e *bulkEnv) entries(ch uint64) []channels.Entry {
	e.t.Helper()
	list, err := e.db.Entries(e.t.Context(), ch, channels.EntryFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

const bulkOK = `{"success":true}`

// wantFeed checks the stored entries: IDs 1..n in order, and their
// created_at and field1.
func wantFeed(t *testing.T, got []channels.Entry, want ...[2]string) {
	t.Helper()
	wantFeedFrom(t, got, 1, want...)
}

// wantFeedFrom is wantFeed for entries numbered from first.
func wantFeedFrom(t *testing.T, got []channels.Entry, first int, want ...[2]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries stored, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		f1, _ := got[i].Field(1)
		if got[i].ID != uint64(first+i) || got[i].CreatedAt.Format(channels.TimeFormat) != w[0] || f1 != w[1] {
			t.Errorf("entry %d = id %d, %s, field1 %q; want id %d, %s, %q", i, got[i].ID,
				got[i].CreatedAt.Format(channels.TimeFormat), f1, first+i, w[0], w[1])
		}
	}
}

// receive reads n feed messages from a subscriber and returns their
// entry_ids and field1 values.
func receive(t *testing.T, c *mqtttest.Conn, n int) (ids []uint64, f1 []string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for range n {
		_, payload, err := c.ReadPublish()
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(ids), n, err)
		}
		var m struct {
			EntryID uint64  `json:"entry_id"`
			Field1  *string `json:"field1"`
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatalf("message %q: %v", payload, err)
		}
		ids = append(ids, m.EntryID)
		if m.Field1 != nil {
			f1 = append(f1, *m.Field1)
		} else {
			f1 = append(f1, "")
		}
	}
	return ids, f1
}

func TestBulkUpdateJSON(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(0)
	sub := e.subscriber(ch.ID)
	// Out of time order, with every kind of value ThingSpeak's bulk write
	// takes; epoch seconds too.
	body := `{"write_api_key":"` + ch.WriteKey + `","updates":[
		{"created_at":"2026-11-30 10:02:00","field1":22.50,"field2":"dry","status":"ok, fine"},
		{"created_at":"2026-11-30T10:00:00Z","field1":"21","latitude":52.5,"longitude":"13.4","elevation":34},
		{"created_at":1796032860,"field1":21.7,"field2":null}]}`
	if status, resp := e.postJSON(ch.ID, body); status != http.StatusAccepted || resp != bulkOK {
		t.Fatalf("bulk_update.json: %d %s", status, resp)
	}
	got := e.entries(ch.ID)
	wantFeed(t, got,
		[2]string{"2026-11-30T10:00:00Z", "21"},
		[2]string{"2026-11-30T10:01:00Z", "21.7"},
		[2]string{"2026-11-30T10:02:00Z", "22.50"})
	if want := `{"channel_id":1,"created_at":"2026-11-30T10:00:00Z","entry_id":1,"field1":"21","field2":null,"field3":null,"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,"latitude":"52.5","longitude":"13.4","elevation":"34","status":null}`; string(got[0].AppendJSON(nil)) != want {
		t.Errorf("entry 1 = %s\nwant %s", got[0].AppendJSON(nil), want)
	}
	if v, _ := got[2].Value(channels.Status); v != "ok, fine" {
		t.Errorf("entry 3 status = %q", v)
	}
	// Unlike ThingSpeak, subscribers get every entry, in entry_id order.
	ids, f1 := receive(t, sub, 3)
	if fmt.Sprint(ids) != "[1 2 3]" || fmt.Sprint(f1) != "[21 21.7 22.50]" {
		t.Errorf("subscriber got ids %v, field1 %v", ids, f1)
	}
	// The next batch goes on from entry 4, and the write key may come in
	// the header as for /update.
	body = `{"updates":[{"delta_t":0,"field1":"1"},{"delta_t":30,"field1":"2"}]}`
	if status, resp := e.postJSON(ch.ID, body, "THINGSPEAKAPIKEY", ch.WriteKey); status != http.StatusAccepted || resp != bulkOK {
		t.Fatalf("relative bulk_update.json: %d %s", status, resp)
	}
	got = e.entries(ch.ID)
	if len(got) != 5 || got[3].ID != 4 || got[4].ID != 5 ||
		!got[4].CreatedAt.Equal(bulkNow) || !got[3].CreatedAt.Equal(bulkNow.Add(-30*time.Second)) {
		t.Errorf("relative batch stored %v", got[3:])
	}
	if ids, _ := receive(t, sub, 2); fmt.Sprint(ids) != "[4 5]" {
		t.Errorf("subscriber got ids %v, want [4 5]", ids)
	}
}

func TestBulkUpdateCSV(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(0)
	sub := e.subscriber(ch.ID)
	form := url.Values{"write_api_key": {ch.WriteKey}, "time_format": {"absolute"}, "updates": {
		"2026-11-30 10:00:05,1.5,a,,,,,,,52.5,13.4,7,first, with comma|" +
			"2026-11-30T10:00:00+01:00,2.5|" +
			"1796032800,3.5,,,,,,,,,,,|"}}
	if status, resp := e.postCSV(ch.ID, form); status != http.StatusAccepted || resp != bulkOK {
		t.Fatalf("absolute bulk_update.csv: %d %s", status, resp)
	}
	got := e.entries(ch.ID)
	wantFeed(t, got,
		[2]string{"2026-11-30T09:00:00Z", "2.5"},
		[2]string{"2026-11-30T10:00:00Z", "3.5"},
		[2]string{"2026-11-30T10:00:05Z", "1.5"})
	if s, _ := got[2].Value(channels.Status); s != "first, with comma" {
		t.Errorf("status = %q", s)
	}
	if v, _ := got[2].Field(2); v != "a" {
		t.Errorf("field2 = %q", v)
	}
	if _, set := got[1].Field(2); set {
		t.Errorf("an empty column set field2")
	}
	if ids, _ := receive(t, sub, 3); fmt.Sprint(ids) != "[1 2 3]" {
		t.Errorf("subscriber got ids %v", ids)
	}

	// Relative: the last row is now, each earlier one its successor's
	// time less the successor's delta.
	form = url.Values{"write_api_key": {ch.WriteKey}, "time_format": {"relative"}, "updates": {"5,10|15,11|20,12"}}
	if status, resp := e.postCSV(ch.ID, form); status != http.StatusAccepted || resp != bulkOK {
		t.Fatalf("relative bulk_update.csv: %d %s", status, resp)
	}
	wantFeedFrom(t, e.entries(ch.ID)[3:], 4,
		[2]string{"2026-12-01T11:59:25Z", "10"},
		[2]string{"2026-12-01T11:59:40Z", "11"},
		[2]string{"2026-12-01T12:00:00Z", "12"})
}

// A batch with one bad update stores nothing; the error names the update
// and the value.
func TestBulkUpdate_Atomic(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(0)
	sub := e.subscriber(ch.ID)
	for _, tc := range []struct {
		name, body, want string
	}{
		{"field not enabled", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":1},{"created_at":"2026-11-30 10:00:01","field3":2}]}`,
			"updates[1]: payload sets only fields not enabled on channel 1 (field3)"},
		{"latitude out of range", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":1},{"created_at":"2026-11-30 10:00:01","field1":2},{"created_at":"2026-11-30 10:00:02","latitude":91}]}`,
			"updates[2]: lat must be a decimal number from -90 to 90, such as 52.5163."},
		{"bad created_at", `{"write_api_key":"K","updates":[{"created_at":"yesterday","field1":1}]}`, "updates[0]: created_at"},
		{"no time", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":1},{"field1":2}]}`,
			"updates[1] has no created_at"},
		{"no value", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00"}]}`, "updates[0]: payload sets no field"},
		{"same time twice", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":1},{"created_at":"2026-11-30T11:00:00+01:00","field1":2}]}`,
			"updates[0] and updates[1] have the same time 2026-11-30T10:00:00Z"},
		{"delta_t zero after the first", `{"write_api_key":"K","updates":[{"delta_t":0,"field1":1},{"delta_t":0,"field1":2}]}`,
			"updates[1]: delta_t must be above 0"},
		{"delta_t negative", `{"write_api_key":"K","updates":[{"delta_t":-5,"field1":1}]}`, "updates[0]: delta_t must be a whole number"},
		{"mixed times", `{"write_api_key":"K","updates":[{"delta_t":5,"field1":1},{"created_at":"2026-11-30 10:00:00","field1":2}]}`,
			"updates[1] sets created_at and updates[0] delta_t"},
		{"both times", `{"write_api_key":"K","updates":[{"delta_t":5,"created_at":"2026-11-30 10:00:00","field1":1}]}`,
			"updates[0] sets both created_at and delta_t"},
		{"value too long", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":1},{"created_at":"2026-11-30 10:00:01","status":"` + strings.Repeat("x", 256) + `"}]}`,
			"updates[1]: status is 256 characters long; the limit is 255."},
		{"object value", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":{"a":1}}]}`, "updates[0].field1 must be a string or a number."},
		{"update not an object", `{"write_api_key":"K","updates":[{"created_at":"2026-11-30 10:00:00","field1":1},7]}`, "updates[1] must be an object"},
		{"updates not an array", `{"write_api_key":"K","updates":{"field1":1}}`, "updates must be an array of objects."},
		{"no updates", `{"write_api_key":"K"}`, "updates is missing"},
		{"empty updates", `{"write_api_key":"K","updates":[]}`, "updates holds no update"},
		{"not JSON", `write_api_key=K&updates=1`, "The body must be a JSON object"},
		{"two objects", `{"write_api_key":"K","updates":[]} {}`, "The body must be a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(tc.body, `"K"`, strconv.Quote(ch.WriteKey), 1)
			status, resp := e.postJSON(ch.ID, body)
			if status != http.StatusBadRequest || !strings.Contains(resp, `"error_code":"error_bad_request"`) || !strings.Contains(resp, tc.want) {
				t.Errorf("got %d %s\nwant 400 with %q", status, resp, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"no time_format", url.Values{"updates": {"2026-11-30 10:00:00,1"}}, "time_format is missing"},
		{"bad time_format", url.Values{"time_format": {"sometimes"}, "updates": {"2026-11-30 10:00:00,1"}}, `time_format must be absolute or relative, not \"sometimes\".`},
		{"no updates", url.Values{"time_format": {"absolute"}}, "updates is missing"},
		{"empty row", url.Values{"time_format": {"absolute"}, "updates": {"2026-11-30 10:00:00,1||2026-11-30 10:00:01,2"}}, "updates[1] is empty"},
		{"bad row", url.Values{"time_format": {"absolute"}, "updates": {"2026-11-30 10:00:00,1|2026-11-30 10:00:01,,,x"}}, "updates[1]: payload sets only fields not enabled on channel 1 (field3)"},
		{"no timestamp", url.Values{"time_format": {"absolute"}, "updates": {",1"}}, "updates[0] has no created_at"},
		{"relative without delta", url.Values{"time_format": {"relative"}, "updates": {"5,1|,2"}}, "updates[1] has no delta_t"},
		{"relative with a date", url.Values{"time_format": {"relative"}, "updates": {"2026-11-30 10:00:00,1"}}, "updates[0]: delta_t must be a whole number"},
		{"elevation not a number", url.Values{"time_format": {"absolute"}, "updates": {"2026-11-30 10:00:00,1,,,,,,,,,,high"}}, "updates[0]: elevation must be a decimal number"},
	} {
		t.Run("csv "+tc.name, func(t *testing.T) {
			tc.form.Set("write_api_key", ch.WriteKey)
			status, resp := e.postCSV(ch.ID, tc.form)
			if status != http.StatusBadRequest || !strings.Contains(resp, tc.want) {
				t.Errorf("got %d %s\nwant 400 with %q", status, resp, tc.want)
			}
		})
	}
	if got := e.entries(ch.ID); len(got) != 0 {
		t.Fatalf("refused batches stored %d entries: %v", len(got), got)
	}
	// Nothing was fanned out either: the first message the subscriber
	// gets is entry 1 of the next good batch, numbered from 1.
	body := `{"write_api_key":"` + ch.WriteKey + `","updates":[{"created_at":"2026-11-30 10:00:00","field1":"a"},{"created_at":"2026-11-30 10:00:01","field1":"b"}]}`
	if status, resp := e.postJSON(ch.ID, body); status != http.StatusAccepted {
		t.Fatalf("good batch: %d %s", status, resp)
	}
	wantFeed(t, e.entries(ch.ID), [2]string{"2026-11-30T10:00:00Z", "a"}, [2]string{"2026-11-30T10:00:01Z", "b"})
	if ids, f1 := receive(t, sub, 2); fmt.Sprint(ids) != "[1 2]" || fmt.Sprint(f1) != "[a b]" {
		t.Errorf("subscriber got %v %v, want [1 2] [a b]", ids, f1)
	}
}

func TestBulkUpdate_Keys(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(0)
	other := e.channel(0)
	upd := `"updates":[{"created_at":"2026-11-30 10:00:00","field1":1}]`
	for _, tc := range []struct{ name, body string }{
		{"missing key", `{` + upd + `}`},
		{"wrong key", `{"write_api_key":"WRONGKEY00000000",` + upd + `}`},
		{"read key", `{"write_api_key":"` + ch.ReadKey + `",` + upd + `}`},
		{"other channel's key", `{"write_api_key":"` + other.WriteKey + `",` + upd + `}`},
	} {
		status, resp := e.postJSON(ch.ID, tc.body)
		if status != http.StatusUnauthorized || resp != authBody {
			t.Errorf("%s: %d %s, want 401", tc.name, status, resp)
		}
	}
	form := url.Values{"write_api_key": {"WRONGKEY00000000"}, "time_format": {"absolute"}, "updates": {"2026-11-30 10:00:00,1"}}
	if status, resp := e.postCSV(ch.ID, form); status != http.StatusUnauthorized || resp != authBody {
		t.Errorf("csv with a wrong key: %d %s", status, resp)
	}
	// A channel that does not exist, with a good key of another.
	if status, _ := e.postJSON(99, `{"write_api_key":"`+ch.WriteKey+`",`+upd+`}`); status != http.StatusUnauthorized {
		t.Errorf("unknown channel: %d, want 401", status)
	}
	if n := len(e.entries(ch.ID)) + len(e.entries(other.ID)); n != 0 {
		t.Errorf("refused writes stored %d entries", n)
	}
	// Only POST (and the CORS preflight).
	resp, err := http.Get(e.base + fmt.Sprintf("/channels/%d/bulk_update.json", ch.ID))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, OPTIONS" {
		t.Errorf("GET: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// No key reached the logs, not even the wrong ones.
	logs := e.logs.String()
	for _, k := range []string{ch.WriteKey, other.WriteKey, ch.ReadKey, "WRONGKEY00000000"} {
		if strings.Contains(logs, k) {
			t.Errorf("logs hold the key %s:\n%s", k, logs)
		}
	}
}

// bulkJSON is a JSON bulk write of n updates a second apart.
func bulkJSON(key string, n int, pad string) string {
	var b strings.Builder
	b.WriteString(`{"write_api_key":"` + key + `","updates":[`)
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"created_at":"%s","field1":"%d%s","field2":"%d"}`, start.Add(time.Duration(i)*time.Second).Format(time.RFC3339), i, pad, i*2)
	}
	b.WriteString(`]}`)
	return b.String()
}

func TestBulkUpdate_Limits(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(0)
	// 961 updates: one too many.
	status, resp := e.postJSON(ch.ID, bulkJSON(ch.WriteKey, httpd.MaxBulkUpdates+1, ""))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(resp, "updates holds more than 960 updates; the limit is 960 per request.") {
		t.Errorf("961 updates: %d %s", status, resp)
	}
	form := url.Values{"write_api_key": {ch.WriteKey}, "time_format": {"relative"},
		"updates": {strings.Repeat("1,1|", httpd.MaxBulkUpdates) + "1,1"}}
	if status, resp := e.postCSV(ch.ID, form); status != http.StatusRequestEntityTooLarge || !strings.Contains(resp, "updates holds 961 updates") {
		t.Errorf("961 csv updates: %d %s", status, resp)
	}
	// A form of many parameters is refused before it is parsed.
	status, resp = e.post(fmt.Sprintf("/channels/%d/bulk_update.csv", ch.ID), ctForm,
		strings.NewReader("write_api_key="+ch.WriteKey+"&time_format=absolute&updates=1796032800,1"+strings.Repeat("&a", 100000)))
	if status != http.StatusBadRequest || !strings.Contains(resp, "The form body has 100003 parameters") {
		t.Errorf("a form of 100003 parameters: %d %s", status, resp)
	}
	// A body declared over the limit is refused unread. (The client waits
	// for that answer before it sends the body: the server closes the
	// connection on a refused body, which could reset a client still
	// sending.)
	huge := bytes.NewReader(bytes.Repeat([]byte(" "), 4<<20))
	status, resp = e.post(fmt.Sprintf("/channels/%d/bulk_update.json", ch.ID), "application/json", huge, "Expect", "100-continue")
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(resp, "The request body is over") {
		t.Errorf("4 MiB body: %d %s", status, resp)
	}
	// Without a declared length (chunked) it is cut off at the limit
	// (served in-process: see above).
	api := httpd.NewAPI(httpd.APIOptions{Store: e.db, Registry: e.svc.Registry, Publisher: e.srv})
	req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/channels/%d/bulk_update.csv", ch.ID),
		struct{ io.Reader }{bytes.NewReader(bytes.Repeat([]byte(" "), 4<<20))})
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "The request body is over") {
		t.Errorf("4 MiB chunked body: %d %s", rec.Code, rec.Body)
	}
	// One update over the payload limit: 413 naming it.
	status, resp = e.postJSON(ch.ID, `{"write_api_key":"`+ch.WriteKey+`","updates":[{"created_at":"2026-11-30 10:00:00","field1":"1"},{"created_at":"2026-11-30 10:00:01","field1":"`+strings.Repeat("9", 3100)+`"}]}`)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(resp, "updates[1]: payload is") {
		t.Errorf("an oversized update: %d %s", status, resp)
	}
	if n := len(e.entries(ch.ID)); n != 0 {
		t.Fatalf("refused batches stored %d entries", n)
	}
	// 960 updates of the largest values are taken, with consecutive IDs.
	pad := strings.Repeat("0", channels.DefaultMaxValueLen-4)
	if status, resp := e.postJSON(ch.ID, bulkJSON(ch.WriteKey, httpd.MaxBulkUpdates, pad)); status != http.StatusAccepted || resp != bulkOK {
		t.Fatalf("960 updates: %d %s", status, resp)
	}
	got := e.entries(ch.ID)
	if len(got) != httpd.MaxBulkUpdates {
		t.Fatalf("stored %d entries, want 960", len(got))
	}
	for i, en := range got {
		if en.ID != uint64(i+1) {
			t.Fatalf("entry %d has ID %d", i, en.ID)
		}
	}
}

// A bulk write counts as one write against the channel's rate limit, and
// one too soon is refused whole with 429.
func TestBulkUpdate_RateLimit(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(time.Hour)
	if status, resp := e.postJSON(ch.ID, bulkJSON(ch.WriteKey, 100, "")); status != http.StatusAccepted {
		t.Fatalf("first batch: %d %s", status, resp)
	}
	status, resp := e.postJSON(ch.ID, bulkJSON(ch.WriteKey, 2, ""))
	if status != http.StatusTooManyRequests || !strings.Contains(resp, `"error_code":"error_too_many_requests"`) || !strings.Contains(resp, "A bulk write counts as one write.") {
		t.Errorf("second batch: %d %s", status, resp)
	}
	if n := len(e.entries(ch.ID)); n != 100 {
		t.Errorf("stored %d entries, want 100", n)
	}
}

// Bulk writes from many clients at once keep each batch's IDs together.
func TestBulkUpdate_Concurrent(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(0)
	const clients, per = 4, 50
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b strings.Builder
			b.WriteString(`{"write_api_key":"` + ch.WriteKey + `","updates":[`)
			for i := range per {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"created_at":"2026-11-%02d 10:00:%02d","field1":"%d"}`, c+1, i, c)
			}
			b.WriteString("]}")
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost,
				e.base+fmt.Sprintf("/channels/%d/bulk_update.json", ch.ID), strings.NewReader(b.String()))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("client %d: %d", c, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	got := e.entries(ch.ID)
	if len(got) != clients*per {
		t.Fatalf("stored %d entries, want %d", len(got), clients*per)
	}
	for start := 0; start < len(got); start += per {
		first, _ := got[start].Field(1)
		for i := start; i < start+per; i++ {
			if v, _ := got[i].Field(1); v != first || got[i].ID != uint64(i+1) {
				t.Fatalf("entry %d (id %d) of client %s sits in the batch of client %s", i, got[i].ID, v, first)
			}
		}
	}
}

// BenchmarkBulkUpdateJSON960 is one bulk_update.json request of 960
// updates (ThingSpeak's per-request maximum) through the API handler, a
// real broker and a real database: decoding, checks, one commit, fan-out.
func BenchmarkBulkUpdateJSON960(b *testing.B) {
	db, err := storage.Open(filepath.Join(b.TempDir(), "feedmq.db"), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	srv, err := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler)}, db, svc.Registry)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ch, err := svc.CreateChannel(context.Background(), auth.ChannelSpec{Name: "bench", Fields: [channels.NumFields]string{"temp", "hum"}})
	if err != nil {
		b.Fatal(err)
	}
	h := httpd.NewAPI(httpd.APIOptions{Store: db, Registry: svc.Registry, Publisher: srv})
	body := []byte(bulkJSON(ch.WriteKey, httpd.MaxBulkUpdates, ""))
	path := fmt.Sprintf("/channels/%d/bulk_update.json", ch.ID)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// The dashboard's event stream gets every entry of a bulk write, in order.
func TestBulkUpdate_EventStream(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	ch := e.channel(true, "Temperature")
	api := httptest.NewServer(httpd.NewAPI(httpd.APIOptions{Store: e.db, Registry: e.svc.Registry, Publisher: e.srv}))
	t.Cleanup(api.Close)
	s := e.open(fmt.Sprintf("/channels/%d/events", ch.ID))
	s.skipTo(": stream")
	waitWatchers(t, e.srv, 1)
	form := url.Values{"write_api_key": {ch.WriteKey}, "time_format": {"relative"}, "updates": {"0,1|10,2|10,3"}}
	resp, err := http.Post(api.URL+fmt.Sprintf("/channels/%d/bulk_update.csv", ch.ID), ctForm, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("bulk_update.csv: %d", resp.StatusCode)
	}
	for i := 1; i <= 3; i++ {
		if l := s.skipTo("id: "); l != "id: "+strconv.Itoa(i) {
			t.Fatalf("got %q, want id: %d", l, i)
		}
		if l := s.next(); !strings.Contains(l, `"entry_id":`+strconv.Itoa(i)+`,"field1":"`+strconv.Itoa(i)+`"`) {
			t.Errorf("entry %d: %q", i, l)
		}
	}
}

// TestBulkUpdate_DisabledFieldsDropped checks that a bulk update carrying
// fields the channel has not enabled stores the enabled ones, as a single
// write does (JSON and CSV).
func TestBulkUpdate_DisabledFieldsDropped(t *testing.T) {
	e := newBulkEnv(t)
	ch := e.channel(0)
	body := `{"write_api_key":"` + ch.WriteKey + `","updates":[
		{"created_at":"2026-11-30 10:00:00","field1":1,"field3":3,"field8":8},
		{"created_at":"2026-11-30 10:00:01","field2":2,"field5":5}]}`
	if status, resp := e.postJSON(ch.ID, body); status != http.StatusAccepted || resp != bulkOK {
		t.Fatalf("bulk_update.json: %d %s", status, resp)
	}
	form := url.Values{"write_api_key": {ch.WriteKey}, "time_format": {"absolute"},
		"updates": {"2026-11-30 10:00:02,4,5,6,7,8,9,10,11"}}
	if status, resp := e.postCSV(ch.ID, form); status != http.StatusAccepted || resp != bulkOK {
		t.Fatalf("bulk_update.csv: %d %s", status, resp)
	}
	got := e.entries(ch.ID)
	want := []string{`"field1":"1","field2":null,"field3":null`, `"field1":null,"field2":"2","field3":null`, `"field1":"4","field2":"5","field3":null`}
	if len(got) != len(want) {
		t.Fatalf("stored %d entries, want %d", len(got), len(want))
	}
	for i, w := range want {
		js := string(got[i].AppendJSON(nil))
		if !strings.Contains(js, w) || !strings.Contains(js, `"field8":null`) || !strings.Contains(js, `"field5":null`) {
			t.Errorf("entry %d = %s, want %s and no disabled field", i+1, js, w)
		}
	}
}
