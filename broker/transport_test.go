package broker_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// testPKI is a certificate authority made for one test; nothing secret is
// ever committed.
type testPKI struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	caFile string // the CA certificate, PEM
	dir    string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "feedmq test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{cert: cert, key: key, pool: x509.NewCertPool(), dir: t.TempDir()}
	p.pool.AddCert(cert)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

// issue signs a server certificate for 127.0.0.1, ::1 and localhost with
// common name cn, and writes it to <cn>.pem and <cn>.key.
func (p *testPKI) issue(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, cn+".pem"), filepath.Join(p.dir, cn+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// copyFile replaces dst with the contents of src, as an operator renewing
// a certificate in place does.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *testPKI) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
}

// startTLSServer starts a broker with every listener on 127.0.0.1:0 and a
// certificate "server" from a new CA. It returns the server, the CA, and
// the certificate and key files the server reads.
func startTLSServer(t *testing.T, opts broker.Options) (*testServer, *testPKI, string, string) {
	t.Helper()
	pki := newPKI(t)
	certFile, keyFile := pki.issue(t, "server")
	opts.MQTTSAddr, opts.WSAddr, opts.WSSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	opts.CertFile, opts.KeyFile = certFile, keyFile
	return startServer(t, opts), pki, certFile, keyFile
}

func (ts *testServer) addrOf(id string) string {
	ts.t.Helper()
	a := ts.srv.Addr(id)
	if a == nil {
		ts.t.Fatalf("no %s listener", id)
	}
	return a.String()
}

// feedJSON is what channels/<ch>/subscribe carries for an entry with
// field1 only.
func feedJSON(ch uint64, entry int, field1 string) string {
	return fmt.Sprintf(`{"channel_id":%d,"created_at":"2026-11-22T10:00:00Z","entry_id":%d,"field1":%q,`+
		`"field2":null,"field3":null,"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,`+
		`"latitude":null,"longitude":null,"elevation":null,"status":null}`, ch, entry, field1)
}

func feedPayload(field1 string) string {
	return "field1=" + field1 + "&created_at=2026-11-22 10:00:00"
}

// mustSubscribe subscribes c to the feed of ch.
func (c *client) mustSubscribe(t *testing.T, ch uint64) {
	t.Helper()
	if code := c.subscribe(t, fmt.Sprintf("channels/%d/subscribe", ch)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
}

// checkPubSub publishes with pub and checks that the entry reaches sub,
// subscribed to the feed, as JSON.
func checkPubSub(t *testing.T, sub, pub *client, ch uint64, entry int, field1 string) {
	t.Helper()
	topic := fmt.Sprintf("channels/%d/subscribe", ch)
	if err := pub.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, feedPayload(field1)); err != nil {
		t.Fatal(err)
	}
	if m := sub.expect(t); m.topic != topic || m.payload != feedJSON(ch, entry, field1) {
		t.Fatalf("got %s %s", m.topic, m.payload)
	}
}

// TestTLSPublishSubscribe: a Go client over MQTTS publishes and
// subscribes, and entries cross between TLS and plain TCP clients.
func TestTLSPublishSubscribe(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	for _, scheme := range []string{"ssl", "tls", "mqtts"} {
		t.Run(scheme, func(t *testing.T) {
			c, code, err := connectURL(t, scheme+"://"+ts.addrOf("mqtts"), dev, 4, pki.clientConfig())
			if err != nil {
				t.Fatalf("CONNACK %d: %v", code, err)
			}
			c.Disconnect(100)
		})
	}
	tlsClient, _, err := connectURL(t, "ssl://"+ts.addrOf("mqtts"), dev, 4, pki.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	tcpClient := mustConnect(t, ts.addr, ts.device(pubsub(ch)))
	tlsClient.mustSubscribe(t, ch)
	checkPubSub(t, tlsClient, tlsClient, ch, 1, "1.5")
	checkPubSub(t, tlsClient, tcpClient, ch, 2, "2.5")
	// Wrong credentials over TLS are refused like over TCP.
	bad := *dev
	bad.Password = "wrong"
	if _, code, err := connectURL(t, "ssl://"+ts.addrOf("mqtts"), &bad, 4, pki.clientConfig()); err == nil || code != 4 {
		t.Fatalf("wrong password: CONNACK %d, %v", code, err)
	}
}

// TestTLSVersions: TLS 1.2 and 1.3 are served, TLS 1.1 and older refused;
// and a client that does not trust the CA fails.
func TestTLSVersions(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{})
	for _, tc := range []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS1.0", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS1.1", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS1.2", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pki.clientConfig()
			cfg.MinVersion, cfg.MaxVersion = tc.min, tc.max
			for _, id := range []string{"mqtts", "wss"} {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ts.addrOf(id), cfg)
				if tc.ok != (err == nil) {
					t.Fatalf("%s: handshake error %v, want ok=%v", id, err, tc.ok)
				}
				if err == nil {
					if v := c.ConnectionState().Version; v != tc.max {
						t.Fatalf("%s: version %x", id, v)
					}
					c.Close()
				}
			}
		})
	}
	_, err := tls.Dial("tcp", ts.addrOf("mqtts"), &tls.Config{MinVersion: tls.VersionTLS12})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("untrusted CA: %v", err)
	}
}

