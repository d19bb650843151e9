package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

var setupLineRE = regexp.MustCompile(`(?m)^.*url="?http://(127\.0\.0\.1:\d+)/console/setup\?token=([a-z]{26})"?\n`)

// startServe runs serve (runServe, as the command does) on dir with only
// the HTTP listener, logging at debug level to logs; it returns the HTTP
// address serve printed and a func that stops serve.
func startServe(t *testing.T, dir string, logs *syncBuffer) (httpAddr string, stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.LogLevel = "debug"
	cfg.Listeners = ListenersConfig{MQTT: off, WS: off, MQTTS: off, WSS: off, HTTP: "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, out, newLogger(cfg, logs)) }()
	addrRE := regexp.MustCompile(`http listening on (\S+)\n`)
	waitFor(t, func() bool { return addrRE.MatchString(out.String()) })
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return addrRE.FindStringSubmatch(out.String())[1], stop
}

// A first serve logs one setup link on its HTTP listener; the token in
// it sets the first password once, through the admin service the console
// uses, and appears nowhere else in the log. Once a password is set, no
// link is logged.
func TestServeSetupLink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var logs syncBuffer
	addr, stop := startServe(t, dir, &logs)

	out := logs.String()
	lines := setupLineRE.FindAllStringSubmatch(out, -1)
	if len(lines) != 1 || strings.Count(out, "/console/setup") != 1 {
		t.Fatalf("want one setup line, got %d:\n%s", len(lines), out)
	}
	line, linkAddr, token := lines[0][0], lines[0][1], lines[0][2]
	if linkAddr != addr {
		t.Fatalf("link on %s, serve listens on %s", linkAddr, addr)
	}
	if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "valid once") {
		t.Fatalf("setup line: %s", line)
	}

	a, err := admin.Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.RedeemSetupToken(ctx, strings.ToUpper(token), "chosen in the browser"); !errors.Is(err, auth.ErrSetupToken) {
		t.Fatalf("wrong token: %v", err)
	}
	if err := a.RedeemSetupToken(ctx, token, "chosen in the browser"); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	err = a.RedeemSetupToken(ctx, token, "chosen again")
	if channels.ErrorCode(err) != channels.EFORBIDDEN || !errors.Is(err, auth.ErrSetupToken) {
		t.Fatalf("second redeem: %v", err)
	}
	var shown accountJSON
	if mustJSON(t, dir, &shown, "account", "show", "--json"); !shown.PasswordSet {
		t.Fatalf("account show after redeem: %+v", shown)
	}
	if err := a.VerifyPassword(ctx, "chosen in the browser"); err != nil {
		t.Fatal(err)
	}
	setPassword(t, dir, "changed on the CLI")
	if err := a.VerifyPassword(ctx, "changed on the CLI"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	stop()

	out = logs.String()
	if n := strings.Count(out, token); n != 1 {
		t.Errorf("the token appears %d times in the log, want once:\n%s", n, out)
	}
	for _, secret := range []string{"chosen in the browser", "chosen again", "changed on the CLI", shown.UserAPIKey, "argon2"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}

	// With a password set, the next serve logs no link.
	var again syncBuffer
	startServe(t, dir, &again)
	if strings.Contains(again.String(), "/console/setup") || strings.Contains(again.String(), "token") {
		t.Fatalf("serve with a password set logged a setup link:\n%s", again.String())
	}
}

// Each start without a password logs a new link; the old token died with
// the process that logged it.
func TestServeSetupLinkPerStart(t *testing.T) {
	dir := t.TempDir()
	var first, second syncBuffer
	_, stop := startServe(t, dir, &first)
	stop()
	startServe(t, dir, &second)
	a := setupLineRE.FindStringSubmatch(first.String())
	b := setupLineRE.FindStringSubmatch(second.String())
	if a == nil || b == nil || a[2] == b[2] {
		t.Fatalf("setup lines:\n%s\n%s", first.String(), second.String())
	}
	c, err := admin.Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.RedeemSetupToken(context.Background(), a[2], "from the first start"); !errors.Is(err, auth.ErrSetupToken) {
		t.Fatalf("token of the previous start: %v", err)
	}
	if err := c.RedeemSetupToken(context.Background(), b[2], "from the second start"); err != nil {
		t.Fatal(err)
	}
}

// Without an HTTP listener there is no console, so no link.
func TestServeSetupLinkWithoutHTTP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: off, WSS: off, HTTP: off}
	var logs syncBuffer
	s, err := openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "feedmq serving") || strings.Contains(logs.String(), "/console/setup") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// With only the HTTPS listener, serve starts and its setup link points
// at that listener over https (the HTTP address is nil then).
func TestServeSetupLinkHTTPSOnly(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	selfSigned(t, "only", certFile, keyFile)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: off, WSS: off, HTTP: off, HTTPS: "127.0.0.1:0"}
	cfg.TLS = TLSConfig{Cert: certFile, Key: keyFile}
	var logs syncBuffer
	s, err := openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := "https://" + s.addr("https").String() + "/console/setup?token="
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("want a setup link %s..., log:\n%s", want, logs.String())
	}
}
