package httpd_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// dashEnv is a broker without listeners over a bbolt file, with the dashboard
// in front of a stand-in for the REST API.
type dashEnv struct {
	t    *testing.T
	db   testStore
	svc  *admin.Local
	srv  *broker.Server
	dash *httpd.Dashboard
	http *httptest.Server
}

func newDashEnv(t *testing.T, heartbeat time.Duration) *dashEnv {
	t.Helper()
	return newDashEnvWith(t, heartbeat, nil)
}

// newDashEnvWith is newDashEnv with the dashboard's options changed by set.
func newDashEnvWith(t *testing.T, heartbeat time.Duration, set func(*httpd.DashboardOptions)) *dashEnv {
	t.Helper()
	db := openStore(t, nil)
	svc, err := admin.NewLocal(t.Context(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv, err := broker.New(broker.Options{Logger: log}, db, svc.Registry)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Next", "api")
		http.NotFound(w, r)
	})
	e := &dashEnv{t: t, db: db, svc: svc, srv: srv}
	opts := httpd.DashboardOptions{Store: db, Registry: svc.Registry, Watcher: srv, Next: next, Logger: log, Heartbeat: heartbeat}
	if set != nil {
		set(&opts)
	}
	e.dash = httpd.NewDashboard(opts)
	e.http = httptest.NewServer(e.dash)
	t.Cleanup(e.http.Close)
	t.Cleanup(e.dash.Shutdown) // before the server closes: streams end first
	return e
}

func (e *dashEnv) channel(public bool, labels ...string) *channels.Channel {
	e.t.Helper()
	spec := auth.ChannelSpec{Name: "garden", Public: public}
	copy(spec.Fields[:], labels)
	c, err := e.svc.CreateChannel(e.t.Context(), spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// publish commits an entry through the broker, as an MQTT publish does,
// and returns its JSON.
func (e *dashEnv) publish(ch uint64, field1 string) string {
	e.t.Helper()
	en := channels.Entry{ChannelID: ch}
	en.SetValue(0, field1)
	if err := e.srv.Publish(context.Background(), &en); err != nil {
		e.t.Fatal(err)
	}
	return string(en.AppendJSON(nil))
}

func (e *dashEnv) get(path string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// stream is an open event stream read line by line.
type stream struct {
	t     *testing.T
	resp  *http.Response
	lines chan string
}

func (e *dashEnv) open(path string, hdr ...string) *stream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		e.t.Errorf("Content-Type %q", ct)
	}
	s := &stream{t: e.t, resp: resp, lines: make(chan string, 100)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	return s
}

// next returns the next non-empty line; "" at the end of the stream.
func (s *stream) next() string {
	s.t.Helper()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return ""
			}
			if l != "" {
				return l
			}
		case <-time.After(5 * time.Second):
			s.t.Fatal("no line from the event stream within 5s")
		}
	}
}

// skipTo reads until a line with prefix and returns it.
func (s *stream) skipTo(prefix string) string {
	s.t.Helper()
	for {
		l := s.next()
		if l == "" {
			s.t.Fatalf("stream ended before %q", prefix)
		}
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

func TestEventsAccess(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	pub := e.channel(true)
	priv := e.channel(false)
	for _, c := range []struct {
		path   string
		hdr    []string
		status int
		code   string
	}{
		{"/channels/99/events", nil, 404, "error_resource_not_found"},
		{"/channels/2/events", nil, 401, "error_auth_required"},
		{"/channels/2/events?api_key=" + priv.WriteKey, nil, 401, "error_auth_required"},
		{"/channels/2/events?api_key=" + pub.ReadKey, nil, 401, "error_auth_required"},
		{"/channels/1/events?since=x", nil, 400, "error_bad_request"},
	} {
		resp, body := e.get(c.path, c.hdr...)
		if resp.StatusCode != c.status || !strings.Contains(body, `"error_code":"`+c.code+`"`) ||
			resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s: %d %s %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/channels/1/events", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST: %v %v", resp, err)
	}
	// /channels/0/events and other non-IDs are the API's.
	if resp, _ := e.get("/channels/0/events"); resp.Header.Get("X-Next") != "api" {
		t.Errorf("/channels/0/events not passed on")
	}
	// The read key opens a private channel, in the query or a header.
	s := e.open("/channels/2/events?api_key=" + priv.ReadKey)
	s.skipTo("retry: ")
	s = e.open("/channels/2/events", "THINGSPEAKAPIKEY", priv.ReadKey)
	s.skipTo("retry: ")
}

// TestEventsEntry streams an entry committed through the broker.
func TestEventsEntry(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	ch := e.channel(true, "Temperature")
	other := e.channel(true)
	s := e.open("/channels/1/events")
	if l := s.next(); l != "retry: 3000" {
		t.Errorf("first line %q", l)
	}
	s.skipTo(": stream")
	waitWatchers(t, e.srv, 1)
	e.publish(other.ID, "elsewhere")
	want := e.publish(ch.ID, "23.5")
	if l := s.next(); l != "id: 1" {
		t.Errorf("got %q, want id: 1", l)
	}
	if l := s.next(); l != "data: "+want {
		t.Errorf("got %q\nwant data: %s", l, want)
	}
	want = e.publish(ch.ID, "24")
	s.skipTo("id: 2")
	if l := s.next(); l != "data: "+want {
		t.Errorf("got %q\nwant data: %s", l, want)
	}
}

// waitWatchers waits until the broker has n watchers: the stream has
// subscribed.
func waitWatchers(t *testing.T, srv *broker.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, _ := srv.WatchStats(); got == n {
			return
		}
	}
	got, _ := srv.WatchStats()
	t.Fatalf("watchers = %d, want %d", got, n)
}