// TestTLSHandshakeDeadline: a connection that never completes the TLS
// handshake is closed after the CONNECT timeout, and so is one that
// completes it but sends no CONNECT.
func TestTLSHandshakeDeadline(t *testing.T) {
	// Long enough for a full handshake on a loaded machine under -race.
	ts, pki, _, _ := startTLSServer(t, broker.Options{ConnectTimeout: 1500 * time.Millisecond})
	for _, id := range []string{"mqtts", "wss"} {
		c, err := net.Dial("tcp", ts.addrOf(id))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then silence
		expectEOF(t, c, 6*time.Second)
	}
	c, err := tls.Dial("tcp", ts.addrOf("mqtts"), pki.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectEOF(t, c, 6*time.Second)
}

// expectEOF asserts that the server closes c within limit.
func expectEOF(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
}

// peerCN returns the common name of the certificate a new MQTTS
// connection is served.
func peerCN(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestCertificateReload: ReloadCertificate serves a renewed certificate
// to new connections while established ones go on; a bad pair is refused
// and the previous certificate stays.
func TestCertificateReload(t *testing.T) {
	ts, pki, certFile, keyFile := startTLSServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	mqtts := ts.addrOf("mqtts")
	old, _, err := connectURL(t, "ssl://"+mqtts, dev, 4, pki.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	old.mustSubscribe(t, ch)
	checkPubSub(t, old, old, ch, 1, "1")
	if cn := peerCN(t, mqtts, pki.clientConfig()); cn != "server" {
		t.Fatalf("certificate %q", cn)
	}

	// A bad new pair: the error names what is wrong, the old one stays.
	renewedCert, renewedKey := pki.issue(t, "renewed")
	otherCert, _ := pki.issue(t, "other")
	copyFile(t, otherCert, certFile) // a certificate that does not match the key
	err = ts.srv.ReloadCertificate()
	if err == nil || !strings.Contains(err.Error(), "private key does not match public key") ||
		!strings.Contains(err.Error(), certFile) || !strings.Contains(err.Error(), "keeping the previous certificate") {
		t.Fatalf("mismatched pair: %v", err)
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	copyFile(t, renewedCert, certFile)
	if err := ts.srv.ReloadCertificate(); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("garbage key: %v", err)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.ReloadCertificate(); err == nil || !strings.Contains(err.Error(), certFile) ||
		!errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if cn := peerCN(t, mqtts, pki.clientConfig()); cn != "server" {
		t.Fatalf("after failed reloads: certificate %q", cn)
	}

	// The renewed pair is served to new connections, over mqtts and wss.
	copyFile(t, renewedCert, certFile)
	copyFile(t, renewedKey, keyFile)
	if err := ts.srv.ReloadCertificate(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"mqtts", "wss"} {
		if cn := peerCN(t, ts.addrOf(id), pki.clientConfig()); cn != "renewed" {
			t.Fatalf("%s after reload: certificate %q", id, cn)
		}
	}
	// The connection made before the reload still works.
	checkPubSub(t, old, old, ch, 2, "2")
	select {
	case err := <-old.lost:
		t.Fatalf("connection lost: %v", err)
	default:
	}
}

// TestTLSConfigurationErrors: Open refuses a missing or bad certificate,
// naming the file, and TLS listeners without one; a server without TLS
// has no certificate to reload.
func TestTLSConfigurationErrors(t *testing.T) {
	ts := startServer(t, broker.Options{})
	if err := ts.srv.ReloadCertificate(); err == nil {
		t.Fatal("reload without TLS succeeded")
	}
	pki := newPKI(t)
	certFile, keyFile := pki.issue(t, "server")
	_, otherKey := pki.issue(t, "other")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		opts broker.Options
		want []string
	}{
		{"NoCertificate", broker.Options{MQTTSAddr: "127.0.0.1:0"}, []string{"need a certificate and key file"}},
		{"WSSNoKey", broker.Options{WSSAddr: "127.0.0.1:0", CertFile: certFile}, []string{"need a certificate and key file"}},
		{"MissingCert", broker.Options{MQTTSAddr: "127.0.0.1:0", CertFile: missing, KeyFile: keyFile},
			[]string{"tls certificate", missing, "no such file"}},
		{"MissingKey", broker.Options{WSSAddr: "127.0.0.1:0", CertFile: certFile, KeyFile: missing},
			[]string{"tls key", missing}},
		{"KeyMismatch", broker.Options{MQTTSAddr: "127.0.0.1:0", CertFile: certFile, KeyFile: otherKey},
			[]string{certFile, otherKey, "does not match"}},
		{"KeyAsCert", broker.Options{MQTTSAddr: "127.0.0.1:0", CertFile: keyFile, KeyFile: keyFile},
			[]string{keyFile, "certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.MQTTAddr, tc.opts.WSAddr = "127.0.0.1:0", "127.0.0.1:0"
			tc.opts.Logger = quietLogger()
			srv, err := broker.New(tc.opts, ts.db, ts.svc.Registry)
			if err != nil {
				t.Fatal(err)
			}
			err = srv.Open()
			if err == nil {
				srv.Close()
				t.Fatal("opened")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	_, err := broker.New(broker.Options{WSAllowedOrigins: []string{"example.com"}}, ts.db, ts.svc.Registry)
	if err == nil || !strings.Contains(err.Error(), `"example.com" is not an origin`) {
		t.Fatalf("bad origin: %v", err)
	}
}

// TestListenerAddresses: every listener binds in Open, port 0 resolves,
// "off" and "" disable a listener, and a port in use fails Open and
// releases what it had bound.
func TestListenerAddresses(t *testing.T) {
	ts, _, certFile, keyFile := startTLSServer(t, broker.Options{})
	seen := map[string]bool{}
	for _, id := range []string{"mqtt", "mqtts", "ws", "wss"} {
		a := ts.addrOf(id)
		if strings.HasSuffix(a, ":0") || seen[a] {
			t.Fatalf("%s: address %s", id, a)
		}
		seen[a] = true
	}
	if a := ts.srv.Addr("http"); a != nil {
		t.Fatalf("http: %v", a)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, id := range []string{"ws", "wss", "mqtts"} {
		t.Run(id+"InUse", func(t *testing.T) {
			free, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			freeAddr := free.Addr().String()
			free.Close()
			opts := broker.Options{MQTTAddr: freeAddr, WSAddr: "off", CertFile: certFile, KeyFile: keyFile, Logger: quietLogger()}
			switch id {
			case "ws":
				opts.WSAddr = busy.Addr().String()
			case "wss":
				opts.WSSAddr = busy.Addr().String()
			case "mqtts":
				opts.MQTTSAddr = busy.Addr().String()
			}
			srv, err := broker.New(opts, ts.db, ts.svc.Registry)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Open(); err == nil || !strings.Contains(err.Error(), id+" listener") ||
				!strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("Open: %v", err)
			}
			// The mqtt socket bound before the failure was released.
			ln, err := net.Listen("tcp", freeAddr)
			if err != nil {
				t.Fatalf("mqtt socket not released: %v", err)
			}
			ln.Close()
		})
	}
}

// wsURL returns the WebSocket URL of a listener.
func (ts *testServer) wsURL(id, path string) string {
	scheme := "ws"
	if id == "wss" {
		scheme = "wss"
	}
	return scheme + "://" + ts.addrOf(id) + path
}

// TestWebSocketPublishSubscribe: Go clients over ws:// and wss:// at /mqtt
// publish and subscribe, with entries crossing to TCP clients.
func TestWebSocketPublishSubscribe(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{})
	ch := ts.channel(false)
	entry := 0
	for _, id := range []string{"ws", "wss"} {
		t.Run(id, func(t *testing.T) {
			for _, version := range []uint{3, 4, 5} {
				c, code, err := connectURL(t, ts.wsURL(id, "/mqtt"), ts.device(pubsub(ch)), version, pki.clientConfig())
				if err != nil {
					t.Fatalf("MQTT version %d: CONNACK %d, %v", version, code, err)
				}
				c.Disconnect(100)
			}
			c, _, err := connectURL(t, ts.wsURL(id, "/mqtt"), ts.device(pubsub(ch)), 4, pki.clientConfig())
			if err != nil {
				t.Fatal(err)
			}
			tcp := mustConnect(t, ts.addr, ts.device(pubsub(ch)))
			c.mustSubscribe(t, ch)
			entry++
			checkPubSub(t, c, c, ch, entry, id)
			entry++
			checkPubSub(t, c, tcp, ch, entry, "from-tcp")
			// A publish larger than a WebSocket frame buffer (4 KiB) but
			// within the payload limit arrives whole.
			payload := "field1=" + strings.Repeat("x", 255) + "&status=" + strings.Repeat("s", 255) +
				"&created_at=2026-11-22 10:00:00&x=" + strings.Repeat("y", 2000)
			if err := c.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, payload); err != nil {
				t.Fatal(err)
			}
			entry++
			if m := c.expect(t); !strings.Contains(m.payload, fmt.Sprintf(`"entry_id":%d,"field1":"%s"`, entry, strings.Repeat("x", 255))) {
				t.Fatalf("got %s", m.payload)
			}
		})
	}
}

// wsDial opens a WebSocket to url with an Origin (none when "") and the
// given subprotocols.
func wsDial(t *testing.T, url, origin string, tlsConfig *tls.Config, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: subprotocols, TLSClientConfig: tlsConfig}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	c, resp, err := d.Dial(url, h)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// TestWebSocketHandshake: only /mqtt upgrades; the answer to everything
// else, to plain requests and to refused origins; subprotocols.
func TestWebSocketHandshake(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{WSAllowedOrigins: []string{"https://dashboard.example.com", "HTTP://LOCALHOST:3000"}})
	ws := ts.addrOf("ws")

	client := &http.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", http.StatusNotFound},
		{"GET", "/other", http.StatusNotFound},
		{"GET", "/mqtt/", http.StatusNotFound},
		{"GET", "/mqttx", http.StatusNotFound},
		{"GET", "/mqtt", http.StatusUpgradeRequired},
		{"POST", "/mqtt", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+ws+tc.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.status)
		}
	}
	// A WebSocket upgrade anywhere but /mqtt is not found either.
	if _, resp, err := wsDial(t, "ws://"+ws+"/", "", nil, "mqtt"); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("upgrade at /: %v %v", resp, err)
	}

	for _, tc := range []struct {
		name, origin string
		protocols    []string
		status       int
		protocol     string
	}{
		{"NoOrigin", "", []string{"mqtt"}, http.StatusSwitchingProtocols, "mqtt"},
		{"MQTT31", "", []string{"mqttv3.1"}, http.StatusSwitchingProtocols, "mqttv3.1"},
		{"ClientOrder", "", []string{"mqttv3.1", "mqtt"}, http.StatusSwitchingProtocols, "mqtt"},
		{"NoSubprotocol", "", nil, http.StatusSwitchingProtocols, ""},
		{"UnknownSubprotocol", "", []string{"wamp"}, http.StatusSwitchingProtocols, ""},
		{"SameHost", "http://" + ws, []string{"mqtt"}, http.StatusSwitchingProtocols, "mqtt"},
		{"SameHostOtherScheme", "https://" + ws, []string{"mqtt"}, http.StatusSwitchingProtocols, "mqtt"},
		{"Allowed", "https://dashboard.example.com", []string{"mqtt"}, http.StatusSwitchingProtocols, "mqtt"},
		{"AllowedDefaultPort", "https://DASHBOARD.example.com:443", []string{"mqtt"}, http.StatusSwitchingProtocols, "mqtt"},
		{"AllowedNormalized", "http://localhost:3000", []string{"mqtt"}, http.StatusSwitchingProtocols, "mqtt"},
		{"OtherScheme", "http://dashboard.example.com", []string{"mqtt"}, http.StatusForbidden, ""},
		{"OtherPort", "http://localhost:3001", []string{"mqtt"}, http.StatusForbidden, ""},
		{"Foreign", "https://evil.example", []string{"mqtt"}, http.StatusForbidden, ""},
		{"Null", "null", []string{"mqtt"}, http.StatusForbidden, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := wsDial(t, "ws://"+ws+"/mqtt", tc.origin, nil, tc.protocols...)
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %s, want %d (%v)", resp.Status, tc.status, err)
			}
			if err == nil && c.Subprotocol() != tc.protocol {
				t.Fatalf("subprotocol %q, want %q", c.Subprotocol(), tc.protocol)
			}
		})
	}
	// The same over wss.
	if _, resp, err := wsDial(t, ts.wsURL("wss", "/mqtt"), "https://evil.example", pki.clientConfig(), "mqtt"); err == nil || resp == nil ||
		resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wss foreign origin: %v %v", resp, err)
	}
	if c, _, err := wsDial(t, ts.wsURL("wss", "/mqtt"), "https://dashboard.example.com", pki.clientConfig(), "mqtt"); err != nil ||
		c.Subprotocol() != "mqtt" {
		t.Fatalf("wss allowed origin: %v", err)
	}
	if _, resp, err := wsDial(t, ts.wsURL("wss", "/other"), "", pki.clientConfig(), "mqtt"); err == nil || resp == nil ||
		resp.StatusCode != http.StatusNotFound {
		t.Fatalf("wss /other: %v %v", resp, err)
	}
}

