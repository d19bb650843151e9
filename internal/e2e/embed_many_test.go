package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/internal/browsertest"
)

// embedServe starts `feedmq serve` with dynamic pages polling every second
// and a public eight-field channel; it returns the HTTP base URL and the
// channel's write key.
func embedServe(t *testing.T) (base, writeKey string) {
	t.Helper()
	data := t.TempDir()
	out, err := exec.Command(plainBuild.binary(t), "--data", data, "channel", "create", "--name", "Eight", "--public", "--json").Output()
	if err != nil {
		t.Fatalf("channel create: %v\n%s", err, out)
	}
	var ch struct {
		WriteKey string `json:"write_api_key"`
	}
	if err := json.Unmarshal(out, &ch); err != nil || ch.WriteKey == "" {
		t.Fatalf("channel create: %v %s", err, out)
	}
	cfg := filepath.Join(data, "feedmq.yaml")
	if err := os.WriteFile(cfg, []byte("http:\n  embed_poll_interval: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServeWith(t, plainBuild, data, "--config", cfg, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "warn")
	return "http://" + srv.addrs["http"], ch.WriteKey
}

// embedWrite writes one entry through /update.
func embedWrite(t *testing.T, base string, q url.Values) {
	t.Helper()
	resp, err := http.Get(base + "/update?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) == "0" {
		t.Fatalf("write %v: %d %s", q, resp.StatusCode, b)
	}
}

// framesBrowser opens page in a headless Chromium whose frames' documents
// the test may read: site isolation and the same-origin policy are off for
// that, connection limits stay.
func framesBrowser(t *testing.T, page string) context.Context {
	t.Helper()
	chrome := browsertest.Chromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.Flag("headless", true),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-web-security", true), chromedp.Flag("disable-site-isolation-trials", true),
		chromedp.Flag("disable-features", "IsolateOrigins,site-per-process"))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	return bctx
}

// blogPage serves an HTML page of another origin that holds frames.
func blogPage(t *testing.T, frames string) string {
	blog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>blog</title>"+frames)
	}))
	t.Cleanup(blog.Close)
	return blog.URL
}

// waitFrames polls expr, a string expression, in the page until it equals
// want.
func waitFrames(t *testing.T, bctx context.Context, what, expr, want string) {
	t.Helper()
	var got string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if got, err = chromedp.Run(bctx, chromedp.Evaluate[string](expr)); err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s after 30 s: %s, want %s", what, got, want)
}

// frameAttrs lists, frame by frame, the attributes of each #embed.
func frameAttrs(attrs ...string) string {
	return `Array.from(document.querySelectorAll('iframe')).map(function (f) {
		try { var e = f.contentDocument.getElementById('embed'); if (!e) return 'no page';
			return ` + strings.Join(func() []string {
		var parts []string
		for _, a := range attrs {
			parts = append(parts, `(e.getAttribute('data-`+a+`') || '-')`)
		}
		return parts
	}(), "+'/'+") + `; }
		catch (err) { return 'unreadable'; } }).join(' ')`
}

// TestEmbedEightLiveCharts: a blog page on another origin embeds one
// dynamic chart per field of an eight-field channel, as people do with
// ThingSpeak. Every chart must load, go live and take a new entry. A
// browser opens at most six HTTP/1.1 connections to one host, so charts
// that each held an event stream open left the seventh and eighth waiting
// forever.
func TestEmbedEightLiveCharts(t *testing.T) {
	base, key := embedServe(t)
	first := url.Values{"api_key": {key}}
	for n := 1; n <= 8; n++ {
		first.Set(fmt.Sprintf("field%d", n), fmt.Sprint(n))
	}
	embedWrite(t, base, first)

	var page strings.Builder
	for n := 1; n <= 8; n++ {
		fmt.Fprintf(&page, `<iframe width="450" height="260" src="%s/channels/1/charts/%d?dynamic=true"></iframe>`, base, n)
	}
	bctx := framesBrowser(t, blogPage(t, page.String()))
	states := frameAttrs("state", "live", "points", "lasty")

	var want strings.Builder
	for n := 1; n <= 8; n++ {
		fmt.Fprintf(&want, "ready/on/1/%d ", n)
	}
	waitFrames(t, bctx, "charts (state/live/points/last value)", states, strings.TrimSpace(want.String()))

	// A new entry reaches every chart, without a reload.
	next := url.Values{"api_key": {key}}
	want.Reset()
	for n := 1; n <= 8; n++ {
		next.Set(fmt.Sprintf("field%d", n), fmt.Sprint(100+n))
		fmt.Fprintf(&want, "ready/on/2/%d ", 100+n)
	}
	embedWrite(t, base, next)
	waitFrames(t, bctx, "charts after a write", states, strings.TrimSpace(want.String()))
}

