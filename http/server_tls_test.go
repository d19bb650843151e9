package httpd_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	httpd "github.com/feedmq/feedmq/http"
)

// testCert returns a self-signed certificate for 127.0.0.1 and a pool
// that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "feedmq test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestServerTLS: with TLSAddr the same handler answers over TLS 1.2+ (and
// HTTP/1.1) with r.TLS set, next to the plain listener; plain HTTP to the
// TLS port and TLS 1.1 get nothing, and Close stops both listeners.
func TestServerTLS(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	cert, pool := testCert(t)
	opts := httpd.ServerOptions{
		Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		API: httpd.APIOptions{Store: e.db, Registry: e.svc.Registry, Publisher: e.srv,
			Health: func(context.Context) error { return nil }},
		Dashboard: httpd.DashboardOptions{Store: e.db, Registry: e.svc.Registry, Watcher: e.srv},
		// Stands for any handler that needs to know (the console's Secure
		// cookies).
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS != nil {
				io.WriteString(w, "tls")
				return
			}
			io.WriteString(w, "plain")
		}),
	}
	s := httpd.NewServer(opts)
	if s.TLSAddr() != nil {
		t.Fatal("TLSAddr before Open")
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	plainBase, tlsBase := "http://"+s.Addr().String(), "https://"+s.TLSAddr().String()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	get := func(url string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get(tlsBase + "/healthz")
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 || resp.ProtoMajor != 1 {
		t.Fatalf("GET /healthz over TLS: %s %s, TLS %v: %q", resp.Status, resp.Proto, resp.TLS != nil, body)
	}
	if _, body := get(tlsBase + "/metrics"); body != "tls" {
		t.Fatalf("handler over TLS saw %q", body)
	}
	if _, body := get(plainBase + "/metrics"); body != "plain" {
		t.Fatalf("handler over plain HTTP saw %q", body)
	}
	if resp, _ := get(plainBase + "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("plain /healthz: %s", resp.Status)
	}

	// Plain HTTP to the TLS port: refused, never the answer.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.TLSAddr().String() + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !strings.Contains(string(b), "HTTPS") {
			t.Fatalf("plain HTTP to the TLS port: %s %q", resp.Status, b)
		}
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", s.TLSAddr().String(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	// A client that opens the connection and never says hello is cut off
	// by the server's timeouts rather than held forever; here it is
	// enough that the TLS listener keeps serving others meanwhile.
	idle, err := net.Dial("tcp", s.TLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if resp, _ := get(tlsBase + "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("with an idle socket open: %s", resp.Status)
	}

	idle.Close() // else Close waits for it to time out
	tlsAddr := s.TLSAddr().String()
	closed = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", tlsAddr, time.Second); err == nil {
		// Accepted by the kernel after Close would mean a listener left.
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, rerr := bufio.NewReader(c).ReadByte()
		c.Close()
		if rerr == nil {
			t.Fatal("TLS listener still answers after Close")
		}
	}
}

// TestServerTLSErrors: Open refuses a TLS address without a certificate
// and no address at all, and a TLS port in use releases the plain one.
func TestServerTLSErrors(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	base := httpd.ServerOptions{
		API:       httpd.APIOptions{Store: e.db, Registry: e.svc.Registry, Publisher: e.srv},
		Dashboard: httpd.DashboardOptions{Store: e.db, Registry: e.svc.Registry, Watcher: e.srv},
	}
	cert, _ := testCert(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	for _, tc := range []struct {
		name    string
		set     func(o *httpd.ServerOptions)
		wantErr string
	}{
		{"NoAddress", func(o *httpd.ServerOptions) {}, "no address"},
		{"NoConfig", func(o *httpd.ServerOptions) { o.TLSAddr = "127.0.0.1:0" }, "https listener: needs a certificate"},
		{"NoCertificate", func(o *httpd.ServerOptions) { o.TLSAddr, o.TLSConfig = "127.0.0.1:0", &tls.Config{} }, "https listener: needs a certificate"},
		{"TLSPortInUse", func(o *httpd.ServerOptions) {
			o.Addr, o.TLSAddr, o.TLSConfig = freeAddr, busy.Addr().String(), &tls.Config{Certificates: []tls.Certificate{cert}}
		}, "https listener: listen tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.set(&o)
			s := httpd.NewServer(o)
			err := s.Open()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				s.Close()
				t.Fatalf("Open: %v, want %q", err, tc.wantErr)
			}
			if s.Addr() != nil || s.TLSAddr() != nil {
				t.Fatal("a failed Open left an address")
			}
		})
	}
	// The plain port bound before the TLS one failed was released.
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("plain port not released: %v", err)
	}
	ln.Close()
}