// TestWebSocketAnyOrigin: "*" lets every page connect.
func TestWebSocketAnyOrigin(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", WSAllowedOrigins: []string{"*"}})
	if _, resp, err := wsDial(t, ts.wsURL("ws", "/mqtt"), "https://evil.example", nil, "mqtt"); err != nil {
		t.Fatalf("%v %v", resp, err)
	}
}

// mqttPacket frames an MQTT packet (remaining length below 16384).
func mqttPacket(header byte, body []byte) []byte {
	n := len(body)
	if n < 128 {
		return append([]byte{header, byte(n)}, body...)
	}
	return append([]byte{header, byte(n%128) | 0x80, byte(n / 128)}, body...)
}

func subscribePacket(id uint16, filter string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(filter)))
	b = append(append(b, filter...), 0)
	return mqttPacket(0x82, b)
}

func wsWrite(t *testing.T, c *websocket.Conn, typ int, b []byte) {
	t.Helper()
	if err := c.WriteMessage(typ, b); err != nil {
		t.Fatal(err)
	}
}

// wsRead reads the next binary message.
func wsRead(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if typ != websocket.BinaryMessage {
		t.Fatalf("message type %d", typ)
	}
	return b
}

// wsClosed waits for the server to close c and returns the close code
// (0 when the connection ended without a close frame).
func wsClosed(t *testing.T, c *websocket.Conn, limit time.Duration) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v", limit)
		}
		return 0
	}
}