// refusingProxy stands between the browser and feedmq: it answers the
// first feed read of chart and widget pages with 503 and Retry-After, as
// a server at its limits does, and, when cut is set, breaks the next poll
// off without an answer, as a network does.
type refusingProxy struct {
	next             http.Handler
	refused, dropped atomic.Int32
	cut              atomic.Bool
	loads            atomic.Int32
}

func (p *refusingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	feed := strings.HasSuffix(r.URL.Path, "/fields/1.json") || strings.HasSuffix(r.URL.Path, "/fields/1/last.json") ||
		strings.HasSuffix(r.URL.Path, "/feeds.json")
	if feed && p.loads.Add(1) <= 2 {
		// The chart's and the widget's first reads.
		p.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"status":"503","error":{"error_code":"error_unavailable","message":"busy","details":"Try again later."}}`, http.StatusServiceUnavailable)
		return
	}
	if feed && p.cut.CompareAndSwap(true, false) {
		p.dropped.Add(1)
		// Bytes that are no HTTP answer: the browser fails the request
		// (a connection closed before any byte it would resend instead).
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			io.WriteString(conn, "\x00garbage\r\n\r\n")
			conn.Close()
		}
		return
	}
	p.next.ServeHTTP(w, r)
}

// TestEmbedChartRecovers: a dynamic chart and a widget whose first read
// is refused with 503 load after it, and keep polling after a read that
// got no answer at all: a later entry still reaches both.
func TestEmbedChartRecovers(t *testing.T) {
	base, key := embedServe(t)
	embedWrite(t, base, url.Values{"api_key": {key}, "field1": {"7"}})
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &refusingProxy{next: httputil.NewSingleHostReverseProxy(target)}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	frames := fmt.Sprintf(`<iframe width="450" height="260" src="%s/channels/1/charts/1?dynamic=true"></iframe>`+
		`<iframe width="300" height="200" src="%s/channels/1/widgets/numeric/1"></iframe>`, front.URL, front.URL)
	bctx := framesBrowser(t, blogPage(t, frames))
	states := frameAttrs("state", "live", "retries", "points", "value")
	waitFrames(t, bctx, "after a 503", states, "ready/on/1/1/- ready/on/1/-/7")
	if n := proxy.refused.Load(); n != 2 {
		t.Fatalf("%d reads refused, want 2", n)
	}

	// The next poll of one of them gets no answer; whichever it was
	// retries, and both take the next entry.
	proxy.cut.Store(true)
	for deadline := time.Now().Add(30 * time.Second); proxy.dropped.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no poll came through the proxy in 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	embedWrite(t, base, url.Values{"api_key": {key}, "field1": {"8.5"}})
	got := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, err = chromedp.Run(bctx, chromedp.Evaluate[string](states)); err != nil {
			t.Fatal(err)
		}
		if got == "ready/on/2/2/- ready/on/1/-/8.5" || got == "ready/on/1/2/- ready/on/2/-/8.5" {
			return
		}
	}
	t.Fatalf("after a dropped poll and a write: %s, want both updated and one more retry", got)
}

// TestEmbedChartBackDated: a dynamic chart shows entries in time order,
// as its first read does. An entry written back-dated (a device sending
// what it buffered offline) belongs among the older points, not after the
// newest one: the chart's last point stays the newest by time.
func TestEmbedChartBackDated(t *testing.T) {
	base, key := embedServe(t)
	now := time.Now().UTC()
	for i, v := range []string{"10", "20"} {
		embedWrite(t, base, url.Values{"api_key": {key}, "field1": {v},
			"created_at": {now.Add(time.Duration(i-10) * time.Minute).Format(time.RFC3339)}})
	}
	bctx := framesBrowser(t, blogPage(t, `<iframe width="450" height="260" src="`+base+`/channels/1/charts/1?dynamic=true"></iframe>`))
	states := frameAttrs("state", "live", "points", "lasty")
	waitFrames(t, bctx, "chart (state/live/points/last value)", states, "ready/on/2/20")
	embedWrite(t, base, url.Values{"api_key": {key}, "field1": {"5"}, "created_at": {now.Add(-30 * time.Minute).Format(time.RFC3339)}})
	embedWrite(t, base, url.Values{"api_key": {key}, "field1": {"30"}, "created_at": {now.Add(-time.Minute).Format(time.RFC3339)}})
	waitFrames(t, bctx, "chart after a back-dated write and a new one", states, "ready/on/4/30")
	embedWrite(t, base, url.Values{"api_key": {key}, "field1": {"7"}, "created_at": {now.Add(-20 * time.Minute).Format(time.RFC3339)}})
	waitFrames(t, bctx, "chart after a back-dated write alone (points, then the last point)",
		frameAttrs("points", "lasty"), "5/30")
}
