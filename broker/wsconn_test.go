package broker_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// rawWS is a WebSocket client without a library: the handshake by hand,
// frames written as given, so that tests can send what no library would,
// and hold thousands of connections with nothing but the socket.
type rawWS struct {
	net.Conn
	r *bufio.Reader
}

func dialRawWS(t testing.TB, addr string) *rawWS {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return &rawWS{Conn: c, r: wsUpgrade(t, c, addr, 256)}
}

// wsUpgrade asks for a WebSocket on c, with subprotocol "mqtt", and
// returns the reader of what follows the 101 (a buffer of bufSize). c is
// closed when the test ends.
func wsUpgrade(t testing.TB, c net.Conn, host string, bufSize int) *bufio.Reader {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET /mqtt HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(c, bufSize)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %s %v", resp.Status, resp.Header)
	}
	return r
}

// frame writes one masked frame with first byte b0.
func (c *rawWS) frame(t testing.TB, b0 byte, payload []byte) {
	t.Helper()
	if _, err := c.Write(broker.ClientFrame(b0, payload, [4]byte{0x11, 0x22, 0x33, 0x44})); err != nil {
		t.Fatal(err)
	}
}

// next reads the next frame the server sent: its first byte and payload.
func (c *rawWS) next(t testing.TB) (byte, []byte) {
	t.Helper()
	b0, p, err := readServerFrame(c.r)
	if err != nil {
		t.Fatal(err)
	}
	return b0, p
}

// closedWith reads until the server's close frame and returns its code;
// the socket must end after it.
func (c *rawWS) closedWith(t testing.TB) uint16 {
	t.Helper()
	for {
		b0, p := c.next(t)
		if b0 != 0x88 {
			continue
		}
		if len(p) < 2 {
			t.Fatalf("close frame without a code: % x", p)
		}
		if _, err := c.r.ReadByte(); err == nil {
			t.Fatal("bytes after the close frame")
		}
		return binary.BigEndian.Uint16(p)
	}
}

// TestWebSocketControlFrames: the broker decodes frames itself. Pings are
// answered with their payload, between the fragments of a message too; a
// client's close frame is echoed with its code; and every violation of
// the framing ends the connection with the close code RFC 6455 gives it.
func TestWebSocketControlFrames(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true})
	addr := ts.addrOf("ws")
	connect := mqtttest.Connect{ClientID: "raw-ws", Clean: true, Keepalive: 30}.Encode()

	c := dialRawWS(t, addr)
	c.frame(t, 0x02, connect[:3]) // a fragmented message with a ping inside
	c.frame(t, 0x89, []byte("are you there"))
	c.frame(t, 0x80, connect[3:])
	if b0, p := c.next(t); b0 != 0x8a || string(p) != "are you there" {
		t.Fatalf("pong: %#x %q", b0, p)
	}
	if b0, p := c.next(t); b0 != 0x82 || !bytes.Equal(p, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK: %#x % x", b0, p)
	}
	c.frame(t, 0x8a, []byte("unasked pong")) // ignored
	c.frame(t, 0x82, []byte{0xc0, 0})        // PINGREQ
	if b0, p := c.next(t); b0 != 0x82 || !bytes.Equal(p, []byte{0xd0, 0}) {
		t.Fatalf("PINGRESP: %#x % x", b0, p)
	}
	c.frame(t, 0x88, []byte{0x0f, 0xa0, 'b', 'y', 'e'}) // 4000
	if code := c.closedWith(t); code != 4000 {
		t.Fatalf("close answered with %d, want 4000", code)
	}

	for _, tc := range []struct {
		name    string
		b0      byte
		payload []byte
		masked  bool
		code    uint16
	}{
		{"unmasked", 0x82, []byte{0xc0, 0}, false, 1002},
		{"reserved opcode", 0x83, []byte{0xc0, 0}, true, 1002},
		{"reserved bit", 0xa2, []byte{0xc0, 0}, true, 1002},
		{"continuation without a message", 0x80, []byte{0xc0, 0}, true, 1002},
		{"fragmented ping", 0x09, []byte("x"), true, 1002},
		{"text", 0x81, []byte("{}"), true, 1003},
		{"close reason not UTF-8", 0x88, []byte{3, 0xe8, 0xff}, true, 1007},
		{"close code not for clients", 0x88, []byte{0x03, 0xee}, true, 1002}, // 1006
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRawWS(t, addr)
			c.frame(t, 0x82, connect)
			c.next(t) // CONNACK
			if tc.masked {
				c.frame(t, tc.b0, tc.payload)
			} else if _, err := c.Write(append([]byte{tc.b0, byte(len(tc.payload))}, tc.payload...)); err != nil {
				t.Fatal(err)
			}
			if code := c.closedWith(t); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
		})
	}
}

// TestWebSocketPingFromLibrary: gorilla's pings (as browsers and paho
// send keepalives of their own) are answered.
func TestWebSocketPingFromLibrary(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true})
	c, _, err := wsDial(t, ts.wsURL("ws", "/mqtt"), "", nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	pong := make(chan string, 1)
	c.SetPongHandler(func(s string) error { pong <- s; return nil })
	wsWrite(t, c, websocket.BinaryMessage, mqtttest.Connect{ClientID: "ping-ws", Clean: true}.Encode())
	wsRead(t, c)
	if err := c.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	go func() { _, _, _ = c.ReadMessage() }()
	select {
	case s := <-pong:
		if s != "p1" {
			t.Fatalf("pong %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

// TestIdleWebSocketConnections: an idle WebSocket connection costs what
// an idle TCP one does: one goroutine with a small stack, and no read or
// write buffer. Through net/http and gorilla it held net/http's
// goroutine (a 16 KiB stack under the handler), its request and two 4
// KiB buffers that gorilla kept, and mochi's read buffer: 32 KiB of RSS
// per connection at 10,000 (feedmq bench idle --addr ws://...).
func TestIdleWebSocketConnections(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true, Logger: slog.New(slog.DiscardHandler)})
	addr := ts.addrOf("ws")
	conns := make([]*rawWS, 0, 200)
	// The heap as over TCP (3-4 KiB), plus the test client's socket
	// objects, which are in this process too.
	idleCost(t, 200, 5<<10, func(i int) {
		c := dialRawWS(t, addr)
		c.frame(t, 0x82, mqtttest.Connect{ClientID: fmt.Sprintf("idle-ws-%d", i), Clean: true}.Encode())
		if b0, p := c.next(t); b0 != 0x82 || !bytes.Equal(p, []byte{0x20, 2, 0, 0}) {
			t.Fatalf("connect %d: %#x % x", i, b0, p)
		}
		_ = c.SetDeadline(time.Time{})
		c.r = nil // the client's buffer is not the server's cost
		conns = append(conns, c)
	})
	// Still served.
	c := conns[len(conns)-1]
	c.r = bufio.NewReader(c)
	c.frame(t, 0x82, []byte{0xc0, 0})
	if _, p := c.next(t); !bytes.Equal(p, []byte{0xd0, 0}) {
		t.Fatalf("PINGRESP % x", p)
	}
}
