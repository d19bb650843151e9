package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// writeTestCreds writes a NATS credentials file (a user JWT signed by an
// account, and the user's seed) with mode perm.
func writeTestCreds(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	akp, _ := nkeys.CreateAccount()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	claims := jwt.NewUserClaims(upub)
	tok, err := claims.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, creds, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// writeTestCert writes a self-signed certificate and its key (PEM).
func writeTestCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, key, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	return cert, key
}

// Every misconfiguration of the cluster keys is refused with an error
// naming its key, and none repeats a password given in a URL.
func TestClusterConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	creds, openCreds, notCreds := filepath.Join(dir, "ok.creds"), filepath.Join(dir, "open.creds"), filepath.Join(dir, "not.creds")
	writeTestCreds(t, creds, 0o600)
	writeTestCreds(t, openCreds, 0o644)
	writeFile(t, notCreds, "hello\n")
	if err := os.Chmod(notCreds, 0o600); err != nil {
		t.Fatal(err)
	}
	const pg = "postgres://feedmq@127.0.0.1:5432/feedmq"
	long := strings.Repeat("n", 65)
	cases := []struct {
		name string
		set  func(c *Config)
		want string // "" for valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"cluster on postgres", func(c *Config) { c.Storage, c.Cluster = pg, "nats://127.0.0.1:4222, nats://127.0.0.1:4223" }, ""},
		{"all security", func(c *Config) {
			c.Storage, c.Cluster = pg, "tls://u:p@127.0.0.1:4222"
			c.ClusterTLS = ClusterTLSConfig{CA: cert, Cert: cert, Key: key}
			c.ClusterCredentials = creds
		}, ""},
		{"lone postgres node name", func(c *Config) { c.Storage, c.NodeName = pg, "n1" }, ""},
		{"cluster without postgres", func(c *Config) { c.Cluster = "nats://127.0.0.1:4222" }, "cluster: needs a shared database: set storage to a postgres:// URL"},
		{"empty server", func(c *Config) { c.Storage, c.Cluster = pg, "nats://a:4222,,nats://b:4222" }, "cluster: server 2 is empty"},
		{"bad scheme", func(c *Config) { c.Storage, c.Cluster = pg, "http://a:4222" }, `cluster: server 1 (a:4222): scheme "http" is not nats`},
		{"no host", func(c *Config) { c.Storage, c.Cluster = pg, "nats://" }, "cluster: server 1 is not a URL"},
		{"not a URL", func(c *Config) { c.Storage, c.Cluster = pg, "n1:4222" }, "cluster: server 1"},
		{"path", func(c *Config) { c.Storage, c.Cluster = pg, "nats://a:4222/x" }, "cluster: server 1 (a:4222): a NATS URL has no path"},
		{"password kept out", func(c *Config) { c.Storage, c.Cluster = pg, "nats://user:s3cret@a:4222,ftp://user:s3cret@b:1" }, "cluster: server 2 (b:1)"},
		{"too many", func(c *Config) { c.Storage, c.Cluster = pg, strings.Repeat("nats://a:1,", 40)+"nats://a:1" }, "cluster: lists 41 servers; at most 32"},
		{"bad cluster name", func(c *Config) { c.ClusterName = "a.b" }, `cluster_name: "a.b": character '.' not allowed`},
		{"wildcard cluster name", func(c *Config) { c.ClusterName = ">" }, `cluster_name: ">"`},
		{"empty cluster name", func(c *Config) { c.ClusterName = "" }, "cluster_name: \"\": empty"},
		{"long node name", func(c *Config) { c.Storage, c.NodeName = pg, long }, "node_name: \"" + long[:64] + "...\": longer than 64 bytes"},
		{"node name space", func(c *Config) { c.NodeName = "n 1" }, `node_name: "n 1": character ' ' not allowed`},
		{"tls without cluster", func(c *Config) { c.ClusterTLS.CA = cert }, "cluster_tls: is set but cluster is not"},
		{"creds without cluster", func(c *Config) { c.ClusterCredentials = creds }, "cluster_credentials: is set but cluster is not"},
		{"cert without key", func(c *Config) { c.Storage, c.Cluster, c.ClusterTLS.Cert = pg, "nats://a:1", cert }, "cluster_tls: cert and key go together"},
		{"ca missing", func(c *Config) {
			c.Storage, c.Cluster, c.ClusterTLS.CA = pg, "nats://a:1", filepath.Join(dir, "nope.pem")
		}, "cluster_tls.ca: cannot read " + filepath.Join(dir, "nope.pem")},
		{"ca not PEM", func(c *Config) { c.Storage, c.Cluster, c.ClusterTLS.CA = pg, "nats://a:1", notCreds }, "cluster_tls.ca: " + notCreds + " holds no PEM certificate"},
		{"ca a directory", func(c *Config) { c.Storage, c.Cluster, c.ClusterTLS.CA = pg, "nats://a:1", dir }, "cluster_tls.ca: " + dir + " is not a regular file"},
		{"key mismatch", func(c *Config) {
			c.Storage, c.Cluster, c.ClusterTLS.Cert, c.ClusterTLS.Key = pg, "nats://a:1", cert, notCreds
		}, "cluster_tls.cert, cluster_tls.key:"},
		{"creds missing", func(c *Config) {
			c.Storage, c.Cluster, c.ClusterCredentials = pg, "nats://a:1", filepath.Join(dir, "no.creds")
		}, "cluster_credentials: cannot read " + filepath.Join(dir, "no.creds")},
		{"creds open", func(c *Config) { c.Storage, c.Cluster, c.ClusterCredentials = pg, "nats://a:1", openCreds }, "cluster_credentials: " + openCreds + " is open to other users"},
		{"creds garbage", func(c *Config) { c.Storage, c.Cluster, c.ClusterCredentials = pg, "nats://a:1", notCreds }, "cluster_credentials: " + notCreds + " is not a NATS credentials file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.set(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v; want an error containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("the error repeats a password: %v", err)
			}
		})
	}
}

