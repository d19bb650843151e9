package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A file key of the cluster or storage settings that names a FIFO (a
// mistake, or a hostile local path) must be refused as not a regular
// file at once: opening a FIFO waits for a writer, and serve or config
// check would hang with it, before anything could say what is wrong.
func TestClusterConfigFileKeysRefuseFIFO(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	const pg = "postgres://feedmq@127.0.0.1:5432/feedmq"
	cases := []struct {
		name string
		set  func(c *Config)
		want string
	}{
		{"cluster_tls.ca", func(c *Config) { c.ClusterTLS.CA = fifo }, "cluster_tls.ca: " + fifo + " is not a regular file"},
		{"cluster_tls.cert", func(c *Config) { c.ClusterTLS.Cert, c.ClusterTLS.Key = fifo, key }, fifo + " is not a regular file"},
		{"cluster_tls.key", func(c *Config) { c.ClusterTLS.Cert, c.ClusterTLS.Key = cert, fifo }, fifo + " is not a regular file"},
		{"cluster_credentials", func(c *Config) { c.ClusterCredentials = fifo }, "cluster_credentials: " + fifo + " is not a regular file"},
		{"sslrootcert", func(c *Config) { c.Storage = pg + "?sslmode=verify-full&sslrootcert=" + fifo }, fifo + " is not a regular file"},
		{"sslcert", func(c *Config) { c.Storage = pg + "?sslmode=require&sslcert=" + fifo + "&sslkey=" + key }, fifo + " is not a regular file"},
		{"tls.cert", func(c *Config) { c.TLS.Cert, c.TLS.Key = fifo, key }, "tls.cert: " + fifo + " is not a regular file"},
		{"tls.key", func(c *Config) { c.TLS.Cert, c.TLS.Key = cert, fifo }, "tls.key: " + fifo + " is not a regular file"},
		{"passfile", func(c *Config) { c.Storage = pg + "?passfile=" + fifo }, fifo + " is not a regular file"},
		{"sslkey", func(c *Config) { c.Storage = pg + "?sslmode=require&sslcert=" + cert + "&sslkey=" + fifo }, fifo + " is not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Storage, c.Cluster = pg, "nats://127.0.0.1:4222"
			tc.set(&c)
			done := make(chan error, 1)
			go func() { done <- c.Validate() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				// Let the blocked open return, so the test ends.
				if w, werr := os.OpenFile(fifo, os.O_WRONLY, 0); werr == nil {
					w.Close()
				}
				t.Fatalf("Validate still waits on the FIFO after 10 s")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
