package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 with common
// name cn to certFile and keyFile, and returns a pool that trusts it.
func selfSigned(t *testing.T, cn, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// servedCN returns the common name of the certificate served at addr, or
// "" when the handshake fails.
func servedCN(addr string, pool *x509.CertPool) string {
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestServeTLSAndWebSocket: serve runs every MQTT listener, prints each
// bound address, and reloads the certificate on SIGHUP, keeping the old
// one when the new files are bad.
func TestServeTLSAndWebSocket(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	poolA := selfSigned(t, "first", certFile, keyFile)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: "127.0.0.1:0", MQTTS: "127.0.0.1:0", WSS: "127.0.0.1:0", HTTP: off}
	cfg.TLS = TLSConfig{Cert: certFile, Key: keyFile}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, logs := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, out, slog.New(slog.NewTextHandler(logs, nil))) }()

	linesRE := regexp.MustCompile(`^mqtt listening on 127\.0\.0\.1:\d+\nws listening on 127\.0\.0\.1:\d+\n` +
		`mqtts listening on (127\.0\.0\.1:\d+)\nwss listening on (127\.0\.0\.1:\d+)\n$`)
	waitFor(t, func() bool { return linesRE.MatchString(out.String()) })
	m := linesRE.FindStringSubmatch(out.String())
	mqtts, wss := m[1], m[2]
	if cn := servedCN(mqtts, poolA); cn != "first" {
		t.Fatalf("mqtts serves %q", cn)
	}
	if strings.Contains(logs.String(), "not implemented") {
		t.Fatalf("warning about an implemented listener:\n%s", logs.String())
	}

	// A renewed certificate in place, then SIGHUP.
	poolB := selfSigned(t, "second", certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return servedCN(mqtts, poolB) == "second" && servedCN(wss, poolB) == "second" })
	waitFor(t, func() bool { return strings.Contains(logs.String(), "SIGHUP: TLS certificate reloaded") })

	// A bad key: serve logs the error and keeps the certificate.
	writeFile(t, keyFile, "not a key")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "SIGHUP: TLS certificate not reloaded") })
	if !strings.Contains(logs.String(), keyFile) {
		t.Fatalf("the error does not name the key file:\n%s", logs.String())
	}
	if cn := servedCN(mqtts, poolB); cn != "second" {
		t.Fatalf("after a bad reload mqtts serves %q", cn)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestServeBadCertificate: serve refuses to start with a certificate it
// cannot read, naming the file.
func TestServeBadCertificate(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: "127.0.0.1:0", HTTP: off}
	missing := filepath.Join(dir, "missing.pem")
	cfg.TLS = TLSConfig{Cert: missing, Key: missing}
	_, err := openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing certificate: %v", err)
	}
	// Everything opened was closed: the database is free again.
	mustRun(t, dir, "channel", "list")
}

// TestWSAllowedOriginsConfig: origins are checked when the configuration
// is loaded.
func TestWSAllowedOriginsConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml, err string
	}{
		{"ws_allowed_origins: []\n", ""},
		{"ws_allowed_origins: [\"*\"]\n", ""},
		{"ws_allowed_origins:\n  - https://dashboard.example.com\n  - http://localhost:3000\n", ""},
		{"ws_allowed_origins: [dashboard.example.com]\n", `ws_allowed_origins: "dashboard.example.com" is not an origin`},
		{"ws_allowed_origins: [\"https://example.com/app\"]\n", `ws_allowed_origins: "https://example.com/app" is not an origin`},
	} {
		c := DefaultConfig()
		err := decodeConfig([]byte(tc.yaml), &c)
		if err == nil {
			err = c.Validate()
		}
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Fatalf("%q: error %v, want %q", tc.yaml, err, tc.err)
		}
	}
}