// The host name becomes a node name in the cluster's alphabet.
func TestSanitizeNodeName(t *testing.T) {
	for in, want := range map[string]string{
		"web1":                  "web1",
		"web1.example.com":      "web1-example-com",
		"Host_2":                "Host_2",
		".":                     "",
		"":                      "",
		"ünï":                   "n",
		"üï":                    "",
		"a b":                   "a-b",
		strings.Repeat("x", 80): strings.Repeat("x", 64),
	} {
		if got := sanitizeNodeName(in); got != want {
			t.Errorf("sanitizeNodeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzClusterURLs feeds arbitrary server lists to the cluster: parser:
// never a panic; what it accepts are URLs of a NATS scheme with a host;
// an error never repeats a URL's password.
func FuzzClusterURLs(f *testing.F) {
	for _, s := range []string{
		"nats://127.0.0.1:4222", "nats://a:1, tls://u:p@b:2,ws://c,wss://d:443",
		"nats://user:s3cret@h:1,ftp://user:s3cret@h:2", ",", "nats://", "nats://h/x?y#z",
		"nats://[::1]:4222", "nats://u:p%zz@h:1", "n1:4222",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		urls, err := clusterURLs(s)
		if err != nil {
			for _, p := range strings.Split(s, ",") {
				if u, perr := url.Parse(strings.TrimSpace(p)); perr == nil && u.User != nil {
					// A host never holds '@': user info followed by it is a leak.
					if _, ok := u.User.Password(); ok && strings.Contains(err.Error(), u.User.String()+"@") {
						t.Fatalf("error %q repeats the user info of %q", err, p)
					}
				}
			}
			return
		}
		if len(urls) == 0 || len(urls) > maxClusterServers {
			t.Fatalf("accepted %d URLs from %q", len(urls), s)
		}
		for _, x := range urls {
			u, err := url.Parse(x)
			if err != nil || u.Hostname() == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
				t.Fatalf("accepted %q from %q", x, s)
			}
		}
	})
}
