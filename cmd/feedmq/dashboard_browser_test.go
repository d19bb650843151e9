package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/browsertest"
)

// TestDashboardBrowser opens the dashboard of a running server in headless
// Chromium and checks that entries published over MQTT reach the charts
// and the last values live, without a reload. With
// FEEDMQ_DASHBOARD_SCREENSHOT=FILE.png it saves a screenshot of the
// channel page (and FILE-dark.png in the dark scheme).
func TestDashboardBrowser(t *testing.T) {
	chrome := browsertest.Chromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	cfg := httpConfig(t)
	s, err := openServer(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := auth.ChannelSpec{Name: "Greenhouse", Description: "Climate sensors in the north greenhouse.", Public: true}
	copy(spec.Fields[:], []string{"Temperature (°C)", "Humidity (%)", "Soil moisture", "Status"})
	ch, err := s.svc.CreateChannel(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.addr("http").String()

	now := time.Now().UTC()
	old := []time.Time{}
	for i := range 5 {
		old = append(old, now.Add(-72*time.Hour+time.Duration(i)*time.Minute))
	}
	old = append(old, now.Add(-2*time.Hour), now.Add(-2*time.Hour+time.Minute))
	for i, at := range old {
		q := url.Values{"api_key": {ch.WriteKey}, "created_at": {at.Format(time.RFC3339)}, "field1": {fmt.Sprint(10 + i)}}
		if code, body := httpDo(t, http.MethodGet, base+"/update?"+q.Encode(), "", ""); code != 200 || body == "0" {
			t.Fatalf("old entry %d: %d %s", i, code, body)
		}
	}
	// History: 20 entries over the last 20 minutes, through the REST API.
	const history = 20
	start := time.Now().UTC().Add(-history * time.Minute)
	for i := range history {
		at := start.Add(time.Duration(i) * time.Minute)
		q := url.Values{"api_key": {ch.WriteKey}, "created_at": {at.Format(time.RFC3339)},
			"field1": {fmt.Sprintf("%.1f", 21+3*math.Sin(float64(i)/3))},
			"field2": {fmt.Sprintf("%.0f", 55+10*math.Cos(float64(i)/4))},
			"field3": {fmt.Sprintf("%.2f", 0.3+0.01*float64(i))},
			"field4": {"ok"}}
		if code, body := httpDo(t, http.MethodGet, base+"/update?"+q.Encode(), "", ""); code != 200 || body == "0" {
			t.Fatalf("seed entry %d: %d %s", i, code, body)
		}
	}

	bctx, cancelBrowser := browsertest.New(ctx, t, chrome, 1280, 900)
	defer cancelBrowser()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	attr := func(sel, name string) string {
		t.Helper()
		return browserValue(t, bctx, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
	}
	text := func(sel string) string {
		t.Helper()
		return browserValue(t, bctx, chromedp.Text(chromedp.CSS(sel)))
	}

	// The channel list shows the public channel.
	do("channel list", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`a[data-channel="1"]`)))
	if name := text(`a[data-channel="1"] h2`); name != "Greenhouse" {
		t.Errorf("listed %q", name)
	}

	// The channel page loads the history and goes live.
	field := func(n int) string { return fmt.Sprintf(`section[data-field="%d"]`, n) }
	do("channel page",
		chromedp.Click(chromedp.CSS(`a[data-channel="1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)),
		chromedp.Evaluate[chromedp.Void](`window.liveMarker = "same page"`),
	)
	if points := attr(field(1), "data-points"); points != fmt.Sprint(history+len(old)) {
		t.Errorf("history points %s, want %d", points, history+len(old))
	}

	// Three entries over MQTT, with the write key in the topic.
	o := paho.NewClientOptions().AddBroker("tcp://" + s.addr("mqtt").String()).SetClientID("dashboard-e2e").
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second)
	pub := paho.NewClient(o)
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	values := []string{"24.5", "25.25", "26"}
	for i, v := range values {
		payload := "field1=" + v + "&field2=" + fmt.Sprint(60+i) + "&field4=ok"
		if i == 1 {
			// Status and location show in their cards; a later entry
			// without them does not blank them.
			payload += "&status=door+%3Cb%3Eopen%3C%2Fb%3E&lat=52.5163&long=13.3777&elevation=34"
		}
		if tok := pub.Publish(fmt.Sprintf("channels/%d/publish/%s", ch.ID, ch.WriteKey), 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}

	// The page updates without a reload: same window, more points, new
	// last values.
	want := fmt.Sprint(history + len(old) + len(values))
	do("live update", chromedp.Poll[chromedp.Void](
		`document.querySelector('section[data-field="1"]').dataset.points === "`+want+`" && document.querySelector('section[data-field="1"]').dataset.last === "26"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	points, last, count := attr(field(1), "data-points"), attr(field(1), "data-last"), text(`#entry-count`)
	marker := browserValue(t, bctx, chromedp.Evaluate[string](`window.liveMarker`))
	received := browserValue(t, bctx, chromedp.Evaluate[int](`window.feedmq.received`))
	if points != want || last != "26" || count != want || marker != "same page" || received != len(values) {
		t.Errorf("after MQTT: points %s last %s count %s marker %q received %d; want %s 26 %s", points, last, count, marker, received, want, want)
	}
	if l2, l4, shown := attr(field(2), "data-last"), attr(field(4), "data-last"), text(field(1)+" .last"); l2 != "62" || l4 != "ok" || shown != "26" {
		t.Errorf("last values: field2 %q field4 %q shown %q", l2, l4, shown)
	}
	if st, loc := text(`#last-status`), text(`#location`); st != "door <b>open</b>" || loc != "52.5163, 13.3777 · 34 m" {
		t.Errorf("status card %q, location card %q", st, loc)
	}
	if cells := browserValue(t, bctx, chromedp.Evaluate[int](`[...document.querySelectorAll('table.recent td.status')].filter(td => td.textContent === "door <b>open</b>").length`)); cells != 1 {
		t.Errorf("%d status cells show the status, want 1", cells)
	}
	if bold := browserValue(t, bctx, chromedp.Evaluate[int](`document.querySelectorAll('#last-status b, table.recent b').length`)); bold != 0 {
		t.Errorf("the status was parsed as HTML (%d <b> elements)", bold)
	}
	if paths := browserValue(t, bctx, chromedp.Evaluate[int](`document.querySelectorAll('section[data-field="1"] svg path.line').length`)); paths != 1 {
		t.Errorf("field1 chart has %d lines", paths)
	}

	// The "CSV, last 100" link downloads the channel's last 100 entries:
	// all of them here, the ones from three days ago too (a read without
	// parameters covers only the last day).
	href := attr(`.downloads a[download="channel-1.csv"]`, "href")
	if code, body := httpDo(t, http.MethodGet, base+href, "", ""); code != 200 || !strings.HasPrefix(body, "created_at,entry_id,field1,field2,field3,field4\n") {
		t.Errorf("CSV %s: %d %.80s", href, code, body)
	} else if _, all := httpDo(t, http.MethodGet, base+"/channels/1/feeds.csv?results=100", "", ""); body != all {
		t.Errorf("CSV %s: %d entries, want the last 100 (%d)", href, strings.Count(body, "\n")-1, strings.Count(all, "\n")-1)
	}

	// A private channel opens with its read key in the URL; the page keeps
	// the key (localStorage), drops it from the address bar, and streams
	// with it.
	priv, err := s.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "Cellar", Fields: [8]string{"Power (W)"}})
	if err != nil {
		t.Fatal(err)
	}
	do("private channel",
		chromedp.Navigate(fmt.Sprintf("%s/channel/%d?api_key=%s", base, priv.ID, priv.ReadKey)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)))
	if loc := browserValue(t, bctx, chromedp.Evaluate[string](`location.pathname + location.search`)); loc != fmt.Sprintf("/channel/%d", priv.ID) {
		t.Errorf("address bar %q still has the key", loc)
	}
	if href := attr(`.downloads a[href*="/feeds.csv"]`, "href"); !strings.Contains(href, "api_key="+priv.ReadKey) {
		t.Errorf("private CSV link %q has no key", href)
	}
	if code, _ := httpDo(t, http.MethodGet, base+"/update?api_key="+priv.WriteKey+"&field1=1500", "", ""); code != 200 {
		t.Fatalf("private write: %d", code)
	}
	do("private live update", chromedp.Poll[chromedp.Void](`document.querySelector('section[data-field="1"]').dataset.last === "1500"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	// Back on the list, the stored key shows the private channel.
	do("list with key", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`a[data-channel="%d"]`, priv.ID))))
	do("back to the public channel", chromedp.Navigate(base+"/channel/1"),
		chromedp.Poll[chromedp.Void](`document.querySelector('section[data-field="1"]') && document.querySelector('section[data-field="1"]').dataset.points === "`+want+`"`,
			chromedp.WithPollingTimeout(10*time.Second)))

	// Series colours are not the error colour, and a text value is drawn
	// neutral, in the page's text colour.
	if same := browserValue(t, bctx, chromedp.Evaluate[bool](`(function () {
		var bad = getComputedStyle(document.documentElement).getPropertyValue('--bad').trim();
		for (var n = 1; n <= 8; n++) if (getComputedStyle(document.documentElement).getPropertyValue('--c' + n).trim() === bad) return true;
		return false; })()`)); same {
		t.Error("a series colour is the error colour")
	}
	if neutral := browserValue(t, bctx, chromedp.Evaluate[bool](`(function () {
		var v = document.querySelector('section[data-field="4"] .last');
		return v.classList.contains('text') && getComputedStyle(v).color === getComputedStyle(document.body).color; })()`)); !neutral {
		t.Error("the text value of field4 is not drawn in the neutral text colour")
	}

	// The time-range picker: older entries, then last hour, last week
	// (averaged) and a custom range each redraw the charts, and the CSV
	// link carries the range.
	// The time-range picker: last hour, last week (averaged) and a custom
	// range each redraw the charts, and the CSV link carries the range.
	all := history + len(old) + len(values)
	if lbl := browserValue(t, bctx, chromedp.Evaluate[string](`document.querySelector('label[for="range"]').textContent`)); lbl != "Time range" {
		t.Errorf("range picker label %q", lbl)
	}
	pick := func(what, js string, id string) {
		t.Helper()
		do(what, chromedp.Evaluate[chromedp.Void](js), chromedp.Poll[chromedp.Void](
			`window.feedmq.range.id === "`+id+`" && (window.feedmq.range.id === "latest" || /^\d+ (entries|averages)/.test(document.getElementById('range-note').textContent))`,
			chromedp.WithPollingTimeout(10*time.Second)))
	}
	choose := func(v string) string {
		return `(function () { var s = document.getElementById('range'); s.focus(); s.value = '` + v + `'; s.dispatchEvent(new Event('change')); })()`
	}
	csvRange := func() (time.Duration, url.Values) {
		t.Helper()
		href := attr(`#range-csv`, "href")
		u, err := url.Parse(href)
		if err != nil || !strings.HasSuffix(u.Path, "/feeds.csv") {
			t.Fatalf("range CSV link %q", href)
		}
		start, err1 := time.Parse(time.RFC3339, u.Query().Get("start"))
		end, err2 := time.Parse(time.RFC3339, u.Query().Get("end"))
		if err1 != nil || err2 != nil {
			t.Fatalf("range CSV link %q: %v %v", href, err1, err2)
		}
		return end.Sub(start), u.Query()
	}
	csvRows := func() int {
		t.Helper()
		code, body := httpDo(t, http.MethodGet, base+attr(`#range-csv`, "href"), "", "")
		if code != 200 || !strings.HasPrefix(body, "created_at,entry_id,") {
			t.Fatalf("range CSV: %d %.80s", code, body)
		}
		return strings.Count(body, "\n") - 1
	}

	pick("last hour", choose("hour"), "hour")
	if p := attr(field(1), "data-points"); p != fmt.Sprint(history+len(values)) {
		t.Errorf("last hour draws %s points, want %d", p, history+len(values))
	}
	if span, q := csvRange(); span != time.Hour || q.Has("average") {
		t.Errorf("last hour CSV: span %v, %v", span, q)
	}
	if n := csvRows(); n != history+len(values) {
		t.Errorf("last hour CSV has %d rows", n)
	}
	pick("last week", choose("week"), "week")
	if avg := browserValue(t, bctx, chromedp.Evaluate[int](`window.feedmq.range.average`)); avg != 60 {
		t.Errorf("last week averages %d minutes, want 60", avg)
	}
	// Hourly averages: the entries 3 days ago, 2 hours ago and in the last
	// 20 minutes fall in 3 to 6 buckets.
	if p := attr(field(1), "data-points"); p < "3" || len(p) != 1 || p > "6" {
		t.Errorf("last week draws %s points", p)
	}
	if span, _ := csvRange(); span != 7*24*time.Hour {
		t.Errorf("last week CSV spans %v", span)
	}
	if n := csvRows(); n != all {
		t.Errorf("last week CSV has %d rows, want %d", n, all)
	}
	// Custom: the hour around the entries 3 days ago, typed into the inputs.
	pick("custom range", choose("custom")+`;(function () {
		function p(n) { return n < 10 ? '0' + n : '' + n; }
		function v(t) { var d = new Date(t); return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()); }
		var t0 = `+fmt.Sprint(old[0].UnixMilli())+`;
		document.getElementById('range-start').value = v(t0 - 1800000);
		document.getElementById('range-end').value = v(t0 + 1800000);
		document.querySelector('#range-form button[type=submit]').click(); })()`, "custom")
	if p := attr(field(1), "data-points"); p != "5" {
		t.Errorf("custom range draws %s points, want 5", p)
	}
	if n := csvRows(); n != 5 {
		t.Errorf("custom range CSV has %d rows, want 5", n)
	}
	pick("back to live", choose("latest"), "latest")
	do("live again", chromedp.Poll[chromedp.Void](`document.querySelector('section[data-field="1"]').dataset.points === "`+fmt.Sprint(all)+`"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	// The picker works from the keyboard: focus it, then an arrow key.
	do("range by keyboard", chromedp.Focus(chromedp.CSS(`#range`)), chromedp.KeyEvent(kb.ArrowDown),
		chromedp.Poll[chromedp.Void](`window.feedmq.range.id === "hour" && /^\d+ entries/.test(document.getElementById('range-note').textContent)`,
			chromedp.WithPollingTimeout(10*time.Second)))
	if p := attr(field(1), "data-points"); p != fmt.Sprint(history+len(values)) {
		t.Errorf("last hour by keyboard draws %s points", p)
	}
	pick("live once more", choose("latest"), "latest")

	// ENTRIES counts what the feed holds: after retention kept 5 of 35 it
	// says 5 (the last entry_id stays 35), as does the channel list; after
	// a clear and one write, 1.
	meter, err := s.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "Meter", Public: true, Fields: [8]string{"Power (W)"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 35 {
		if code, body := httpDo(t, http.MethodGet, base+"/update?api_key="+meter.WriteKey+"&field1="+fmt.Sprint(100+i), "", ""); code != 200 || body == "0" {
			t.Fatalf("meter entry %d: %d %s", i, code, body)
		}
	}
	five := uint64(5)
	if _, err := s.svc.UpdateChannel(ctx, meter.ID, auth.ChannelUpdate{MaxEntries: &five}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Prune(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	do("list after retention", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`a[data-channel="%d"]`, meter.ID))))
	if m := text(fmt.Sprintf(`a[data-channel="%d"] .meta`, meter.ID)); !strings.Contains(m, "5 entries") {
		t.Errorf("channel card after retention: %q", m)
	}
	do("meter page", chromedp.Navigate(fmt.Sprintf("%s/channel/%d", base, meter.ID)), chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)))
	if c := text(`#entry-count`); c != "5" {
		t.Errorf("ENTRIES after retention shows %s, want 5 (last entry_id 35)", c)
	}
	if err := s.svc.ClearChannel(ctx, meter.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := httpDo(t, http.MethodGet, base+"/update?api_key="+meter.WriteKey+"&field1=7", "", ""); code != 200 {
		t.Fatalf("write after clear: %d", code)
	}
	do("count after clear", chromedp.Poll[chromedp.Void](`document.getElementById('entry-count').dataset.count === "1"`,
		chromedp.WithPollingTimeout(10*time.Second)))

	// At 390 px the page fits and the entries table shows every column.
	do("phone width", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: 390, Height: 844, DeviceScaleFactor: 1, Mobile: true})
		return err
	}), chromedp.Navigate(base+"/channel/1"), chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('table.recent tbody tr').length > 0`, chromedp.WithPollingTimeout(10*time.Second)))
	if w := browserValue(t, bctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("page is %d px wide at 390 px", w)
	}
	if right := browserValue(t, bctx, chromedp.Evaluate[float64](`(function () {
		var tds = document.querySelectorAll('table.recent tbody tr:first-child td');
		return tds[tds.length - 1].getBoundingClientRect().right; })()`)); right > 390 || right <= 0 {
		t.Errorf("the last column ends at %.0f px, outside the 390 px screen", right)
	}
	do("desktop width", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
		return err
	}))

	if path := os.Getenv("FEEDMQ_DASHBOARD_SCREENSHOT"); path != "" {
		do("settle", chromedp.Sleep(1300*time.Millisecond))
		if err := os.WriteFile(path, browserValue(t, bctx, chromedp.FullScreenshot(100)), 0o644); err != nil {
			t.Fatal(err)
		}
		dark := strings.TrimSuffix(path, ".png") + "-dark.png"
		do("dark scheme", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
			return err
		}), chromedp.Sleep(200*time.Millisecond))
		if err := os.WriteFile(dark, browserValue(t, bctx, chromedp.FullScreenshot(100)), 0o644); err != nil {
			t.Fatal(err)
		}
		mobile := strings.TrimSuffix(path, ".png") + "-mobile.png"
		do("mobile viewport", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
				Width: 390, Height: 844, DeviceScaleFactor: 1, Mobile: true})
			return err
		}), chromedp.Sleep(300*time.Millisecond))
		if err := os.WriteFile(mobile, browserValue(t, bctx, chromedp.FullScreenshot(100)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshots: %s %s %s", path, dark, mobile)
	}
}

// browserValue runs one chromedp action and returns its value.
func browserValue[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