func TestEventsHeartbeat(t *testing.T) {
	e := newDashEnv(t, 50*time.Millisecond)
	e.channel(true)
	s := e.open("/channels/1/events")
	s.skipTo(": stream")
	for range 2 {
		if l := s.next(); l != ": ping" {
			t.Fatalf("got %q, want a heartbeat", l)
		}
	}
}

// TestEventsResume replays what a reconnecting client missed, once.
func TestEventsResume(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	ch := e.channel(true)
	var sent []string
	for _, v := range []string{"1", "2", "3"} {
		sent = append(sent, e.publish(ch.ID, v))
	}
	for _, c := range []struct {
		path string
		hdr  []string
	}{
		{"/channels/1/events", []string{"Last-Event-ID", "1"}},
		{"/channels/1/events?since=1", nil},
	} {
		s := e.open(c.path, c.hdr...)
		s.skipTo(": stream")
		for i, want := range sent[1:] {
			if l := s.skipTo("id: "); l != "id: "+string(rune('2'+i)) {
				t.Errorf("%s: got %q", c.path, l)
			}
			if l := s.next(); l != "data: "+want {
				t.Errorf("%s: got %q\nwant data: %s", c.path, l, want)
			}
		}
	}
	// A client that is up to date gets only new entries.
	s := e.open("/channels/1/events?since=3")
	s.skipTo(": stream")
	waitWatchers(t, e.srv, 3)
	want := e.publish(ch.ID, "4")
	if l := s.next(); l != "id: 4" {
		t.Errorf("got %q, want id: 4", l)
	}
	if l := s.next(); l != "data: "+want {
		t.Errorf("got %q", l)
	}
}

// TestEventsEnd: a stream ends on Shutdown, and when access is revoked.
func TestEventsEnd(t *testing.T) {
	e := newDashEnv(t, 20*time.Millisecond)
	ch := e.channel(true)
	s := e.open("/channels/1/events")
	s.skipTo(": stream")
	private := false
	if _, err := e.svc.UpdateChannel(t.Context(), ch.ID, auth.ChannelUpdate{Public: &private}); err != nil {
		t.Fatal(err)
	}
	for l := s.next(); l != ""; l = s.next() {
		if l != ": ping" {
			t.Fatalf("unexpected %q", l)
		}
	}

	public := true
	if _, err := e.svc.UpdateChannel(t.Context(), ch.ID, auth.ChannelUpdate{Public: &public}); err != nil {
		t.Fatal(err)
	}
	s = e.open("/channels/1/events")
	s.skipTo(": stream")
	e.dash.Shutdown()
	for l := s.next(); l != ""; l = s.next() {
	}
	waitWatchers(t, e.srv, 0)
	if resp, _ := e.get("/channels/1/events"); resp.StatusCode != 503 {
		t.Errorf("after Shutdown: %d", resp.StatusCode)
	}
}

