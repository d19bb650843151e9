package httpd_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// fakeAdmin is the real admin service over a bbolt file for channels and
// devices, with the owner account on the test's clock (sessions are
// checked against when the password changed) and device activity set by
// the test.
type fakeAdmin struct {
	*admin.Local
	mu        sync.Mutex
	password  string
	changedAt *time.Time
	token     string
	activity  map[uint64]auth.Activity
	listErr   error // when set, ListChannels fails with it
	now       func() time.Time
}

func (f *fakeAdmin) Account(ctx context.Context) (*auth.AccountInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &auth.AccountInfo{UserAPIKey: "ABCDEFGHIJKLMNOP", PasswordSet: f.password != "", PasswordChangedAt: f.changedAt}, nil
}

func (f *fakeAdmin) setPassword(pw string) error {
	if len(pw) < 8 {
		return channels.Errorf(channels.EINVALID, "the password needs at least 8 characters")
	}
	now := f.now()
	f.password, f.changedAt = pw, &now
	return nil
}

func (f *fakeAdmin) SetPassword(ctx context.Context, pw string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setPassword(pw)
}

func (f *fakeAdmin) VerifyPassword(ctx context.Context, pw string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.password == "" || pw != f.password {
		return channels.Errorf(channels.EFORBIDDEN, "wrong password")
	}
	return nil
}

func (f *fakeAdmin) RedeemSetupToken(ctx context.Context, token, pw string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token == "" || token != f.token {
		return channels.Errorf(channels.EFORBIDDEN, "setup token not valid")
	}
	if err := f.setPassword(pw); err != nil {
		return err
	}
	f.token = ""
	return nil
}

func (f *fakeAdmin) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	f.mu.Lock()
	err := f.listErr
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.Local.ListChannels(ctx)
}

func (f *fakeAdmin) DeviceActivity(ctx context.Context) (map[uint64]auth.Activity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.activity, nil
}

// clock is a settable time for session expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// consoleEnv is a console on a test server with its fake admin.
type consoleEnv struct {
	t       testing.TB
	admin   *fakeAdmin
	svc     *admin.Local
	console *httpd.Console
	srv     *httptest.Server
	db      testStore
	clock   *clock
	logs    *syncBuffer
}

const setupToken = "setup-token-0123456789abcdef"

func newConsoleEnv(t testing.TB, tlsServer bool, set func(*httpd.ConsoleOptions)) *consoleEnv {
	t.Helper()
	db := openStore(t, nil)
	svc, err := admin.NewLocal(t.Context(), db, auth.Limits{MaxDevices: 3, MaxChannelsPerDevice: 2})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	fa := &fakeAdmin{Local: svc, token: setupToken, now: clk.now}
	logs := &syncBuffer{}
	opts := httpd.ConsoleOptions{
		Admin: fa, Feeds: db, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxDevices: 3, MaxChannelsPerDevice: 2, Now: clk.now,
	}
	if set != nil {
		set(&opts)
	}
	e := &consoleEnv{t: t, admin: fa, svc: svc, db: db, clock: clk, logs: logs}
	e.console = httpd.NewConsole(opts)
	mux := http.NewServeMux()
	mux.Handle("/console", e.console)
	mux.Handle("/console/", e.console)
	if tlsServer {
		e.srv = httptest.NewTLSServer(mux)
	} else {
		e.srv = httptest.NewServer(mux)
	}
	t.Cleanup(e.srv.Close)
	return e
}

// browser is one cookie jar on the console; it does not follow redirects.
type browser struct {
	e    *consoleEnv
	c    *http.Client
	csrf string // from the last page that had a form
}

func (e *consoleEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := e.srv.Client()
	cc := *c
	cc.Jar = jar
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, c: &cc}
}

type page struct {
	status int
	body   string
	resp   *http.Response
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) page {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if m := csrfRE.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return page{resp.StatusCode, string(body), resp}
}

func (b *browser) get(path string) page {
	b.e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.e.srv.URL+path, nil)
	return b.do(req)
}

// post sends a form with the session's CSRF token (unless the form has a
// csrf value already) and Origin as a browser would.
func (b *browser) post(path string, form url.Values, hdr ...string) page {
	b.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok && b.csrf != "" {
		form.Set("csrf", b.csrf)
	}
	if _, ok := form["form_id"]; !ok {
		// As if from a freshly loaded form.
		form.Set("form_id", rand.Text())
	}
	req, _ := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.e.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return b.do(req)
}

// cookie returns the session cookie the browser holds, or nil.
func (b *browser) cookie() *http.Cookie {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "feedmq_session" {
			return c
		}
	}
	return nil
}

// setup redeems the setup token with password pw and returns the signed-in
// browser.
func (e *consoleEnv) setup(pw string) *browser {
	e.t.Helper()
	b := e.browser()
	p := b.post("/console/setup", url.Values{"token": {setupToken}, "password": {pw}, "confirm": {pw}})
	if p.status != http.StatusSeeOther || p.resp.Header.Get("Location") != "/console/channels?done=welcome" {
		e.t.Fatalf("setup: %d %s\n%s", p.status, p.resp.Header.Get("Location"), p.body)
	}
	b.signedIn()
	return b
}

// signedIn loads the channel list, checking the session works, and takes
// its CSRF token.
func (b *browser) signedIn() {
	b.e.t.Helper()
	if p := b.get("/console/channels"); p.status != 200 || !strings.Contains(p.body, "Sign out") {
		b.e.t.Fatalf("not signed in: %d\n%s", p.status, p.body)
	}
}

// signIn signs a new browser in with pw.
func (e *consoleEnv) signIn(pw string) *browser {
	e.t.Helper()
	b := e.browser()
	if p := b.post("/console/signin", url.Values{"password": {pw}}); p.status != http.StatusSeeOther {
		e.t.Fatalf("sign in: %d\n%s", p.status, p.body)
	}
	b.signedIn()
	return b
}
