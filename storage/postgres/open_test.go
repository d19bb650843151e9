package postgres

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// A server that accepts connections and never answers does not hold Open
// forever: without connect_timeout in the URL a default bounds each
// attempt. The error names where it tried, not the password.
func TestOpenTimesOutOnSilentServer(t *testing.T) {
	old := defaultConnectTimeout
	defaultConnectTimeout = 200 * time.Millisecond
	t.Cleanup(func() { defaultConnectTimeout = old })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	done := make(chan error, 1)
	go func() {
		db, err := Open(context.Background(), fmt.Sprintf("postgres://feedmq:s3cret@127.0.0.1:%d/feeds?sslmode=disable", port), Options{})
		if err == nil {
			db.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d/feeds", port)) || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("Open: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Open still waits for a silent server")
	}
}