// TestWebSocketFraming: MQTT packets may be split across WebSocket
// messages and several may share one; the server sends binary messages,
// here one per packet (a backlog written at once shares one).
func TestWebSocketFraming(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0"})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	c, _, err := wsDial(t, ts.wsURL("ws", "/mqtt"), "", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	connect := (mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Keepalive: 30}.Encode())
	wsWrite(t, c, websocket.BinaryMessage, connect[:5])
	wsWrite(t, c, websocket.BinaryMessage, nil) // an empty message is no packet
	wsWrite(t, c, websocket.BinaryMessage, connect[5:])
	if b := wsRead(t, c); !bytes.Equal(b, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x", b)
	}
	// SUBSCRIBE and two PINGREQs in one message.
	wsWrite(t, c, websocket.BinaryMessage, append(subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch)), 0xc0, 0, 0xc0, 0))
	for _, want := range [][]byte{{0x90, 3, 0, 1, 0}, {0xd0, 0}, {0xd0, 0}} {
		if b := wsRead(t, c); !bytes.Equal(b, want) {
			t.Fatalf("got % x, want % x", b, want)
		}
	}
	pub := mustConnect(t, ts.addr, ts.device(pubsub(ch)))
	if err := pub.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, feedPayload("7")); err != nil {
		t.Fatal(err)
	}
	b := wsRead(t, c)
	topic := fmt.Sprintf("channels/%d/subscribe", ch)
	want := append(binary.BigEndian.AppendUint16(nil, uint16(len(topic))), topic...)
	want = mqttPacket(0x30, append(want, feedJSON(ch, 1, "7")...))
	if !bytes.Equal(b, want) {
		t.Fatalf("PUBLISH:\n% x\nwant\n% x", b, want)
	}
	// DISCONNECT: the server closes with a normal close frame.
	wsWrite(t, c, websocket.BinaryMessage, []byte{0xe0, 0})
	if code := wsClosed(t, c, 5*time.Second); code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d", code)
	}
}

