package httpd_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

const ownerPassword = "correct horse battery"

// TestConsoleSetup: the setup link sets the password once and signs the
// owner in with a cookie that only this site's pages can use.
func TestConsoleSetup(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.browser()
	if p := b.get("/console/signin"); !strings.Contains(p.body, "No password is set yet") {
		t.Errorf("sign-in page before setup:\n%s", p.body)
	}
	p := b.get("/console/setup?token=" + setupToken)
	if p.status != 200 || !strings.Contains(p.body, `<label for="password">Password</label>`) || !strings.Contains(p.body, `<label for="confirm">Confirm password</label>`) {
		t.Fatalf("setup form: %d\n%s", p.status, p.body)
	}
	if p := b.get("/console/setup"); p.status != http.StatusForbidden {
		t.Errorf("setup without token: %d", p.status)
	}
	if p := b.post("/console/setup", url.Values{"token": {"wrong"}, "password": {ownerPassword}, "confirm": {ownerPassword}}); p.status != http.StatusForbidden || !strings.Contains(p.body, "Setup link not valid") {
		t.Errorf("wrong token: %d\n%s", p.status, p.body)
	}
	if p := b.post("/console/setup", url.Values{"token": {setupToken}, "password": {ownerPassword}, "confirm": {"other"}}); p.status != http.StatusBadRequest || !strings.Contains(p.body, "differ") {
		t.Errorf("mismatch: %d\n%s", p.status, p.body)
	}
	if p := b.post("/console/setup", url.Values{"token": {setupToken}, "password": {"short"}, "confirm": {"short"}}); p.status != http.StatusBadRequest || !strings.Contains(p.body, "at least 8") {
		t.Errorf("weak password: %d\n%s", p.status, p.body)
	}
	if b.cookie() != nil {
		t.Fatal("a cookie before the password was set")
	}
	p = b.post("/console/setup", url.Values{"token": {setupToken}, "password": {ownerPassword}, "confirm": {ownerPassword}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("setup: %d\n%s", p.status, p.body)
	}
	checkCookie(t, p.resp, false)
	b.signedIn()
	// The link is spent: shown as such, and refused when posted again.
	other := e.browser()
	if p := other.get("/console/setup?token=" + setupToken); p.status != http.StatusForbidden {
		t.Errorf("spent link GET: %d", p.status)
	}
	if p := other.post("/console/setup", url.Values{"token": {setupToken}, "password": {"another password"}, "confirm": {"another password"}}); p.status != http.StatusForbidden {
		t.Errorf("spent link POST: %d", p.status)
	}
	if other.cookie() != nil {
		t.Error("spent link signed in")
	}
	e.signIn(ownerPassword)
}

// checkCookie checks the session cookie's flags in resp.
func checkCookie(t *testing.T, resp *http.Response, secure bool) {
	t.Helper()
	// Over TLS the name has the __Host- prefix: host-only, Secure, path /.
	name := "feedmq_session"
	if secure {
		name = "__Host-feedmq_session"
	}
	var found *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == name {
			found = c
		}
	}
	if found == nil {
		t.Fatalf("no session cookie in %v", resp.Header["Set-Cookie"])
	}
	if !found.HttpOnly || found.SameSite != http.SameSiteStrictMode || found.Path != "/" || found.Secure != secure || len(found.Value) < 40 {
		t.Errorf("cookie %q: want HttpOnly, SameSite=Strict, Path=/, Secure=%v, a long value", resp.Header["Set-Cookie"], secure)
	}
	if found.MaxAge <= 0 {
		t.Errorf("cookie without Max-Age: %q", resp.Header["Set-Cookie"])
	}
}

