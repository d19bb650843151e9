package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpsGet fetches url trusting pool and returns the status and body.
func httpsGet(t *testing.T, url string, pool *x509.CertPool) (int, string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestServeHTTPS: --https serves what --http does over TLS with the
// configured certificate, prints its line like the other listeners, and
// renews the certificate on SIGHUP; plain HTTP to it is refused.
func TestServeHTTPS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	poolA := selfSigned(t, "first", certFile, keyFile)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: off, WSS: off, HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"}
	cfg.TLS = TLSConfig{Cert: certFile, Key: keyFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, logs := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, out, slog.New(slog.NewTextHandler(logs, nil))) }()
	linesRE := regexp.MustCompile(`^mqtt listening on 127\.0\.0\.1:\d+\nhttp listening on (127\.0\.0\.1:\d+)\n` +
		`https listening on (127\.0\.0\.1:\d+)\n$`)
	waitFor(t, func() bool { return linesRE.MatchString(out.String()) })
	m := linesRE.FindStringSubmatch(out.String())
	plain, secure := m[1], m[2]

	if code, body, err := httpsGet(t, "https://"+secure+"/healthz", poolA); err != nil || code != 200 {
		t.Fatalf("GET /healthz over https: %d %q %v", code, body, err)
	}
	if code, _, err := httpsGet(t, "http://"+plain+"/healthz", nil); err != nil || code != 200 {
		t.Fatalf("GET /healthz over http: %d %v", code, err)
	}
	if code, body, err := httpsGet(t, "http://"+secure+"/healthz", nil); err == nil && (code == 200 || !strings.Contains(body, "HTTPS")) {
		t.Fatalf("plain HTTP to the https port: %d %q", code, body)
	}
	if cn := servedCN(secure, poolA); cn != "first" {
		t.Fatalf("https serves %q", cn)
	}

	// The certificate is renewed on SIGHUP, as the MQTT listeners' is.
	poolB := selfSigned(t, "second", certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return servedCN(secure, poolB) == "second" })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestServeHTTPSAlone: --https works with --http off.
func TestServeHTTPSAlone(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := selfSigned(t, "alone", certFile, keyFile)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: off, WSS: off, HTTP: off, HTTPS: "127.0.0.1:0"}
	cfg.TLS = TLSConfig{Cert: certFile, Key: keyFile}
	s, err := openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.addr("http") != nil || s.addr("https") == nil {
		t.Fatalf("http %v, https %v", s.addr("http"), s.addr("https"))
	}
	if code, _, err := httpsGet(t, "https://"+s.addr("https").String()+"/healthz", pool); err != nil || code != 200 {
		t.Fatalf("GET /healthz over https: %d %v", code, err)
	}
}

// TestHTTPSConfig: listeners.https and --https are checked when the
// configuration is loaded; without a certificate they are refused.
func TestHTTPSConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml, err string
		want      string
	}{
		{"listeners:\n  https: \":8443\"\n", "listeners.https: needs a certificate; set tls.cert and tls.key", ""},
		{"listeners:\n  https: \"off\"\n", "", ""},
		{"listeners:\n  https: \"\"\n", "", ""},
		{"listeners:\n  https: \"8443\"\n", `listeners.https: "8443" is not HOST:PORT`, ""},
		{"listeners:\n  https: \":99999\"\n", "listeners.https: \":99999\": port must be a number", ""},
		{"listeners:\n  https: \"127.0.0.1:8443\"\ntls:\n  cert: c.pem\n  key: k.pem\n", "", "127.0.0.1:8443"},
	} {
		c := DefaultConfig()
		err := decodeConfig([]byte(tc.yaml), &c)
		if err == nil {
			err = c.Validate()
		}
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Fatalf("%q: error %v, want %q", tc.yaml, err, tc.err)
		}
		if err == nil && c.httpsAddr() != tc.want {
			t.Fatalf("%q: https address %q, want %q", tc.yaml, c.httpsAddr(), tc.want)
		}
	}
	// The flag, through the command line.
	got := mustFail(t, t.TempDir(), "serve", "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off", "--https", "127.0.0.1:0")
	if !strings.Contains(got, "listeners.https: needs a certificate") {
		t.Fatalf("--https without a certificate: %q", got)
	}
}
