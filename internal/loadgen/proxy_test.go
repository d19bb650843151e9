package loadgen

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// backend is a TCP server that greets each connection with its name and
// then echoes; kill closes its listener and every connection, as a node
// killed with SIGKILL does.
type backend struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startBackend(t *testing.T, name byte) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			go func() {
				if _, err := c.Write([]byte{name}); err == nil {
					_, _ = io.Copy(c, c)
				}
				c.Close()
			}()
		}
	}()
	t.Cleanup(b.kill)
	return b
}

func (b *backend) kill() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
}

// via connects through the proxy and returns the connection and the
// name of the backend that greeted it.
func via(t *testing.T, p *Proxy) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("no greeting through the proxy: %v", err)
	}
	return c, b[0]
}

// The proxy takes turns over its backends, knows which one each client
// went to, passes bytes both ways, sends a dead backend's clients away
// and new clients to the live ones, and closes clients no backend takes.
func TestProxy(t *testing.T) {
	a, b := startBackend(t, 'a'), startBackend(t, 'b')
	p, err := NewProxy([]string{a.ln.Addr().String(), b.ln.Addr().String()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var conns []net.Conn
	for i, want := range []byte("abab") {
		c, got := via(t, p)
		if got != want {
			t.Fatalf("connection %d went to %c, want %c", i, got, want)
		}
		if idx, ok := p.Backend(c.LocalAddr()); !ok || idx != int(want-'a') {
			t.Fatalf("connection %d: Backend = %d, %v; want %d", i, idx, ok, want-'a')
		}
		conns = append(conns, c)
	}
	// Bytes pass both ways.
	if _, err := conns[1].Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conns[1], buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the proxy: %q, %v", buf, err)
	}

	// Backend a dies: its clients see their connections end, b's not.
	a.kill()
	for _, i := range []int{0, 2} {
		if _, err := conns[i].Read(buf); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d of the dead backend reads %v, want EOF", i, err)
		}
	}
	if _, err := conns[3].Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conns[3], buf); err != nil || string(buf) != "pong" {
		t.Fatalf("b's client after a died: %q, %v", buf, err)
	}
	// New clients all reach b, whoever's turn it is.
	for i := range 3 {
		if _, got := via(t, p); got != 'b' {
			t.Fatalf("new connection %d went to %c with a dead", i, got)
		}
	}

	// No backend: the client's connection is closed.
	b.kill()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("with no backend the client reads %v, want EOF", err)
	}
	if _, ok := p.Backend(c.LocalAddr()); ok {
		t.Fatal("a client no backend took has a backend")
	}
}

// Close ends every connection through the proxy and stops accepting.
func TestProxyClose(t *testing.T) {
	a := startBackend(t, 'a')
	p, err := NewProxy([]string{a.ln.Addr().String()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := via(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after Close the client reads %v, want EOF", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy accepts after Close")
	}
	if _, err := NewProxy(nil, time.Second); err == nil {
		t.Fatal("a proxy without backends")
	}
}