// TestConsoleCookieSecureOverTLS: over https the cookie is Secure.
func TestConsoleCookieSecureOverTLS(t *testing.T) {
	e := newConsoleEnv(t, true, nil)
	e.setup(ownerPassword)
	b := e.browser()
	p := b.post("/console/signin", url.Values{"password": {ownerPassword}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", p.status)
	}
	checkCookie(t, p.resp, true)
	b.signedIn()
}

// TestConsoleSignIn: a wrong password is refused; sign-out ends the
// session on the server, not only in the browser.
func TestConsoleSignIn(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	e.setup(ownerPassword)
	b := e.browser()
	if p := b.get("/console/channels"); p.status != http.StatusSeeOther || p.resp.Header.Get("Location") != "/console/signin" {
		t.Errorf("signed out: %d %s", p.status, p.resp.Header.Get("Location"))
	}
	if p := b.get("/console/signin"); p.status != 200 || !strings.Contains(p.body, `<label for="password">Owner password</label>`) {
		t.Errorf("sign-in page: %d\n%s", p.status, p.body)
	}
	if p := b.post("/console/signin", url.Values{"password": {"wrong password"}}); p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Wrong password") {
		t.Errorf("wrong password: %d\n%s", p.status, p.body)
	}
	b = e.signIn(ownerPassword)
	old := b.cookie().Value
	if p := b.post("/console/signout", nil); p.status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.status)
	}
	// The old cookie, replayed, no longer works.
	replay := e.browser()
	u, _ := url.Parse(e.srv.URL)
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: "feedmq_session", Value: old, Path: "/"}})
	if p := replay.get("/console/channels"); p.status != http.StatusSeeOther {
		t.Errorf("replayed cookie after sign-out: %d", p.status)
	}
	if p := replay.post("/console/channels/new", url.Values{"name": {"x"}, "field1": {"a"}}); p.status != http.StatusForbidden {
		t.Errorf("POST with an ended session: %d", p.status)
	}
	if n := len(e.svcChannels()); n != 0 {
		t.Errorf("%d channels", n)
	}
}

// TestConsoleCSRF: every POST needs the session's token and a same-origin
// request; anything else is refused with 403 and changes nothing.
func TestConsoleCSRF(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	form := func() url.Values { return url.Values{"name": {"Garden"}, "field1": {"Temperature"}} }
	cases := []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"missing token", form(), nil},
		{"wrong token", form(), nil},
		{"other origin", form(), []string{"Origin", "http://evil.example"}},
		{"null origin", form(), []string{"Origin", "null"}},
		{"cross-site fetch", form(), []string{"Sec-Fetch-Site", "cross-site"}},
	}
	cases[0].form.Set("csrf", "")
	cases[1].form.Set("csrf", strings.Repeat("A", 43))
	for _, c := range cases {
		p := b.post("/console/channels/new", c.form, c.hdr...)
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "Refused") {
			t.Errorf("%s: %d\n%s", c.name, p.status, p.body)
		}
	}
	if got := e.console.Refusals().Snapshot()["console_csrf"]; got != uint64(len(cases)) {
		t.Errorf("console_csrf refusals = %d, want %d", got, len(cases))
	}
	if n := len(e.svcChannels()); n != 0 {
		t.Fatalf("refused forms created %d channels", n)
	}
	// Without Origin and Sec-Fetch-Site (an old browser) the token decides.
	if p := b.post("/console/channels/new", form(), "Origin", "", "Sec-Fetch-Site", ""); p.status != http.StatusSeeOther {
		t.Errorf("valid token: %d\n%s", p.status, p.body)
	}
	// The sign-in form has no session yet: the origin check guards it.
	if p := e.browser().post("/console/signin", url.Values{"password": {ownerPassword}}, "Origin", "http://evil.example"); p.status != http.StatusForbidden {
		t.Errorf("cross-origin sign-in: %d", p.status)
	}
	// Another browser's session token does not pass.
	b2 := e.signIn(ownerPassword)
	if p := b2.post("/console/channels/new", url.Values{"csrf": {b.csrf}, "name": {"Other"}, "field1": {"a"}}); p.status != http.StatusForbidden {
		t.Errorf("another session's token: %d", p.status)
	}
}

// TestConsoleSignInThrottle: after too many wrong passwords from one
// address, even the right one is refused for a while (429).
func TestConsoleSignInThrottle(t *testing.T) {
	e := newConsoleEnv(t, false, nil) // auth's default: 5 failures
	e.setup(ownerPassword)
	b := e.browser()
	for i := range 5 {
		if p := b.post("/console/signin", url.Values{"password": {"guess"}}); p.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, p.status)
		}
	}
	p := b.post("/console/signin", url.Values{"password": {ownerPassword}})
	if p.status != http.StatusTooManyRequests || p.resp.Header.Get("Retry-After") == "" || !strings.Contains(p.body, "Too many attempts") {
		t.Fatalf("throttled: %d %q\n%s", p.status, p.resp.Header.Get("Retry-After"), p.body)
	}
	if b.cookie() != nil {
		t.Error("signed in while throttled")
	}
	if r := e.console.Refusals().Snapshot(); r["console_sign_in_failed"] != 5 || r["console_sign_in_throttled"] != 1 {
		f, th := r["console_sign_in_failed"], r["console_sign_in_throttled"]
		t.Errorf("counters: failures %d throttled %d", f, th)
	}
	if n := strings.Count(e.logs.String(), "console: sign-in failed"); n != 5 {
		t.Errorf("%d log lines for 5 failures", n)
	}
	// Setup tokens count too.
	if p := b.post("/console/setup", url.Values{"token": {"guess"}, "password": {ownerPassword}, "confirm": {ownerPassword}}); p.status != http.StatusTooManyRequests {
		t.Errorf("setup while throttled: %d", p.status)
	}
}

