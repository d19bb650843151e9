package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/feedmq/feedmq/cluster"
)

// ClusterTLSConfig names the files of TLS to the NATS servers: the CA
// that signed their certificates, and this node's client certificate
// and key when the servers ask for one. Any of them turns TLS on.
type ClusterTLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// defaultClusterName is cluster_name's default: the NATS subject prefix.
const defaultClusterName = "feedmq"

// maxClusterServers bounds the NATS servers cluster: lists.
const maxClusterServers = 32

// maxCredsFile bounds cluster_credentials: a NATS .creds file is a JWT
// and a seed, a few kilobytes.
const maxCredsFile = 64 << 10

// validateCluster checks cluster, cluster_name, node_name, cluster_tls
// and cluster_credentials. No message repeats a URL's user or password.
func (c *Config) validateCluster() error {
	if err := cluster.ValidName(c.ClusterName); err != nil {
		return fmt.Errorf("cluster_name: %q: %w", clip(c.ClusterName), err)
	}
	if c.NodeName != "" {
		if err := cluster.ValidName(c.NodeName); err != nil {
			return fmt.Errorf("node_name: %q: %w", clip(c.NodeName), err)
		}
	} else if c.usesPostgres() && c.nodeName() == "" {
		return errors.New("node_name: the host name gives no usable node name; set node_name (letters, digits, '-' and '_')")
	}
	t := c.ClusterTLS
	if c.Cluster == "" {
		switch {
		case t != ClusterTLSConfig{}:
			return errors.New("cluster_tls: is set but cluster is not; set cluster to the NATS servers' URLs, or remove cluster_tls")
		case c.ClusterCredentials != "":
			return errors.New("cluster_credentials: is set but cluster is not; set cluster to the NATS servers' URLs, or remove cluster_credentials")
		}
		return nil
	}
	if !c.usesPostgres() {
		return errors.New("cluster: needs a shared database: set storage to a postgres:// URL (the database file in data_dir belongs to one node)")
	}
	if _, err := clusterURLs(c.Cluster); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if (t.Cert == "") != (t.Key == "") {
		return errors.New("cluster_tls: cert and key go together; set both cluster_tls.cert and cluster_tls.key, or neither")
	}
	if t.CA != "" {
		b, err := readSmallFile(t.CA, 1<<20)
		if err != nil {
			return fmt.Errorf("cluster_tls.ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("cluster_tls.ca: %s holds no PEM certificate", t.CA)
		}
	}
	if t.Cert != "" {
		for _, f := range []string{t.Cert, t.Key} {
			if err := notSpecialFile(f); err != nil {
				return fmt.Errorf("cluster_tls.cert, cluster_tls.key: %w", err)
			}
		}
		if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
			return fmt.Errorf("cluster_tls.cert, cluster_tls.key: %w", err)
		}
	}
	if f := c.ClusterCredentials; f != "" {
		if err := checkCredsFile(f); err != nil {
			return fmt.Errorf("cluster_credentials: %w", err)
		}
	}
	return nil
}

// clusterURLs splits and checks the NATS server list: comma-separated
// nats://, tls://, ws:// or wss:// URLs with a host. An error says which
// one is wrong by position and host, never by its user or password.
func clusterURLs(s string) ([]string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxClusterServers {
		return nil, fmt.Errorf("lists %d servers; at most %d", len(parts), maxClusterServers)
	}
	out := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		n := i + 1
		if p == "" {
			return nil, fmt.Errorf("server %d is empty; list NATS URLs separated by commas, such as nats://n1:4222,nats://n2:4222", n)
		}
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("server %d is not a URL such as nats://host:4222 (are special characters in the user name or password percent-encoded?)", n)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return nil, fmt.Errorf("server %d (%s): scheme %q is not nats, tls, ws or wss", n, clip(u.Host), clip(u.Scheme))
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("server %d: no host name", n)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("server %d (%s): a NATS URL has no path or parameters", n, clip(u.Host))
		}
		out = append(out, p)
	}
	return out, nil
}

// clip bounds a value a user wrote that an error quotes.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// notSpecialFile refuses a path that exists and is not a regular file.
// It is looked at before anything opens it: opening a FIFO waits for a
// writer, and serve (or config check) with it.
func notSpecialFile(path string) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// readSmallFile reads a regular file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	if err := notSpecialFile(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// checkCredsFile checks a NATS .creds file: readable by this user but
// not by others (it holds the user's secret seed), with a user JWT and
// a seed. What is in it is never quoted.
func checkCredsFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	if fi.Mode().IsRegular() && fi.Mode().Perm()&0o007 != 0 {
		return fmt.Errorf("%s is open to other users (mode %#o) and holds a secret seed; chmod o-rwx %s", path, fi.Mode().Perm(), path)
	}
	b, err := readSmallFile(path, maxCredsFile)
	if err != nil {
		return err
	}
	defer clear(b)
	if _, err := nkeys.ParseDecoratedJWT(b); err != nil {
		return fmt.Errorf("%s is not a NATS credentials file (no user JWT)", path)
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return fmt.Errorf("%s is not a NATS credentials file (no user seed)", path)
	}
	kp.Wipe()
	return nil
}

// nodeName is node_name, or else the host name in the cluster's alphabet
// (other characters become '-'), "" when that leaves nothing.
func (c *Config) nodeName() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return sanitizeNodeName(h)
}

// sanitizeNodeName maps a host name into the cluster's alphabet.
func sanitizeNodeName(h string) string {
	var b strings.Builder
	for i := 0; i < len(h) && b.Len() < cluster.MaxNameLen; i++ {
		switch ch := h[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
			b.WriteByte(ch)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if cluster.ValidName(s) != nil {
		return ""
	}
	return s
}

// natsOptions are the NATS connection's TLS and credentials.
func (c *Config) natsOptions() []nats.Option {
	var o []nats.Option
	t := c.ClusterTLS
	if t.CA != "" {
		o = append(o, nats.RootCAs(t.CA))
	}
	if t.Cert != "" {
		o = append(o, nats.ClientCert(t.Cert, t.Key))
	}
	if c.ClusterCredentials != "" {
		o = append(o, nats.UserCredentials(c.ClusterCredentials))
	}
	return o
}
