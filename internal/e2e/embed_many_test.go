package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/internal/browsertest"
)

// TestEmbedEightLiveCharts: a blog page on another origin embeds one
// dynamic chart per field of an eight-field channel, as people do with
// ThingSpeak. Every chart must load and go live. A browser opens at most
// six HTTP/1.1 connections to one host, so charts that each hold an
// event stream open leave the seventh and eighth waiting forever.
func TestEmbedEightLiveCharts(t *testing.T) {
	chrome := browsertest.Chromium(t)
	data := t.TempDir()
	out, err := exec.Command(plainBuild.binary(t), "--data", data, "channel", "create", "--name", "Eight", "--public").CombinedOutput()
	if err != nil {
		t.Fatalf("channel create: %v\n%s", err, out)
	}
	srv := startServeWith(t, plainBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "warn")
	base := "http://" + srv.addrs["http"]

	var page strings.Builder
	page.WriteString("<!doctype html><title>blog</title>")
	for n := 1; n <= 8; n++ {
		fmt.Fprintf(&page, `<iframe width="450" height="260" src="%s/channels/1/charts/%d?dynamic=true"></iframe>`, base, n)
	}
	blog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(page.String()))
	}))
	defer blog.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// Site isolation and the same-origin policy are off only so that the
	// test can read the frames' documents; connection limits stay.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.Flag("headless", true),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-web-security", true), chromedp.Flag("disable-site-isolation-trials", true),
		chromedp.Flag("disable-features", "IsolateOrigins,site-per-process"))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate(blog.URL)); err != nil {
		t.Fatal(err)
	}
	const states = `Array.from(document.querySelectorAll('iframe')).map(function (f) {
		try { var e = f.contentDocument.getElementById('embed'); return e ? (e.getAttribute('data-state') || '-') + '/' + (e.getAttribute('data-live') || '-') : 'no page'; }
		catch (err) { return 'unreadable'; } }).join(' ')`
	want := strings.TrimSpace(strings.Repeat("ready/on ", 8))
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		got, err = chromedp.Run(bctx, chromedp.Evaluate[string](states))
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("charts (state/live) after 30 s: %s, want all ready/on", got)
}
