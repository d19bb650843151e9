package httpd_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// countingStore counts every call the API makes to the store.
type countingStore struct {
	channels.Store
	calls, lists atomic.Int64
}

func (s *countingStore) FindChannel(ctx context.Context, id uint64) (*channels.Channel, error) {
	s.calls.Add(1)
	return s.Store.FindChannel(ctx, id)
}

func (s *countingStore) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	s.calls.Add(1)
	s.lists.Add(1)
	return s.Store.ListChannels(ctx)
}

func (s *countingStore) Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	s.calls.Add(1)
	return s.Store.Entries(ctx, id, f)
}

func (s *countingStore) FindEntry(ctx context.Context, ch, id uint64) (*channels.Entry, error) {
	s.calls.Add(1)
	return s.Store.FindEntry(ctx, ch, id)
}

// get sends a GET over a real connection and returns status, body and
// Retry-After.
func httpGet(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// Writes with well-formed keys that belong to no channel are answered from
// memory: the store is never asked (it used to list every channel, and
// each store read made the writer checkpoint first, so any client could
// stall MQTT publishes).
func TestUnknownWriteKeysNeverReachTheStore(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("W", "", false, map[int]string{1: "v"})
	store := &countingStore{Store: e.db}
	srv := httptest.NewServer(httpd.NewAPI(httpd.APIOptions{
		Store: store, Registry: e.svc.Registry, Publisher: e.pub,
	}))
	defer srv.Close()
	for i := range 200 {
		key := "GUESS" + strings.Repeat("0", 11-len(strconv.Itoa(i))) + strconv.Itoa(i)
		for _, path := range []string{"/update", "/update.json"} {
			if status, body, _ := httpGet(t, srv.URL+path+"?field1=1&api_key="+key); status == 200 {
				t.Fatalf("%s with key %s: %d %s", path, key, status, body)
			}
		}
	}
	if n := store.calls.Load(); n != 0 {
		t.Fatalf("400 writes with unknown keys made %d store calls (%d ListChannels), want 0", n, store.lists.Load())
	}
	// A new channel's key works at once, still without the store.
	ch2 := e.channel("New", "", false, map[int]string{1: "v"})
	for _, c := range []*channels.Channel{ch, ch2} {
		if status, body, _ := httpGet(t, srv.URL+"/update?field1=2&api_key="+c.WriteKey); status != 200 || body != "1" {
			t.Fatalf("write to channel %d: %d %q", c.ID, status, body)
		}
	}
	if n := store.calls.Load(); n != 0 {
		t.Fatalf("good writes made %d store calls, want 0", n)
	}
}

// A burst of wrong keys from one address gets that address throttled (429
// and Retry-After, /update's "0"), whether the keys are write keys or
// read keys; other addresses and public reads are not affected; no key
// is ever logged.
func TestWrongKeysAreThrottled(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	priv := e.channel("Private", "", false, map[int]string{1: "v"})
	pub := e.channel("Public", "", true, map[int]string{1: "v"})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := httpd.NewAPI(httpd.APIOptions{
		Store: e.db, Registry: e.svc.Registry, Publisher: e.pub, Logger: log,
		KeyThrottle: auth.NewThrottle(auth.Backoff{AfterFailures: 3, Initial: time.Minute, Max: 5 * time.Minute}),
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	bad := []string{"BADKEY0000000001", "BADKEY0000000002", "BADKEY0000000003", "BADKEY0000000004"}
	for _, k := range bad[:3] {
		if status, body, _ := httpGet(t, srv.URL+"/update?field1=1&api_key="+k); status != 400 || body != "0" {
			t.Fatalf("wrong key %s: %d %q, want 400 0", k, status, body)
		}
	}
	// Throttled now: even the right key is not looked at.
	for _, target := range []string{
		"/update?field1=1&api_key=" + bad[3],
		"/update?field1=1&api_key=" + priv.WriteKey,
	} {
		status, body, retry := httpGet(t, srv.URL+target)
		if n, _ := strconv.Atoi(retry); status != 429 || body != "0" || n < 1 || n > 60 {
			t.Errorf("%s: %d %q Retry-After %q, want 429 0 and Retry-After 1..60", target[:8], status, body, retry)
		}
	}
	status, body, retry := httpGet(t, srv.URL+"/update.json?field1=1&api_key="+priv.WriteKey)
	if status != 429 || !strings.Contains(body, `"error_code":"error_too_many_requests"`) || retry == "" {
		t.Errorf("/update.json: %d %s Retry-After %q", status, body, retry)
	}
	status, body, _ = httpGet(t, srv.URL+"/channels/1/feeds/last.txt?api_key="+priv.ReadKey)
	if status != 429 || body != "error_too_many_requests" {
		t.Errorf("private read: %d %q, want 429", status, body)
	}
	// A public channel needs no key: nothing to throttle.
	if status, _, _ := httpGet(t, srv.URL+"/channels/"+strconv.FormatUint(pub.ID, 10)+"/feeds.json"); status != 200 {
		t.Errorf("public read from a throttled address: %d", status)
	}
	// Another address still writes and reads with the right keys.
	other := func(target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = "192.0.2.77:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := other("/update?field1=7&api_key=" + priv.WriteKey); rec.Code != 200 || rec.Body.String() != "1" {
		t.Errorf("good key from another address: %d %q", rec.Code, rec.Body.String())
	}
	if rec := other("/channels/1/fields/1/last.txt?api_key=" + priv.ReadKey); rec.Code != 200 || rec.Body.String() != "7" {
		t.Errorf("good read key from another address: %d %q", rec.Code, rec.Body.String())
	}
	// Wrong read keys count too.
	for i := range 3 {
		if rec := other("/channels/1/feeds.json?api_key=" + bad[i]); rec.Code != 401 {
			t.Fatalf("wrong read key %d: %d", i, rec.Code)
		}
	}
	if rec := other("/channels/1/feeds.json?api_key=" + priv.ReadKey); rec.Code != 429 {
		t.Errorf("after 3 wrong read keys: %d, want 429", rec.Code)
	}

	out := logs.String()
	if !strings.Contains(out, "http write refused") {
		t.Fatalf("the refusals were not logged at all:\n%s", out)
	}
	for _, k := range append(bad, priv.WriteKey, priv.ReadKey, pub.WriteKey, pub.ReadKey) {
		if strings.Contains(out, k) {
			t.Errorf("key %s appears in the log:\n%s", k, out)
		}
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
