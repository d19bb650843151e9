package httpd_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	httpd "github.com/feedmq/feedmq/http"
)

// Wrong read keys at /dashboard/channels.json and the event streams count against
// the client's address like those of the REST API.
func TestDashboardWrongKeysAreThrottled(t *testing.T) {
	e := newDashEnvWith(t, time.Hour, func(o *httpd.DashboardOptions) {
		o.KeyThrottle = auth.NewThrottle(auth.Backoff{AfterFailures: 3, Initial: time.Minute, Max: 5 * time.Minute})
	})
	priv := e.channel(false, "t")
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(e.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if status, _ := get("/dashboard/channels.json?api_key=WRONGKEY00000001&api_key=WRONGKEY00000002"); status != 200 {
		t.Fatalf("channels.json: %d", status)
	}
	for i := range 2 {
		if status, _ := get("/channels/" + strconv.FormatUint(priv.ID, 10) + "/events?api_key=WRONGKEY0000000" + strconv.Itoa(i)); status != 401 {
			t.Fatalf("events with a wrong key: %d", status)
		}
	}
	for _, path := range []string{
		"/dashboard/channels.json?api_key=" + priv.ReadKey,
		"/channels/" + strconv.FormatUint(priv.ID, 10) + "/events?api_key=" + priv.ReadKey,
	} {
		if status, retry := get(path); status != 429 || retry == "" {
			t.Errorf("%s after 3 wrong keys: %d, Retry-After %q; want 429", path[:14], status, retry)
		}
	}
	if status, _ := get("/dashboard/channels.json"); status != 200 {
		t.Errorf("channels.json without keys from a throttled address: %d", status)
	}
}

// Event streams beyond MaxStreams get 503 with Retry-After; a slot frees
// when a stream ends.
func TestDashboardStreamCap(t *testing.T) {
	e := newDashEnvWith(t, time.Hour, func(o *httpd.DashboardOptions) { o.MaxStreams = 2 })
	c := e.channel(true, "t")
	url := e.http.URL + "/channels/" + strconv.FormatUint(c.ID, 10) + "/events"
	open := func() (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return resp, cancel
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range 2 {
		resp, cancel := open()
		cancels = append(cancels, cancel)
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
	}
	resp, cancel := open()
	cancel()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d, Retry-After %q; want 503", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	cancels[0]()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, cancel := open()
		cancels = append(cancels, cancel)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a stream ended: %d", resp.StatusCode)
		}
		cancel()
	}
}