// TestWebSocketRefusals: a text message, an oversized message, and no
// CONNECT within the timeout each end the connection.
func TestWebSocketRefusals(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true, ConnectTimeout: 300 * time.Millisecond})
	connect := (mqtttest.Connect{ClientID: "anon-ws", Clean: true}.Encode())

	c, _, err := wsDial(t, ts.wsURL("ws", "/mqtt"), "", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	wsWrite(t, c, websocket.TextMessage, connect)
	if code := wsClosed(t, c, 3*time.Second); code != websocket.CloseUnsupportedData {
		t.Fatalf("text message: close code %d", code)
	}

	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, WriteBufferSize: 2 << 20} // one frame per message
	c, _, err = d.Dial(ts.wsURL("ws", "/mqtt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wsWrite(t, c, websocket.BinaryMessage, connect)
	if b := wsRead(t, c); !bytes.Equal(b, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x", b)
	}
	// Default MaxPacketSize 64 KiB plus 64 KiB of slack: a message of
	// 1 MiB (in one frame) is refused before it is read.
	_ = c.WriteMessage(websocket.BinaryMessage, make([]byte, 1<<20))
	if code := wsClosed(t, c, 3*time.Second); code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized message: close code %d", code)
	}

	c, _, err = wsDial(t, ts.wsURL("ws", "/mqtt"), "", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wsClosed(t, c, 3*time.Second)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before the CONNECT timeout", d)
	}
}

