package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/internal/browsertest"
)

// TestConsoleLongNamesAt390: a channel name of one long word (names may
// have 255 bytes) leaves every page that shows it 390 px wide; the
// device edit page's "Authorize Channels" table grew to the name's width.
func TestConsoleLongNamesAt390(t *testing.T) {
	chrome := browsertest.Chromium(t)
	srv := startServeWith(t, plainBuild, t.TempDir(), "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "info")
	base := "http://" + srv.addrs["http"]
	if !srv.logs.waitFor("/console/setup?token=", 10*time.Second) {
		t.Fatalf("no setup link in the log:\n%s", srv.logs.String())
	}
	link := setupLinkRE.FindString(srv.logs.String())

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	bctx, cancelBrowser := browsertest.New(ctx, t, chrome, 390, 844)
	defer cancelBrowser()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v\nserver log:\n%s", what, err, srv.logs.String())
		}
	}
	width := func() string {
		t.Helper()
		w, err := chromedp.Run(bctx, chromedp.Evaluate[string](`String(document.documentElement.scrollWidth)`))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	const password = "a long owner password"
	name := strings.Repeat("W", 250)
	do("viewport", chromedp.EmulateViewport(390, 844))
	do("setup", chromedp.Navigate(base+link), chromedp.WaitVisible(chromedp.CSS(`#confirm`)),
		chromedp.SendKeys(chromedp.CSS(`#password`), password), chromedp.SendKeys(chromedp.CSS(`#confirm`), password),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`a[href="/console/channels/new"]`)))
	do("new channel", chromedp.Navigate(base+"/console/channels/new"), chromedp.WaitVisible(chromedp.CSS(`#name`)),
		chromedp.SetValue(chromedp.CSS(`#name`), name), chromedp.Click(chromedp.CSS(`form.panel button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#read-key`)))
	do("new device", chromedp.Navigate(base+"/console/devices/new"), chromedp.WaitVisible(chromedp.CSS(`#add_channel`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "ESP32"), chromedp.SetValue(chromedp.CSS(`#add_channel`), "1"),
		chromedp.Click(chromedp.CSS(`button[value=add]`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-grant="1"]`)),
		chromedp.Click(chromedp.CSS(`button[value=save]`)), chromedp.WaitVisible(chromedp.CSS(`#password`)))
	for _, p := range []string{"/console/channels", "/console/channels/1", "/console/devices", "/console/devices/1"} {
		do(p, chromedp.Navigate(base+p), chromedp.WaitVisible(chromedp.CSS(`footer`)))
		if w := width(); w != "390" {
			t.Errorf("%s: %s px wide in a 390 px viewport", p, w)
		}
	}
}
