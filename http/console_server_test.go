package httpd_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	httpd "github.com/feedmq/feedmq/http"
)

// TestChannelListOwner: the dashboard's channel list includes private
// channels, with their read keys, only for requests its Owner accepts.
func TestChannelListOwner(t *testing.T) {
	e := newDashEnvWith(t, time.Hour, func(o *httpd.DashboardOptions) {
		o.Owner = func(r *http.Request) bool { return r.Header.Get("X-Test-Owner") == "yes" }
	})
	e.channel(true, "Temperature")
	priv := e.channel(false, "Power")
	if _, body := e.get("/dashboard/channels.json"); strings.Count(body, `"id":`) != 1 || strings.Contains(body, priv.ReadKey) {
		t.Errorf("anonymous: %s", body)
	}
	_, body := e.get("/dashboard/channels.json", "X-Test-Owner", "yes")
	if strings.Count(body, `"id":`) != 2 || !strings.HasSuffix(body, `"api_key":"`+priv.ReadKey+`","owner":true}]`) || strings.Contains(body, priv.WriteKey) {
		t.Errorf("owner: %s", body)
	}
	// A key the owner typed is the owner's to forget: no "owner" mark.
	if _, body := e.get("/dashboard/channels.json?api_key="+priv.ReadKey, "X-Test-Owner", "yes"); strings.Contains(body, `"owner"`) {
		t.Errorf("owner with key: %s", body)
	}
}

// TestServerConsole: a Server with Console serves /console, and its
// signed-in owner sees private channels on the dashboard without a key.
func TestServerConsole(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	e.channel(true, "Temperature")
	priv := e.channel(false, "Power")
	fa := &fakeAdmin{Local: e.svc, password: ownerPassword, now: time.Now}
	s := httpd.NewServer(httpd.ServerOptions{
		Addr:      "127.0.0.1:0",
		API:       httpd.APIOptions{Store: e.db, Registry: e.svc.Registry, Publisher: e.srv},
		Dashboard: httpd.DashboardOptions{Store: e.db, Registry: e.svc.Registry, Watcher: e.srv},
		Console:   &httpd.ConsoleOptions{Admin: fa},
	})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Console() == nil {
		t.Fatal("no console")
	}
	base := "http://" + s.Addr().String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/console"); code != 200 || !strings.Contains(body, "Sign in") {
		t.Fatalf("/console: %d", code)
	}
	if code, body := get("/assets/console.css"); code != 200 || !strings.Contains(body, ".cnav") {
		t.Errorf("console.css: %d", code)
	}
	if code, _ := get("/assets/console/layout.html"); code != 404 {
		t.Errorf("templates served as assets: %d", code)
	}
	if _, body := get("/dashboard/channels.json"); strings.Count(body, `"id":`) != 1 {
		t.Errorf("signed out: %s", body)
	}
	// A wrong password counts with the API's refusals (one metric).
	resp, err := c.PostForm(base+"/console/signin", url.Values{"password": {"wrong password"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := s.Refusals().Snapshot()["console_sign_in_failed"]; resp.StatusCode != http.StatusUnauthorized || n != 1 {
		t.Errorf("wrong password: %d, counted %d", resp.StatusCode, n)
	}
	resp, err = c.PostForm(base+"/console/signin", url.Values{"password": {ownerPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/console/channels" {
		t.Fatalf("sign in: %d %s", resp.StatusCode, resp.Request.URL)
	}
	if _, body := get("/dashboard/channels.json"); strings.Count(body, `"id":`) != 2 || !strings.Contains(body, priv.ReadKey) {
		t.Errorf("signed in: %s", body)
	}
	// Once the password changes, the session no longer unlocks anything.
	fa.SetPassword(t.Context(), "another password")
	if _, body := get("/dashboard/channels.json"); strings.Count(body, `"id":`) != 1 || strings.Contains(body, priv.ReadKey) {
		t.Errorf("after the password changed: %s", body)
	}
}

// TestServerConsoleTLS: on the TLS listener the session cookie is Secure,
// on the plain one it is not (a Secure cookie would not be kept there).
func TestServerConsoleTLS(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	fa := &fakeAdmin{Local: e.svc, password: ownerPassword, now: time.Now}
	certSrv := httptest.NewUnstartedServer(nil) // for its test certificate
	certSrv.StartTLS()
	cert := certSrv.TLS.Certificates[0]
	pool := certSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	certSrv.Close()
	s := httpd.NewServer(httpd.ServerOptions{
		Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		API:       httpd.APIOptions{Store: e.db, Registry: e.svc.Registry, Publisher: e.srv},
		Dashboard: httpd.DashboardOptions{Store: e.db, Registry: e.svc.Registry, Watcher: e.srv},
		Console:   &httpd.ConsoleOptions{Admin: fa},
	})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_, tlsPort, _ := net.SplitHostPort(s.TLSAddr().String())
	for _, c := range []struct {
		base   string
		secure bool
	}{
		{"http://" + s.Addr().String(), false},
		{"https://127.0.0.1:" + tlsPort, true},
	} {
		client := &http.Client{
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		// As a browser posts it: Origin names the scheme too.
		signIn := func(origin string) *http.Response {
			req, _ := http.NewRequest(http.MethodPost, c.base+"/console/signin", strings.NewReader(url.Values{"password": {ownerPassword}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", origin)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		other := "https://" + strings.TrimPrefix(c.base, "http://")
		if c.secure {
			other = "http://" + strings.TrimPrefix(c.base, "https://")
		}
		if resp := signIn(other); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: Origin %s: %d", c.base, other, resp.StatusCode)
		}
		resp := signIn(c.base)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: sign in %d", c.base, resp.StatusCode)
		}
		checkCookie(t, resp, c.secure)
	}
}
