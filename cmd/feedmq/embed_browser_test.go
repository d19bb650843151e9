package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/browsertest"
)

// TestEmbedBrowser embeds feedmq's charts and widgets in a page of
// another origin (a second server on another port) and checks in headless
// Chromium that they render inside their frames, that a dynamic chart and
// the widgets take a new entry live, and that the dashboard, which refuses
// framing, does not render there.
func TestEmbedBrowser(t *testing.T) {
	chrome := browsertest.Chromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Dynamic pages poll every second here, so that a write shows soon.
	cfg := httpConfig(t)
	cfg.HTTP.EmbedPollInterval = Duration(time.Second)
	s, err := openServer(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.addr("http").String()
	pub, err := s.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "Greenhouse", Public: true, Fields: [8]string{"Temperature"}})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := s.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "Cellar", Fields: [8]string{"Power"}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(key string, v string, at time.Time) {
		t.Helper()
		q := url.Values{"api_key": {key}, "field1": {v}}
		if !at.IsZero() {
			q.Set("created_at", at.Format(time.RFC3339))
		}
		if code, body := httpDo(t, http.MethodGet, base+"/update?"+q.Encode(), "", ""); code != 200 || body == "0" {
			t.Fatalf("write %s: %d %s", v, code, body)
		}
	}
	const history = 7
	start := time.Now().UTC().Add(-history * time.Minute)
	for i := range history {
		write(pub.WriteKey, fmt.Sprint(20+i), start.Add(time.Duration(i)*time.Minute))
		if i < 3 {
			write(priv.WriteKey, fmt.Sprint(100*i), start.Add(time.Duration(i)*time.Minute))
		}
	}

	// An averaged chart reads its buckets from the read API.
	agg, err := s.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "Averaged", Public: true, Fields: [8]string{"Level"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		write(agg.WriteKey, fmt.Sprint(i), time.Now().UTC().Add(time.Duration(i-12)*5*time.Minute))
	}
	const aggQuery = "average=10&minutes=120"
	// restBuckets answers the averaged read as the chart makes it: how many
	// buckets, and the newest one's value.
	restBuckets := func() (int, float64) {
		t.Helper()
		code, body := httpDo(t, http.MethodGet, fmt.Sprintf("%s/channels/%d/fields/1.json?%s", base, agg.ID, aggQuery), "", "")
		var feed struct {
			Feeds []struct {
				Field1 *string `json:"field1"`
			} `json:"feeds"`
		}
		if err := json.Unmarshal([]byte(body), &feed); code != 200 || err != nil || len(feed.Feeds) == 0 || feed.Feeds[len(feed.Feeds)-1].Field1 == nil {
			t.Fatalf("averaged read: %d %v %.300s", code, err, body)
		}
		last, err := strconv.ParseFloat(*feed.Feeds[len(feed.Feeds)-1].Field1, 64)
		if err != nil {
			t.Fatalf("averaged read: %.300s", body)
		}
		return len(feed.Feeds), last
	}

	// The embedding page, on another origin.
	frames := map[string]string{
		"live":     fmt.Sprintf("%s/channels/%d/charts/1?dynamic=true&title=Live&color=0a0", base, pub.ID),
		"column":   fmt.Sprintf("%s/channels/%d/charts/1?type=column&results=5&width=auto&height=auto", base, pub.ID),
		"private":  fmt.Sprintf("%s/channels/%d/charts/1?api_key=%s&type=spline", base, priv.ID, priv.ReadKey),
		"numeric":  fmt.Sprintf("%s/channels/%d/widgets/numeric/1?units=%%C2%%B0C&decimals=1", base, pub.ID),
		"gauge":    fmt.Sprintf("%s/channels/%d/widgets/gauge/1?min=0&max=40", base, pub.ID),
		"filtered": fmt.Sprintf("%s/channels/%d/charts/1?min=21&max=25&yaxismin=0&yaxismax=50&type=step", base, pub.ID),
		"averaged": fmt.Sprintf("%s/channels/%d/charts/1?dynamic=true&%s", base, agg.ID, aggQuery),
		"console":  base + "/",
	}
	var b strings.Builder
	b.WriteString("<!doctype html><title>blog</title><h1>My blog</h1>\n")
	for name, src := range frames {
		fmt.Fprintf(&b, "<iframe name=%q src=%q width=\"450\" height=\"260\"></iframe>\n", name, src)
	}
	blog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, b.String())
	}))
	defer blog.Close()
	if strings.HasPrefix(blog.URL, base) || !strings.HasPrefix(blog.URL, "http://127.0.0.1:") {
		t.Fatalf("the blog %s is not another loopback origin than %s", blog.URL, base)
	}

	bctx, cancelBrowser := browsertest.New(ctx, t, chrome, 1280, 1600)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate(blog.URL)); err != nil {
		t.Fatal(err)
	}

	// inFrame evaluates expr in the document of the frame named name. The
	// frames are of another origin, so the blog's own script could not
	// look inside; DevTools gives each its own isolated world instead,
	// which sees the frame's DOM.
	inFrame := func(name, expr string) (string, error) {
		return chromedp.Run(bctx, chromedp.Action[string](func(ctx context.Context, tg *chromedp.Target) (string, error) {
			tree, err := cdp.Call(ctx, tg, page.GetFrameTree, cdp.Empty{})
			if err != nil {
				return "", err
			}
			for _, c := range tree.FrameTree.ChildFrames {
				if c.Frame.Name != name {
					continue
				}
				w, err := cdp.Call(ctx, tg, page.CreateIsolatedWorld, page.CreateIsolatedWorldParams{FrameID: c.Frame.ID, WorldName: "embedtest"})
				if err != nil {
					return "", err
				}
				yes := true
				res, err := cdp.Call(ctx, tg, runtime.Evaluate, runtime.EvaluateParams{Expression: expr, ContextID: w.ExecutionContextID, ReturnByValue: &yes})
				if err != nil {
					return "", err
				}
				if res.ExceptionDetails != nil {
					return "", fmt.Errorf("%s: %s", expr, res.ExceptionDetails.Text)
				}
				var s string
				if err := json.Unmarshal(res.Result.Value, &s); err != nil {
					return string(res.Result.Value), nil
				}
				return s, nil
			}
			return "", fmt.Errorf("no frame %q", name)
		}))
	}
	// waitFrame polls expr (a string expression) in frame name until it
	// equals want.
	waitFrame := func(name, expr, want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		var got string
		var err error
		for time.Now().Before(deadline) {
			if got, err = inFrame(name, expr); err == nil && got == want {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("frame %s: %s = %q (%v), want %q", name, expr, got, err, want)
	}
	points := `(function(){var e=document.getElementById('embed');return e&&e.dataset.state==='ready'?String(document.querySelectorAll('#embed svg .series .pt').length)+'/'+e.dataset.points:'not ready'})()`
	value := `(function(){var e=document.getElementById('embed');return e&&e.dataset.state==='ready'?(e.dataset.value||'')+'|'+e.querySelector('.title').textContent+' '+e.querySelector('.valueline').textContent:'not ready'})()`

	// Every entry is a point drawn, in each kind of chart.
	waitFrame("live", points, fmt.Sprintf("%d/%d", history, history))
	waitFrame("column", points, "5/5")
	waitFrame("private", points, "3/3")
	waitFrame("filtered", points, "5/5") // 21..25 of 20..26
	waitFrame("live", `document.querySelector('#embed .title').textContent+' '+document.querySelector('#embed svg path.line').getAttribute('stroke')`, "Live #0a0")
	waitFrame("column", `String(document.querySelectorAll('#embed svg rect.pt').length)`, "5")
	// Widgets show the newest value, formatted.
	waitFrame("numeric", value, "26|Temperature 26.0°C")
	waitFrame("gauge", `document.getElementById('embed').dataset.value + ' ' + document.querySelector('#embed text.gv').textContent`, "26 26")

	// The dashboard refuses to be framed: its frame shows no dashboard.
	if got, err := inFrame("console", `String(!!document.getElementById('app'))`); err != nil || got != "false" {
		t.Errorf("the dashboard inside another origin's frame: %q %v", got, err)
	}

	// A write: the dynamic chart gains a point and the widgets the value,
	// without a reload; the static chart stays.
	if _, err := inFrame("live", `window.marker = 1, document.getElementById('embed').dataset.marker = 'same', 'ok'`); err != nil {
		t.Fatal(err)
	}
	waitFrame("live", `document.getElementById('embed').dataset.live || ''`, "on")
	waitFrame("numeric", `document.getElementById('embed').dataset.live || ''`, "on")
	write(pub.WriteKey, "31.25", time.Time{})
	waitFrame("live", points, fmt.Sprintf("%d/%d", history+1, history+1))
	waitFrame("live", `document.getElementById('embed').dataset.marker`, "same")
	waitFrame("numeric", `document.getElementById('embed').dataset.value`, "31.25")
	waitFrame("gauge", `document.querySelector('#embed text.gv').textContent`, "31.25")
	if got, err := inFrame("column", points); err != nil || got != "5/5" {
		t.Errorf("static chart after a write: %q %v", got, err)
	}

	// The averaged chart draws the read API's buckets, and re-reads them
	// when an entry arrives: the newest bucket's average moves.
	lastY := func() float64 {
		t.Helper()
		got, err := inFrame("averaged", `document.getElementById('embed').dataset.lasty || ''`)
		f, perr := strconv.ParseFloat(got, 64)
		if err != nil || perr != nil {
			return math.NaN()
		}
		return f
	}
	n, last := restBuckets()
	if n < 2 || n >= 12 {
		t.Fatalf("%d buckets of 12 entries five minutes apart with average=10", n)
	}
	waitFrame("averaged", points, fmt.Sprintf("%d/%d", n, n))
	if y := lastY(); math.Abs(y-last) > 1e-9 {
		t.Errorf("averaged chart's newest point %v, read API's %v", y, last)
	}
	waitFrame("averaged", `document.getElementById('embed').dataset.live || ''`, "on")
	write(agg.WriteKey, "1000", time.Time{})
	n2, last2 := restBuckets()
	if last2 <= last {
		t.Fatalf("newest bucket %v after writing 1000, was %v", last2, last)
	}
	deadline := time.Now().Add(15 * time.Second)
	for math.Abs(lastY()-last2) > 1e-9 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if y := lastY(); math.Abs(y-last2) > 1e-9 {
		t.Errorf("averaged chart's newest point %v after a write, read API's %v", y, last2)
	}
	waitFrame("averaged", points, fmt.Sprintf("%d/%d", n2, n2))
	// FEEDMQ_EMBED_SCREENSHOT=FILE.png saves a screenshot of the blog page.
	if path := os.Getenv("FEEDMQ_EMBED_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
