package httpd_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	httpd "github.com/feedmq/feedmq/http"
)

// slowVerify holds every password check until the test opens the gate, as
// a slow hash (or a queue of them) does on a real server.
type slowVerify struct {
	httpd.Admin
	mu     sync.Mutex
	inside int
	calls  int
	gate   chan struct{}
}

func (s *slowVerify) VerifyPassword(ctx context.Context, pw string) error {
	s.mu.Lock()
	s.inside++
	s.calls++
	s.mu.Unlock()
	select {
	case <-s.gate:
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.inside--
	s.mu.Unlock()
	return s.Admin.VerifyPassword(ctx, pw)
}

func (s *slowVerify) counts() (inside, calls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inside, s.calls
}

// TestConsoleSignInThrottleConcurrent: wrong passwords sent at once from
// one address are throttled like wrong passwords sent one after another.
// The throttle was consulted before the (slow) check and told of the
// failure after it, so that every guess already waiting for the hash was
// checked: 100 parallel guesses were 100 checked guesses.
func TestConsoleSignInThrottleConcurrent(t *testing.T) {
	sv := &slowVerify{gate: make(chan struct{})}
	e := newConsoleEnv(t, false, func(o *httpd.ConsoleOptions) { sv.Admin = o.Admin; o.Admin = sv }) // 5 failures allowed
	e.setup(ownerPassword)
	const n = 20
	status := make(chan int, n)
	for i := range n {
		go func() {
			form := url.Values{"password": {"wrong guess " + strings.Repeat("x", i)}}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/console/signin", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
	}
	// Open the gate once every guess is being checked, or after a while
	// when (as it should be) most are not let through to the check.
	deadline := time.Now().Add(2 * time.Second)
	for {
		if in, _ := sv.counts(); in == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(sv.gate)
	got := map[int]int{}
	for range n {
		got[<-status]++
	}
	if _, calls := sv.counts(); calls > 5 {
		t.Errorf("%d of %d parallel wrong passwords from one address were checked; answers %v; want at most 5 checked, the rest 429", calls, n, got)
	}
	if got[http.StatusUnauthorized]+got[http.StatusTooManyRequests] != n {
		t.Errorf("answers %v: want only 401 and 429", got)
	}
}

// TestConsoleAddDeviceAfterRefusal: "Add Device" refused by the service
// (here a channel with neither right) shows the form again; sending it
// corrected adds the device. The refused attempt had used up the form's
// one-time id, so the corrected form was refused as "Sent already ...
// its credentials were shown then", although no device existed.
func TestConsoleAddDeviceAfterRefusal(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	if p := b.post("/console/channels/new", url.Values{"name": {"Greenhouse"}, "field1": {"T"}}); p.status != http.StatusSeeOther {
		t.Fatalf("new channel: %d\n%s", p.status, p.body)
	}
	form := b.get("/console/devices/new")
	m := formIDRE.FindStringSubmatch(form.body)
	if m == nil {
		t.Fatalf("no form_id in\n%s", form.body)
	}
	p := b.post("/console/devices/new", url.Values{"form_id": {m[1]}, "name": {"ESP32"}, "op": {"save"}, "channel": {"1"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "needs publish, subscribe or both") || !strings.Contains(p.body, m[1]) {
		t.Fatalf("grant without rights: %d\n%s", p.status, p.body)
	}
	p = b.post("/console/devices/new", url.Values{"form_id": {m[1]}, "name": {"ESP32"}, "op": {"save"}, "channel": {"1"}, "publish": {"1"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="password"`) {
		t.Fatalf("corrected form: %d\n%s", p.status, p.body)
	}
	if devs, _ := e.svc.ListDevices(t.Context()); len(devs) != 1 {
		t.Errorf("%d devices, want 1", len(devs))
	}
}

var formIDRE = regexp.MustCompile(`name="form_id" value="([^"]+)"`)

// verifyThenWait checks the password at once, as the service does with
// the hash it read, and then holds the answer until the test opens gate.
type verifyThenWait struct {
	httpd.Admin
	entered chan struct{}
	gate    chan struct{}
}

func (v *verifyThenWait) VerifyPassword(ctx context.Context, pw string) error {
	err := v.Admin.VerifyPassword(ctx, pw)
	v.entered <- struct{}{}
	<-v.gate
	return err
}

// TestConsoleSignInRacingPasswordChange: a sign-in whose password check
// began before the password changed gets no session that outlives the
// change. The session was stamped when the check ended, after the
// change, so whoever kept signing in with a leaked password (each check
// a slow hash) kept a session through the owner's password change.
func TestConsoleSignInRacingPasswordChange(t *testing.T) {
	vw := &verifyThenWait{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	e := newConsoleEnv(t, false, func(o *httpd.ConsoleOptions) { vw.Admin = o.Admin; o.Admin = vw })
	e.setup(ownerPassword)
	b := e.browser()
	done := make(chan page, 1)
	go func() { done <- b.post("/console/signin", url.Values{"password": {ownerPassword}}) }()
	<-vw.entered // the old password was found right
	e.clock.add(time.Second)
	if err := e.admin.SetPassword(t.Context(), "the owner's new password"); err != nil {
		t.Fatal(err)
	}
	close(vw.gate)
	if p := <-done; p.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", p.status, p.body)
	}
	if p := b.get("/console/channels"); p.status != http.StatusSeeOther {
		t.Errorf("session from a sign-in with the old password works after the change: %d", p.status)
	}
}

// TestConsoleNewChannelAllFieldsEmpty: the "New channel" form says an
// empty label turns a field off and a channel needs one field; with every
// label emptied it made a channel with all eight fields on ("Field 1" to
// "Field 8"), the CLI's default for a channel created without --field.
func TestConsoleNewChannelAllFieldsEmpty(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	form := url.Values{"name": {"Greenhouse"}}
	for i := 1; i <= 8; i++ {
		form.Set(fmt.Sprintf("field%d", i), "")
	}
	p := b.post("/console/channels/new", form)
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "field") {
		t.Errorf("every label empty: %d %s", p.status, p.resp.Header.Get("Location"))
	}
	if list, _ := e.svc.ListChannels(t.Context()); len(list) != 0 {
		t.Errorf("a channel was made: %+v", list[0].Fields)
	}
}