// TestWebSocketStalledSubscriber: a WebSocket subscriber that stops
// reading is cut off after the write timeout, and publishers go on.
func TestWebSocketStalledSubscriber(t *testing.T) {
	// Entries of 8 values of 7000 characters: 200 of them (11 MB of JSON)
	// overflow any socket buffer.
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", WriteTimeout: 300 * time.Millisecond,
		Limits: channels.Limits{MaxPayload: 64000, MaxValueLen: 7000}})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	// A small receive buffer, fixed before connecting so that the kernel
	// does not grow it, keeps the test independent of socket tuning.
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, NetDial: (&net.Dialer{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) {
				err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
			}); cerr != nil {
				return cerr
			}
			return err
		},
	}).Dial}
	stalled, _, err := d.Dial(ts.wsURL("ws", "/mqtt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	wsWrite(t, stalled, websocket.BinaryMessage, mqtttest.Connect{ClientID: dev.Device.ClientID,
		Username: dev.Device.Username, Password: dev.Password, Clean: true}.Encode())
	wsRead(t, stalled)
	wsWrite(t, stalled, websocket.BinaryMessage, subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch)))
	wsRead(t, stalled)
	// From here on `stalled` does not read.
	pub := mustConnect(t, ts.addr, ts.device(pubsub(ch)))
	var payload strings.Builder
	for f := 1; f <= 8; f++ {
		fmt.Fprintf(&payload, "field%d=%s&", f, strings.Repeat(strconv.Itoa(f), 7000))
	}
	start := time.Now()
	for i := 1; i <= 200; i++ {
		if err := pub.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, payload.String()); err != nil {
			t.Fatalf("publish %d after %v: %v", i, time.Since(start), err)
		}
	}
	// 11 MB do not fit in the socket buffers: the server's write is
	// blocked now and times out while nobody reads. Reading after that
	// drains what was buffered, then fails.
	time.Sleep(time.Second)
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := stalled.ReadMessage(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("stalled subscriber still connected")
			}
			break
		}
	}
}

