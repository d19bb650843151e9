package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/internal/browsertest"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

var setupLinkRE = regexp.MustCompile(`/console/setup\?token=[A-Za-z0-9_~.%-]+`)

// TestConsoleBrowser drives the web console of a real `feedmq serve` in
// headless Chromium, as a new user would: the setup link from the log,
// sign-in, a channel, a device with its credentials read off the page;
// then mosquitto_pub and mosquitto_sub use those credentials, and
// regenerating the password in the console refuses the old one (CONNACK
// 4) and closes the connection that used it. With FEEDMQ_SCREENSHOTS=DIR
// it saves the credentials page, the device list and the channel list
// there (testdata/screenshots/console-*.png), and each checked page at
// 390 px (console-<page>-390.png).
func TestConsoleBrowser(t *testing.T) {
	chrome := browsertest.Chromium(t)
	for _, c := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(c); err != nil {
			if os.Getenv("FEEDMQ_REQUIRE_CLIENTS") != "" {
				t.Fatalf("%s not found", c)
			}
			t.Skipf("%s not installed", c)
		}
	}
	data := t.TempDir()
	// Failed logins are part of the test; the throttle is tested elsewhere.
	cfg := filepath.Join(data, "feedmq.yaml")
	if err := os.WriteFile(cfg, []byte("auth_backoff:\n  after_failures: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServeWith(t, raceBuild, data, "--config", cfg, "--mqtt", "127.0.0.1:0", "--ws", "off",
		"--http", "127.0.0.1:0", "--log-level", "info")
	base := "http://" + srv.addrs["http"]
	if !srv.logs.waitFor("/console/setup?token=", 10*time.Second) {
		t.Fatalf("no setup link in the log:\n%s", srv.logs.String())
	}
	link := setupLinkRE.FindString(srv.logs.String())
	if link == "" {
		t.Fatalf("setup link not found in:\n%s", srv.logs.String())
	}

	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	bctx, cancelBrowser := browsertest.New(ctx, t, chrome, 1280, 900, chromedp.WithErrorf(t.Logf), chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first run starts the browser, which lives as long as its
	// context: bctx, not a step's.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatal(err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		// A step's own deadline leaves time to say where the browser is;
		// canceling it early would close the tab, so it ends with the test.
		sctx, cancel := context.WithTimeout(bctx, 15*time.Second)
		t.Cleanup(cancel)
		if err := chromedp.Do(sctx, steps...); err != nil {
			// Say where the browser is.
			dctx, cancel := context.WithTimeout(bctx, 2*time.Second)
			defer cancel()
			page, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v\npage: %s\nserver log:\n%s", what, err, page, srv.logs.String())
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	// a11y checks the page in view: every form control has a label,
	// every button and link a name, and nothing is wider than 390 px.
	a11y := func(page string) {
		t.Helper()
		if bad := eval(`[...document.querySelectorAll('input:not([type=hidden]),select,textarea')].filter(e => !e.labels || e.labels.length === 0 || !e.labels[0].textContent.trim()).map(e => e.name).join(',')`); bad != "" {
			t.Errorf("%s: controls without a label: %s", page, bad)
		}
		if bad := eval(`[...document.querySelectorAll('button:not([hidden]),a')].filter(e => !(e.getAttribute('aria-label') || e.textContent).trim()).map(e => e.outerHTML).join(',')`); bad != "" {
			t.Errorf("%s: controls without a name: %s", page, bad)
		}
		do(page+" at 390 px", chromedp.EmulateViewport(390, 844))
		if w := eval(`String(document.documentElement.scrollWidth)`); w != "390" {
			wide := eval(`[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391).slice(-3).map(e => e.tagName + '.' + e.className).join(' ')`)
			t.Errorf("%s: %s px wide in a 390 px viewport (%s)", page, w, wide)
		}
		if dir := os.Getenv("FEEDMQ_SCREENSHOTS"); dir != "" {
			shot(t, bctx, filepath.Join(dir, "console-"+strings.ReplaceAll(page, " ", "-")+"-390.png"))
		}
		do(page+" back to 1280 px", chromedp.EmulateViewport(1280, 900))
	}

	// The setup link: choose the password, which signs the owner in.
	const password = "a long owner password"
	do("setup", chromedp.Navigate(base+link), chromedp.WaitVisible(chromedp.CSS(`#confirm`)))
	a11y("setup")
	do("type password", chromedp.SendKeys(chromedp.CSS(`#password`), password))
	do("type confirm", chromedp.SendKeys(chromedp.CSS(`#confirm`), password))
	do("submit", chromedp.Click(chromedp.CSS(`button[type=submit]`)))
	do("settle", chromedp.Sleep(time.Second))
	do("signed in", chromedp.WaitVisible(chromedp.CSS(`a[href="/console/channels/new"]`)))
	// Sign out and in again with it.
	do("sign out", chromedp.Click(chromedp.CSS(`.cnav button`)), chromedp.WaitVisible(chromedp.CSS(`#password`)))
	// With the keyboard only: type, Enter.
	do("sign in",
		chromedp.SendKeys(chromedp.CSS(`#password`), password+"\r"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/console/channels/new"]`)))

	// A channel.
	do("new channel", chromedp.Click(chromedp.CSS(`a[href="/console/channels/new"]`)), chromedp.WaitVisible(chromedp.CSS(`#field8`)))
	a11y("new channel")
	do("create channel",
		chromedp.SendKeys(chromedp.CSS(`#name`), "Greenhouse"),
		chromedp.SendKeys(chromedp.CSS(`#description`), "Climate sensors in the north greenhouse."),
		chromedp.Clear(chromedp.CSS(`#field1`)),
		chromedp.SendKeys(chromedp.CSS(`#field1`), "Temperature"),
		chromedp.SendKeys(chromedp.CSS(`#field2`), "Humidity"),
		chromedp.Click(chromedp.CSS(`form.panel button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#read-key`)))
	a11y("channel settings")
	readKey := text(`#read-key`)
	chID := eval(`location.pathname.split('/').pop()`)

	// "Add a new device": the ThingSpeak flow, one channel, both rights.
	newDevice := func(name string, subscribe bool) (clientID, username, pw string) {
		t.Helper()
		do("devices", chromedp.Navigate(base+"/console/devices"), chromedp.WaitVisible(chromedp.CSS(`a[href="/console/devices/new"]`)))
		do("add a new device", chromedp.Click(chromedp.CSS(`a[href="/console/devices/new"]`)), chromedp.WaitVisible(chromedp.CSS(`#add_channel`)))
		do("authorize channel",
			chromedp.SendKeys(chromedp.CSS(`#name`), name),
			chromedp.SetValue(chromedp.CSS(`#add_channel`), chID),
			chromedp.Click(chromedp.CSS(`button[value=add]`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-grant="`+chID+`"]`)))
		a11y("add device")
		if !subscribe {
			// "Remove" and "Add Channel" again (console.js does both in
			// the page; without it they are form round trips).
			do("remove row",
				chromedp.Click(chromedp.CSS(`button[value="remove:`+chID+`"]`)),
				chromedp.WaitNotPresent(chromedp.CSS(`tr[data-grant="`+chID+`"]`)),
				chromedp.SetValue(chromedp.CSS(`#add_channel`), chID),
				chromedp.Click(chromedp.CSS(`button[value=add]`)),
				chromedp.WaitVisible(chromedp.CSS(`tr[data-grant="`+chID+`"]`)))
			do("no subscribe", chromedp.Click(chromedp.CSS(`tr[data-grant="`+chID+`"] input[name=subscribe]`)))
		}
		do("add device", chromedp.Click(chromedp.CSS(`button[value=save]`)), chromedp.WaitVisible(chromedp.CSS(`#password`)))
		return text(`#client-id`), text(`#username`), text(`#password`)
	}
	clientID, username, devPassword := newDevice("ESP32 greenhouse", true)
	a11y("credentials")
	if href := eval(`document.querySelector('a[download="mqtt_secrets.h"]').getAttribute('href')`); !strings.HasPrefix(href, "data:text/plain") || !strings.Contains(href, devPassword) {
		t.Errorf("Arduino download %q", href)
	}
	if dir := os.Getenv("FEEDMQ_SCREENSHOTS"); dir != "" {
		shot(t, bctx, filepath.Join(dir, "console-credentials.png"))
	}
	do("done", chromedp.Click(chromedp.CSS(`a.btn.primary[href="/console/devices"]`)), chromedp.WaitVisible(chromedp.CSS(`#devices`)))
	a11y("device list")
	// A second device publishes what the first one receives: a device
	// has one client ID, and a second connection with it would take the
	// first one's session over.
	pubID, pubUser, pubPassword := newDevice("Bench publisher", false)

	mqttPort := port(srv.addr)
	mqttArgs := func(id, user, pw string) []string {
		return []string{"-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv311", "-i", id, "-u", user, "-P", pw}
	}
	pub := func(id, user, pw, payload string) (string, error) {
		out, err := exec.Command("mosquitto_pub", append(mqttArgs(id, user, pw), "-t", "channels/"+chID+"/publish", "-m", payload)...).CombinedOutput()
		return string(out), err
	}
	// The device's own credentials publish an entry.
	if out, err := pub(clientID, username, devPassword, "field1=21.5&field2=40"); err != nil {
		t.Fatalf("mosquitto_pub with the console's credentials: %v\n%s", err, out)
	}
	waitEntries(t, base, chID, readKey, 1)

	// Its subscription receives what the other device publishes.
	// stdbuf: mosquitto_sub's debug lines (SUBACK) are not flushed into
	// a pipe otherwise.
	sub := exec.Command("stdbuf", append([]string{"-oL", "mosquitto_sub"}, append(mqttArgs(clientID, username, devPassword), "-d", "-t", "channels/"+chID+"/subscribe")...)...)
	subOut := new(lockedBuffer)
	stdout, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sub.Stderr = subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			subOut.Write([]byte(sc.Text() + "\n"))
		}
		subDone <- sub.Wait()
	}()
	t.Cleanup(func() { sub.Process.Kill() })
	if !subOut.waitFor("received SUBACK", 10*time.Second) {
		t.Fatalf("mosquitto_sub did not subscribe:\n%s", subOut.String())
	}
	if out, err := pub(pubID, pubUser, pubPassword, "field1=22.25"); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	if !subOut.waitFor(`"field1":"22.25"`, 10*time.Second) {
		t.Fatalf("mosquitto_sub did not receive the entry:\n%s", subOut.String())
	}
	waitEntries(t, base, chID, readKey, 2)
	// The console shows the live connection.
	do("devices with activity", chromedp.Navigate(base+"/console/devices"), chromedp.WaitVisible(chromedp.CSS(`#devices`)))
	if conn := text(`tr[data-device="1"] td.conn`); !strings.Contains(conn, "since") || !strings.Contains(conn, "127.0.0.1") {
		t.Errorf("device list, connected now: %q", conn)
	}

	if dir := os.Getenv("FEEDMQ_SCREENSHOTS"); dir != "" {
		shot(t, bctx, filepath.Join(dir, "console-devices.png"))
	}

	// Regenerate the password in the console.
	do("regenerate", chromedp.Click(chromedp.CSS(`a[href="/console/devices/1/password"]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=confirm]`)))
	a11y("confirm")
	do("confirm", chromedp.Click(chromedp.CSS(`input[name=confirm]`)), chromedp.Click(chromedp.CSS(`button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`#password`)))
	newPassword := text(`#password`)
	if newPassword == devPassword || text(`#client-id`) != clientID {
		t.Fatalf("regenerated: client %q, password unchanged: %v", text(`#client-id`), newPassword == devPassword)
	}
	// The live subscription that used the old password is closed: it
	// reconnects with the old password, is refused and exits.
	select {
	case <-subDone:
	case <-time.After(20 * time.Second):
		t.Fatalf("mosquitto_sub with the old password is still connected:\n%s", subOut.String())
	}
	// The old password gets CONNACK 4 (bad user name or password).
	c, err := mqtttest.Dial(srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	code, err := c.Connect(mqtttest.Connect{ClientID: clientID, Username: username, Password: devPassword, Clean: true})
	c.Close()
	if err != nil || code != 0x04 {
		t.Errorf("old password: CONNACK %#x, %v\n%s", code, err, srv.logs.String())
	}
	if out, err := pub(clientID, username, devPassword, "field1=1"); err == nil || !strings.Contains(strings.ToLower(out), "bad user name or password") {
		t.Errorf("mosquitto_pub with the old password: %v %q", err, out)
	}
	if out, err := pub(clientID, username, newPassword, "field1=23"); err != nil {
		t.Errorf("mosquitto_pub with the new password: %v\n%s", err, out)
	}
	waitEntries(t, base, chID, readKey, 3)

	// The owner sees the private channel on the dashboard without a key.
	do("dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`a[data-channel="`+chID+`"]`)))
	do("private channel page", chromedp.Click(chromedp.CSS(`a[data-channel="`+chID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)))

	// A second, public channel, and the list of both.
	do("new public channel", chromedp.Navigate(base+"/console/channels/new"), chromedp.WaitVisible(chromedp.CSS(`#field8`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "Weather station"),
		chromedp.Click(chromedp.CSS(`#public`)),
		chromedp.SendKeys(chromedp.CSS(`#latitude`), "52.52"),
		chromedp.SendKeys(chromedp.CSS(`#longitude`), "13.405"),
		chromedp.Click(chromedp.CSS(`form.panel button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#read-key`)))
	do("channel list", chromedp.Navigate(base+"/console/channels"), chromedp.WaitVisible(chromedp.CSS(`#channels`)))
	if list := text(`#channels`); !strings.Contains(list, "Greenhouse") || !strings.Contains(list, "Weather station") || !strings.Contains(list, "public") {
		t.Errorf("channel list: %q", list)
	}
	a11y("channel list")
	if dir := os.Getenv("FEEDMQ_SCREENSHOTS"); dir != "" {
		shot(t, bctx, filepath.Join(dir, "console-channels.png"))
	}
	if strings.Contains(srv.logs.String(), password) || strings.Contains(srv.logs.String(), newPassword) {
		t.Error("a password is in the server's log")
	}
}

// waitEntries polls the channel's feed until it has n entries.
func waitEntries(t *testing.T, base, ch, key string, n int) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/channels/" + ch + "/feeds.json?api_key=" + key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(b)
		var feed struct {
			Feeds []json.RawMessage `json:"feeds"`
		}
		if json.Unmarshal(b, &feed) == nil && len(feed.Feeds) == n {
			return
		}
	}
	t.Fatalf("feed of channel %s never had %d entries: %s", ch, n, last)
}

// shot saves a full-page screenshot.
func shot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(path, png, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}
