package broker

import (
	"bytes"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, the server's
// wrapped as the listener wraps plain connections.
func tcpPair(t *testing.T) (*conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	c := newConn(server, &Server{opts: Options{MaxPacketSize: 1 << 20}}, nil)
	if !c.lazy || c.raw == nil {
		t.Fatal("a loopback TCP connection is not a *net.TCPConn")
	}
	return c, client
}

type readResult struct {
	n   int
	err error
	at  time.Time
}

func readAsync(c *conn) chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		n, err := c.Read(make([]byte, 16))
		ch <- readResult{n, err, time.Now()}
	}()
	return ch
}

func await(t *testing.T, ch chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("Read did not return")
		return readResult{}
	}
}

// TestLazyDeadlineMovedLater: a deadline moved later while the earlier
// one is armed does not end a read at the earlier one.
func TestLazyDeadlineMovedLater(t *testing.T) {
	c, client := tcpPair(t)
	early := time.Now().Add(5 * time.Millisecond)
	if err := c.SetDeadline(early); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ch := readAsync(c)
	for time.Now().Before(early.Add(50 * time.Millisecond)) {
		time.Sleep(10 * time.Millisecond) // until the early deadline is well past
	}
	if _, err := client.Write([]byte{0xC0, 0}); err != nil { // PINGREQ
		t.Fatal(err)
	}
	if r := await(t, ch); r.err != nil || r.n != 2 {
		t.Fatalf("Read: %d bytes, %v; want the 2 written after the early deadline", r.n, r.err)
	}
}

// TestLazyDeadlineHonoured: a read still times out at the last deadline
// set, whether it was moved earlier, later, or not at all; and a zero
// deadline removes it.
func TestLazyDeadlineHonoured(t *testing.T) {
	for _, tt := range []struct {
		name  string
		first time.Duration // 0: no earlier deadline
	}{
		{"set once", 0},
		{"moved earlier", time.Hour},
		{"moved later", 5 * time.Millisecond},
	} {
		c, _ := tcpPair(t)
		if tt.first > 0 {
			if err := c.SetDeadline(time.Now().Add(tt.first)); err != nil {
				t.Fatal(err)
			}
		}
		last := time.Now().Add(60 * time.Millisecond)
		if err := c.SetDeadline(last); err != nil {
			t.Fatal(err)
		}
		r := await(t, readAsync(c))
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: Read: %d bytes, %v; want a timeout", tt.name, r.n, r.err)
		}
		if r.at.Before(last) {
			t.Fatalf("%s: timed out %v before the deadline", tt.name, last.Sub(r.at))
		}
	}

	c, client := tcpPair(t)
	if err := c.SetDeadline(time.Now().Add(5 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	ch := readAsync(c)
	for deadline := time.Now().Add(60 * time.Millisecond); time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // past the removed deadline
	}
	if _, err := client.Write([]byte{0xC0, 0}); err != nil {
		t.Fatal(err)
	}
	if r := await(t, ch); r.err != nil || r.n != 2 {
		t.Fatalf("no deadline: Read: %d bytes, %v; want 2", r.n, r.err)
	}
}

// TestConnReadEmpty: a plain TCP connection notes whether its last read
// left the socket empty (a read shorter than its buffer), through fill
// and through rawRead alike; the read path marks a feed publish that
// ends such a read (channels.CallerIdle).
func TestConnReadEmpty(t *testing.T) {
	c, client := tcpPair(t)
	// 5000 bytes of PINGREQs, all in the socket before the first read.
	data := bytes.Repeat([]byte{0xC0, 0x00}, 2500)
	if _, err := client.Write(data); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, c, len(data))
	b, n, err := c.fill()
	if err != nil || n != readBufSize {
		t.Fatalf("fill: %d bytes, %v; want a full buffer (%d)", n, err, readBufSize)
	}
	readBufs.Put(b)
	if c.readEmpty() {
		t.Error("a full read said the socket was left empty")
	}
	p := make([]byte, 100)
	if n, err := c.rawRead(p); n != len(p) || err != nil {
		t.Fatalf("rawRead: %d, %v", n, err)
	}
	if c.readEmpty() {
		t.Error("a full rawRead said the socket was left empty")
	}
	rest := len(data) - readBufSize - len(p)
	p = make([]byte, 2*rest)
	if n, err := c.rawRead(p); n != rest || err != nil {
		t.Fatalf("rawRead: %d, %v; want the %d left", n, err, rest)
	}
	if !c.readEmpty() {
		t.Error("a short rawRead did not say the socket was left empty")
	}
	if _, err := client.Write(data[:10]); err != nil {
		t.Fatal(err)
	}
	b, n, err = c.fill()
	if err != nil || n != 10 {
		t.Fatalf("fill: %d bytes, %v; want 10", n, err)
	}
	readBufs.Put(b)
	if !c.readEmpty() {
		t.Error("a short fill did not say the socket was left empty")
	}
}

// waitReadable waits until c's socket holds n bytes to read.
func waitReadable(t *testing.T, c *conn, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var queued int
		peek := make([]byte, n)
		_ = c.raw.Control(func(fd uintptr) {
			queued, _, _ = syscall.Recvfrom(int(fd), peek, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the socket holds %d bytes, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}