// TestCloseWithWebSocketClients: Close ends live ws and wss connections
// promptly with a going-away close frame.
func TestCloseWithWebSocketClients(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{Anonymous: true})
	var conns []*websocket.Conn
	for _, id := range []string{"ws", "wss"} {
		c, _, err := wsDial(t, ts.wsURL(id, "/mqtt"), "", pki.clientConfig(), "mqtt")
		if err != nil {
			t.Fatal(err)
		}
		wsWrite(t, c, websocket.BinaryMessage, (mqtttest.Connect{ClientID: "anon-" + id, Clean: true}.Encode()))
		wsRead(t, c)
		conns = append(conns, c)
	}
	// And one that has not sent CONNECT yet.
	if _, _, err := wsDial(t, ts.wsURL("ws", "/mqtt"), "", nil, "mqtt"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ts.stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for _, c := range conns {
		if code := wsClosed(t, c, 2*time.Second); code != websocket.CloseGoingAway && code != 0 {
			t.Fatalf("close code %d", code)
		}
	}
}

// TestMosquittoTLS drives MQTTS with Debian's mosquitto_sub and
// mosquitto_pub, verifying the server against the CA file.
func TestMosquittoTLS(t *testing.T) {
	pub, sub := requireTool(t, "mosquitto_pub"), requireTool(t, "mosquitto_sub")
	ts, pki, _, _ := startTLSServer(t, broker.Options{})
	ch := ts.channel(false)
	host, port := hostPort(t, ts.addrOf("mqtts"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := fmt.Sprintf("channels/%d/subscribe", ch)
	subCmd := exec.CommandContext(ctx, sub, append([]string{"-h", host, "-p", port, "--cafile", pki.caFile,
		"-V", "mqttv311", "-v", "-C", "1", "-t", topic}, credArgs(ts.device(pubsub(ch)))...)...)
	var out bytes.Buffer
	subCmd.Stdout, subCmd.Stderr = &out, &out
	if err := subCmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, ts, 1)
	// -L mqtts://host:port/topic, credentials apart: a password may hold
	// a '/'.
	run(t, pub, append([]string{"-L", fmt.Sprintf("mqtts://%s:%s/channels/%d/publish", host, port, ch),
		"--cafile", pki.caFile, "-q", "1", "-m", feedPayload("21.5")}, credArgs(ts.device(pubsub(ch)))...)...)
	if err := subCmd.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out.String())
	}
	if got, want := strings.TrimSpace(out.String()), topic+" "+feedJSON(ch, 1, "21.5"); got != want {
		t.Fatalf("mosquitto_sub printed\n%s\nwant\n%s", got, want)
	}

	// Without the CA the certificate is refused.
	cmd := exec.Command(pub, "-h", host, "-p", port, "--capath", t.TempDir(), "-t", "x", "-m", "1")
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("untrusted certificate accepted: %s", b)
	}
}

// requirePahoPython returns the Python that has Debian's paho-mqtt.
func requirePahoPython(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import paho.mqtt.client").Run(); err != nil {
		if os.Getenv("FEEDMQ_REQUIRE_CLIENTS") != "" {
			t.Fatalf("%s cannot import paho.mqtt.client (%v): run `make test-deps`", python, err)
		}
		t.Skipf("python3-paho-mqtt not installed (make test-deps installs it): %v", err)
	}
	return python
}

// TestPahoPythonWebSocket: Eclipse Paho for Python (which sends an Origin
// header naming the broker's own host) over ws and wss.
func TestPahoPythonWebSocket(t *testing.T) {
	python := requirePahoPython(t)
	ts, pki, _, _ := startTLSServer(t, broker.Options{})
	ch := ts.channel(false)
	for i, id := range []string{"ws", "wss"} {
		t.Run(id, func(t *testing.T) {
			dev := ts.device(pubsub(ch))
			_, port := hostPort(t, ts.addrOf(id))
			args := []string{"../testdata/clients/paho_ws.py", "--port", port,
				"--client-id", dev.Device.ClientID, "--username", dev.Device.Username, "--password=" + dev.Password,
				"--sub", fmt.Sprintf("channels/%d/subscribe", ch), "--pub", fmt.Sprintf("channels/%d/publish", ch),
				"--message", feedPayload(id)}
			if id == "wss" {
				args = append(args, "--cafile", pki.caFile)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, python, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("paho_ws.py: %v\n%s", err, out)
			}
			want := fmt.Sprintf("channels/%d/subscribe %s", ch, feedJSON(ch, i+1, id))
			if got := strings.TrimSpace(string(out)); got != want {
				t.Fatalf("paho_ws.py printed\n%s\nwant\n%s", got, want)
			}
		})
	}
}