// TestConsoleSessionExpiry: sessions end when idle, at their absolute
// age, and when the password changes (here or elsewhere).
func TestConsoleSessionExpiry(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	e.clock.add(11 * time.Hour)
	b.signedIn() // used within 12 h: still on
	e.clock.add(12*time.Hour + time.Second)
	if p := b.get("/console/channels"); p.status != http.StatusSeeOther {
		t.Errorf("idle 12 h: %d", p.status)
	}

	b = e.signIn(ownerPassword)
	for range 15 {
		e.clock.add(11 * time.Hour) // never idle for 12 h
		b.signedIn()
	}
	e.clock.add(3 * time.Hour) // 7 days after sign-in
	if p := b.get("/console/channels"); p.status != http.StatusSeeOther {
		t.Errorf("7 days old: %d", p.status)
	}

	// The password changes elsewhere (the CLI): every session ends.
	b = e.signIn(ownerPassword)
	e.clock.add(time.Second)
	e.admin.SetPassword(t.Context(), "a new password")
	if p := b.get("/console/channels"); p.status != http.StatusSeeOther {
		t.Errorf("after the password changed: %d", p.status)
	}

	// Changed in the console: other sessions end, this one goes on.
	e.clock.add(time.Second)
	b1, b2 := e.signIn("a new password"), e.signIn("a new password")
	e.clock.add(time.Second)
	if p := b1.get("/console/password"); p.status != 200 || !strings.Contains(p.body, `<label for="current">Current password</label>`) {
		t.Fatalf("password page: %d", p.status)
	}
	if p := b1.post("/console/password", url.Values{"current": {"wrong"}, "password": {"third password"}, "confirm": {"third password"}}); p.status != http.StatusUnauthorized {
		t.Errorf("wrong current password: %d", p.status)
	}
	if p := b1.post("/console/password", url.Values{"current": {"a new password"}, "password": {"third password"}, "confirm": {"third passwort"}}); p.status != http.StatusBadRequest {
		t.Errorf("confirmation differs: %d", p.status)
	}
	if p := b1.post("/console/password", url.Values{"current": {"a new password"}, "password": {"third password"}, "confirm": {"third password"}}); p.status != http.StatusSeeOther {
		t.Fatalf("change: %d\n%s", p.status, p.body)
	}
	b1.signedIn()
	if p := b2.get("/console/channels"); p.status != http.StatusSeeOther {
		t.Errorf("other session after the change: %d", p.status)
	}
	if err := e.admin.VerifyPassword(t.Context(), "third password"); err != nil {
		t.Error(err)
	}
}

// TestConsoleSessionLimit: past MaxSessions the least recently used
// session ends, so sign-ins cannot fill memory.
func TestConsoleSessionLimit(t *testing.T) {
	e := newConsoleEnv(t, false, func(o *httpd.ConsoleOptions) { o.MaxSessions = 2 })
	b1 := e.setup(ownerPassword)
	e.clock.add(time.Second)
	b2 := e.signIn(ownerPassword)
	e.clock.add(time.Second)
	b3 := e.signIn(ownerPassword)
	if p := b1.get("/console/channels"); p.status != http.StatusSeeOther {
		t.Errorf("oldest session: %d", p.status)
	}
	b2.signedIn()
	b3.signedIn()
}