func TestAssets(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	for _, c := range []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/assets/app.js"`},
		{"/channel/7", "text/html; charset=utf-8", `<main id="app"`},
		{"/assets/app.js", "text/javascript; charset=utf-8", "EventSource"},
		{"/assets/app.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"},
		{"/assets/favicon.svg", "image/svg+xml", "<svg"},
	} {
		resp, body := e.get(c.path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype || !strings.Contains(body, c.contains) {
			t.Errorf("%s: %d %q, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains, strings.Contains(body, c.contains))
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: security headers missing", c.path)
		}
		etag := resp.Header.Get("ETag")
		if r2, _ := e.get(c.path, "If-None-Match", etag); etag == "" || r2.StatusCode != 304 {
			t.Errorf("%s: ETag %q, revalidation %d", c.path, etag, r2.StatusCode)
		}
	}
	for _, p := range []string{"/assets/missing.js", "/assets/", "/assets/index.html", "/assets/../web/app.js"} {
		if resp, _ := e.get(p); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
	// Paths the dashboard does not serve go to the API.
	for _, p := range []string{"/channel/0", "/channel/x", "/channels/1/feeds.json", "/index.html", "/nope"} {
		if resp, _ := e.get(p); resp.StatusCode != 404 || resp.Header.Get("X-Next") != "api" {
			t.Errorf("%s: %d, not passed on", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST /: %v %v", resp, err)
	}
	req, _ = http.NewRequest(http.MethodHead, e.http.URL+"/assets/app.css", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 || resp.ContentLength <= 0 {
		t.Errorf("HEAD: %v %v", resp, err)
	}
}

func TestChannelList(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	pub := e.channel(true, "Temperature", "Humidity")
	priv := e.channel(false, "Power")
	e.publish(pub.ID, "20")
	_, body := e.get("/dashboard/channels.json")
	if !strings.HasPrefix(body, `[{"id":1,"name":"garden","description":"","public":true,"fields":{"field1":"Temperature","field2":"Humidity"},"created_at":"`) ||
		!strings.HasSuffix(body, `"last_entry_id":1,"entries":1}]`) {
		t.Errorf("public list: %s", body)
	}
	resp, body := e.get("/dashboard/channels.json?api_key=AAAAAAAAAAAAAAAA&api_key=" + priv.ReadKey)
	if resp.Header.Get("Content-Type") != "application/json; charset=utf-8" || strings.Count(body, `"id":`) != 2 ||
		!strings.Contains(body, `"public":false,"fields":{"field1":"Power"}`) ||
		!strings.HasSuffix(body, `"last_entry_id":null,"entries":0,"api_key":"`+priv.ReadKey+`"}]`) {
		t.Errorf("with key: %s", body)
	}
	if _, body := e.get("/dashboard/channels.json", "THINGSPEAKAPIKEY", priv.ReadKey); strings.Count(body, `"id":`) != 2 {
		t.Errorf("header key: %s", body)
	}
	for _, k := range []string{pub.WriteKey, priv.WriteKey} {
		if strings.Contains(body, k) {
			t.Error("a write key is listed")
		}
	}
	if _, body := e.get("/dashboard/channels.json?api_key=" + priv.WriteKey); strings.Count(body, `"id":`) != 1 {
		t.Errorf("write key unlocked a channel: %s", body)
	}
	if resp, _ := e.get("/dashboard/channels.json?" + strings.Repeat("api_key=A&", 33)); resp.StatusCode != 400 {
		t.Errorf("33 keys: %d", resp.StatusCode)
	}
}

// TestChannelListEntries checks that the list counts the entries a feed
// holds rather than repeating the last entry_id, which retention and a
// clear make wrong, and says null when the store cannot count.
func TestChannelListEntries(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	ctx := t.Context()
	pub := e.channel(true, "Temperature")
	priv := e.channel(false, "Power")
	for i := range 35 {
		e.publish(pub.ID, strconv.Itoa(i))
	}
	for range 3 {
		e.publish(priv.ID, "1")
	}
	if _, body := e.get("/dashboard/channels.json"); !strings.HasSuffix(body, `"last_entry_id":35,"entries":35}]`) {
		t.Errorf("35 entries: %s", body)
	}
	five := uint64(5)
	if _, err := e.svc.UpdateChannel(ctx, pub.ID, auth.ChannelUpdate{MaxEntries: &five}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Prune(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get("/dashboard/channels.json"); !strings.HasSuffix(body, `"last_entry_id":35,"entries":5}]`) {
		t.Errorf("after retention: %s", body)
	}
	// A private channel's count is listed only with its read key.
	if _, body := e.get("/dashboard/channels.json?api_key=" + pub.ReadKey); strings.Contains(body, `"entries":3`) {
		t.Errorf("private count without its key: %s", body)
	}
	if _, body := e.get("/dashboard/channels.json?api_key=" + priv.ReadKey); !strings.Contains(body, `"last_entry_id":3,"entries":3,"api_key"`) {
		t.Errorf("private with key: %s", body)
	}
	if err := e.svc.ClearChannel(ctx, pub.ID); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get("/dashboard/channels.json"); !strings.HasSuffix(body, `"last_entry_id":null,"entries":0}]`) {
		t.Errorf("after clear: %s", body)
	}

	// A store that cannot count: null, never last_entry_id passed off as
	// a count.
	e.publish(pub.ID, "1")
	plain := newDashEnvWith(t, time.Hour, func(o *httpd.DashboardOptions) { o.Store = storeOnly{o.Store} })
	if _, err := plain.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "x", Public: true, Fields: [8]string{"a"}}); err != nil {
		t.Fatal(err)
	}
	plain.publish(1, "7")
	if _, body := plain.get("/dashboard/channels.json"); !strings.HasSuffix(body, `"last_entry_id":1,"entries":null}]`) {
		t.Errorf("store without a count: %s", body)
	}
}

// storeOnly hides every method but channels.Store's.
type storeOnly struct{ channels.Store }
