package e2e

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/internal/browsertest"
)

// TestConsoleRulesBrowser types a device's access rules into the console
// of a real `feedmq serve` in headless Chromium: they are stored (the
// CLI reads them back through the socket), the edit page shows them, a
// reserved pattern is refused on the page with its line and changes
// nothing, and the box has a label and fits a 390 px screen.
func TestConsoleRulesBrowser(t *testing.T) {
	chrome := browsertest.Chromium(t)
	data := t.TempDir()
	srv := startServeWith(t, raceBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "info")
	base := "http://" + srv.addrs["http"]
	if !srv.logs.waitFor("/console/setup?token=", 10*time.Second) {
		t.Fatalf("no setup link in the log:\n%s", srv.logs.String())
	}
	link := setupLinkRE.FindString(srv.logs.String())

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	bctx, cancelBrowser := browsertest.New(ctx, t, chrome, 1280, 900)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatal(err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 15*time.Second)
		t.Cleanup(cancel)
		if err := chromedp.Do(sctx, steps...); err != nil {
			dctx, cancel := context.WithTimeout(bctx, 2*time.Second)
			defer cancel()
			page, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v\npage: %s\nserver log:\n%s", what, err, page, srv.logs.String())
		}
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	rulesOf := func() []string {
		t.Helper()
		var d struct {
			Rules []string `json:"rules"`
		}
		cli(t, data, &d, "device", "show", "1", "--json")
		return d.Rules
	}

	const password = "a long owner password"
	do("setup", chromedp.Navigate(base+link), chromedp.WaitVisible(chromedp.CSS(`#confirm`)),
		chromedp.SendKeys(chromedp.CSS(`#password`), password), chromedp.SendKeys(chromedp.CSS(`#confirm`), password),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/console/channels/new"]`)))
	do("channel", chromedp.Navigate(base+"/console/channels/new"), chromedp.WaitVisible(chromedp.CSS(`#field8`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "Greenhouse"),
		chromedp.Click(chromedp.CSS(`form.panel button.primary`)), chromedp.WaitVisible(chromedp.CSS(`#read-key`)))

	// Rules typed before "Add Channel" survive it, and are saved.
	do("new device", chromedp.Navigate(base+"/console/devices/new"), chromedp.WaitVisible(chromedp.CSS(`#rules`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "Home Assistant"),
		chromedp.SendKeys(chromedp.CSS(`#rules`), "readwrite homeassistant/#\ndeny homeassistant/secret/#\n"),
		chromedp.SetValue(chromedp.CSS(`#add_channel`), "1"),
		chromedp.Click(chromedp.CSS(`button[value=add]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-grant="1"]`)))
	if bad := eval(`[...document.querySelectorAll('textarea')].filter(e => !e.labels || !e.labels.length || !e.labels[0].textContent.trim()).map(e => e.name).join(',')`); bad != "" {
		t.Errorf("textareas without a label: %s", bad)
	}
	do("narrow", chromedp.EmulateViewport(390, 844))
	if w := eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("the device form is %s px wide in a 390 px viewport", w)
	}
	if dir := os.Getenv("FEEDMQ_SCREENSHOTS"); dir != "" {
		shot(t, bctx, filepath.Join(dir, "console-device-rules-390.png"))
	}
	do("wide", chromedp.EmulateViewport(1280, 900))
	do("add device", chromedp.Click(chromedp.CSS(`button[value=save]`)), chromedp.WaitVisible(chromedp.CSS(`#password`)))
	if got, want := rulesOf(), []string{"readwrite homeassistant/#", "deny homeassistant/secret/#"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("stored rules %q, want %q", got, want)
	}

	// The edit page shows them; a reserved pattern is refused on the page.
	do("edit", chromedp.Navigate(base+"/console/devices/1"), chromedp.WaitVisible(chromedp.CSS(`#rules`)))
	if box := eval(`document.querySelector('#rules').value`); box != "readwrite homeassistant/#\ndeny homeassistant/secret/#" {
		t.Fatalf("edit box %q", box)
	}
	do("reserved", chromedp.SetValue(chromedp.CSS(`#rules`), "readwrite homeassistant/#\ndeny homeassistant/secret/#\nread channels/1/subscribe"),
		chromedp.Click(chromedp.CSS(`button[value=save]`)), chromedp.WaitVisible(chromedp.CSS(`.notice.error`)))
	if msg := eval(`document.querySelector('.notice.error').textContent`); !strings.Contains(msg, "line 3") || !strings.Contains(msg, "channel grants") {
		t.Errorf("refusal %q", msg)
	}
	if got := rulesOf(); len(got) != 2 {
		t.Fatalf("a refused edit changed the rules: %q", got)
	}
	do("fix", chromedp.SetValue(chromedp.CSS(`#rules`), "read homeassistant/#"),
		chromedp.Click(chromedp.CSS(`button[value=save]`)), chromedp.WaitVisible(chromedp.CSS(`#devices`)))
	if got := rulesOf(); !reflect.DeepEqual(got, []string{"read homeassistant/#"}) {
		t.Fatalf("after the edit: %q", got)
	}
}