// TestConsoleBadRequests: unknown pages and IDs are 404; oversized and
// malformed forms are refused before they are used.
func TestConsoleBadRequests(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	for _, path := range []string{"/console/nope", "/console/channels/99", "/console/channels/abc", "/console/channels/0",
		"/console/channels/99/delete", "/console/devices/7", "/console/devices/7/password", "/console/channels/new/x",
		"/console/devices/1/2/3"} {
		if p := b.get(path); p.status != http.StatusNotFound {
			t.Errorf("GET %s: %d", path, p.status)
		}
	}
	big := url.Values{"name": {strings.Repeat("x", 70<<10)}, "field1": {"a"}}
	if p := b.post("/console/channels/new", big); p.status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized form: %d", p.status)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/console/channels/new", strings.NewReader("name=%zz&csrf="+b.csrf))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := b.do(req); p.status != http.StatusBadRequest {
		t.Errorf("malformed form: %d", p.status)
	}
	req, _ = http.NewRequest(http.MethodDelete, e.srv.URL+"/console/channels", nil)
	if p := b.do(req); p.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", p.status)
	}
	if p := b.post("/console/channels/new", url.Values{"name": {"123"}, "field1": {"a"}}); p.status != http.StatusBadRequest || !strings.Contains(p.body, "looks like a channel ID") {
		t.Errorf("numeric name: %d\n%s", p.status, p.body)
	}
	if n := len(e.svcChannels()); n != 0 {
		t.Errorf("%d channels", n)
	}
}

func (e *consoleEnv) svcChannels() []string {
	e.t.Helper()
	list, err := e.svc.ListChannels(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	return names
}

// TestConsoleAdminErrors: the service's failures show its message for
// what the user can act on, and nothing of an internal failure but that
// it happened (the detail goes to the log).
func TestConsoleAdminErrors(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	e.admin.mu.Lock()
	e.admin.listErr = fmt.Errorf("bolt: read /var/lib/feedmq/secret-path: %w", io.ErrUnexpectedEOF)
	e.admin.mu.Unlock()
	p := b.get("/console/channels")
	if p.status != http.StatusInternalServerError || strings.Contains(p.body, "secret-path") || !strings.Contains(p.body, "try again later") {
		t.Errorf("internal error: %d\n%s", p.status, p.body)
	}
	if !strings.Contains(e.logs.String(), "secret-path") {
		t.Error("the detail is not in the log")
	}
	e.admin.mu.Lock()
	e.admin.listErr = channels.Errorf(channels.EINTERNAL, "storage: /var/lib/feedmq/other-path is full")
	e.admin.mu.Unlock()
	if p := b.get("/console/devices/new"); p.status != http.StatusInternalServerError || strings.Contains(p.body, "other-path") {
		t.Errorf("internal application error: %d\n%s", p.status, p.body)
	}
}

// FuzzConsoleForms posts arbitrary forms, with a valid session and token,
// to every console page: each answer is a page (no panic, no 5xx), and a
// channel or device the fuzzer creates is one the service accepted.
func FuzzConsoleForms(f *testing.F) {
	paths := []string{"/console/channels/new", "/console/channels/1", "/console/channels/1/keys", "/console/channels/1/clear",
		"/console/devices/new", "/console/devices/1", "/console/devices/1/password", "/console/password", "/console/setup", "/console/signin"}
	for i := range paths {
		f.Add(uint8(i), "name=Garden&field1=T&public=on&tags=a,b&latitude=1")
		f.Add(uint8(i), "name=d&op=add&add_channel=1&channel=1&publish=1&form_id=0123456789abcdef0")
	}
	f.Add(uint8(4), "op=remove:1&channel=1&channel=%ff&subscribe=2")
	f.Add(uint8(1), "name=x&field1=&field9=a&latitude=NaN&url=javascript:alert(1)")
	f.Add(uint8(4), "name=d&op=save&rules=readwrite+a%2F%23%0D%0Adeny+a%2Fb%0Aread+channels%2F1")
	f.Add(uint8(5), "name=d&op=save&rules=write+%25c%2F%2B%0A%0Awrite+%25c%2F%2B")
	e := newConsoleEnv(f, false, nil)
	b := e.setup(ownerPassword)
	if _, err := e.svc.CreateChannel(f.Context(), auth.ChannelSpec{Name: "Garden", Fields: [8]string{"t"}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		e.t = t // the helpers report to this input's test (inputs run one at a time)
		form.Del("csrf")
		form.Del("confirm") // deleting the fixtures would end the run's use
		p := b.post(paths[int(which)%len(paths)], form)
		if p.status >= 500 {
			t.Fatalf("%s %q: %d\n%s", paths[int(which)%len(paths)], body, p.status, p.body)
		}
	})
}
