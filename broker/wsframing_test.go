package broker_test

// Attacks on the broker's own WebSocket framing with a hand-written
// client: splits at every byte, over ws and wss, fragments with pings
// between them, concurrent writers, closes during floods.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// wsStream is an MQTT byte stream over a hand-written WebSocket client:
// each Write is sent as one message split into frames by split (with
// pings between the fragments when pings is set), frames written byte by
// byte when byteWrites is set; Read checks every server frame.
type wsStream struct {
	net.Conn
	r          *bufio.Reader
	rng        *rand.Rand
	split      func(n int) int // the next fragment's size (of n bytes left); nil: one frame
	pings      bool
	byteWrites bool

	wmu     sync.Mutex
	pending []byte // data of server frames not yet read
	pongs   atomic.Int32
	closed  []byte // the server's close frame payload, once read
}

func dialWSStream(t testing.TB, c net.Conn, host string) *wsStream {
	t.Helper()
	return &wsStream{Conn: c, r: wsUpgrade(t, c, host, 4096), rng: rand.New(rand.NewPCG(7, 9))}
}

func (s *wsStream) rawFrame(b0 byte, payload []byte) []byte {
	return broker.ClientFrame(b0, payload, [4]byte{byte(s.rng.Uint32()), byte(s.rng.Uint32()), byte(s.rng.Uint32()), byte(s.rng.Uint32())})
}

func (s *wsStream) send(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.byteWrites {
		_, err := s.Conn.Write(b)
		return err
	}
	for i := range b {
		if _, err := s.Conn.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (s *wsStream) Write(b []byte) (int, error) {
	var out []byte
	first := true
	left := b
	for {
		k := len(left)
		if s.split != nil {
			k = min(len(left), s.split(len(left)))
		}
		fin := k == len(left)
		var b0 byte
		if first {
			b0 = 0x02
		}
		if fin {
			b0 |= 0x80
		}
		out = append(out, s.rawFrame(b0, left[:k])...)
		left = left[k:]
		first = false
		if fin {
			break
		}
		if s.pings {
			out = append(out, s.rawFrame(0x89, []byte("p"))...)
		}
	}
	if err := s.send(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (s *wsStream) ping(payload []byte) error { return s.send(s.rawFrame(0x89, payload)) }

// Read returns the data of the server's binary frames, checking each.
func (s *wsStream) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.closed != nil {
			return 0, io.EOF
		}
		b0, payload, err := readServerFrame(s.r)
		if err != nil {
			return 0, err
		}
		switch b0 {
		case 0x82:
			s.pending = payload
		case 0x8a:
			s.pongs.Add(1)
		case 0x88:
			s.closed = append([]byte{}, payload...)
			if len(s.closed) == 0 {
				s.closed = []byte{}
			}
		default:
			return 0, fmt.Errorf("server frame with first byte %#x", b0)
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func readServerFrame(r io.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("masked server frame % x", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}

// TestWebSocketSplitsAndTLS: the same MQTT conversation over ws and wss,
// with every frame byte written on its own (wss: a TLS record a byte)
// and with messages split into random fragments with pings between them;
// a feed publish, then a 10 KB free-topic publish that passes to mochi
// whole (the big-packet path), then a feed publish behind it.
func TestWebSocketSplitsAndTLS(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{})
	ch := ts.channel(false)
	watcher := ts.device()
	ts.allow(watcher, "read home/#")
	w := rawDevice(t, ts.addr, watcher, 4)
	if code, err := w.Subscribe(1, "home/#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	for _, id := range []string{"ws", "wss"} {
		for _, mode := range []string{"bytes", "fragments", "tiny-fragments"} {
			t.Run(id+"/"+mode, func(t *testing.T) {
				dev := ts.device(pubsub(ch))
				ts.allow(dev, "write home/#")
				var nc net.Conn
				var err error
				if id == "wss" {
					nc, err = tls.Dial("tcp", ts.addrOf(id), pki.clientConfig())
				} else {
					nc, err = net.Dial("tcp", ts.addrOf(id))
				}
				if err != nil {
					t.Fatal(err)
				}
				s := dialWSStream(t, nc, ts.addrOf(id))
				switch mode {
				case "bytes":
					s.byteWrites = true
				case "fragments":
					s.pings = true
					s.split = func(n int) int { return 1 + s.rng.IntN(min(n, 3000)) }
				case "tiny-fragments":
					s.pings = true
					s.split = func(n int) int { return 1 + s.rng.IntN(3) }
				}
				c := mqtttest.Wrap(s)
				deviceConnect(t, c, dev, 4)
				if _, err := c.Write(subscribeThenPublish(ch, "1")); err != nil {
					t.Fatal(err)
				}
				expectSubscribedEntry(t, c, ch, 2, "1")
				big := strings.Repeat("y", 10_000)
				b := append(pubPacket("home/big", 0, 0, false, big), pubPacket(fmt.Sprintf("channels/%d/publish", ch), 1, 3, false, "field1=2")...)
				if mode == "bytes" {
					b = b[:len(b)] // one message, written a byte at a time
				}
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
				if topic, payload, err := w.ReadPublish(); err != nil || topic != "home/big" || string(payload) != big {
					t.Fatalf("watcher got %s, %d bytes, %v", topic, len(payload), err)
				}
				acked, delivered := false, false
				for !acked || !delivered {
					typ, body, err := c.ReadPacket()
					if err != nil {
						t.Fatalf("acked %v delivered %v: %v", acked, delivered, err)
					}
					switch {
					case typ == mqtttest.PUBACK && binary.BigEndian.Uint16(body) == 3:
						acked = true
					case typ == mqtttest.PUBLISH && bytes.Contains(body, []byte(`"field1":"2"`)):
						delivered = true
					default:
						t.Fatalf("unexpected type %d % x", typ, body)
					}
				}
				if s.pings && s.pongs.Load() == 0 {
					t.Error("no pong read")
				}
			})
		}
	}
}

// TestWebSocketTextBeforeConnect: a text message as the first message is
// refused with close code 1003, as after CONNECT.
func TestWebSocketTextBeforeConnect(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true})
	c := dialRawWS(t, ts.addrOf("ws"))
	c.frame(t, 0x81, []byte("hello"))
	if code := c.closedWith(t); code != 1003 {
		t.Fatalf("close code %d, want 1003", code)
	}
}

// TestWebSocketPingBeforeConnect: a ping before CONNECT is answered, and
// the CONNECT after it is served.
func TestWebSocketPingBeforeConnect(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true})
	c := dialRawWS(t, ts.addrOf("ws"))
	c.frame(t, 0x89, []byte("early"))
	if b0, p := c.next(t); b0 != 0x8a || string(p) != "early" {
		t.Fatalf("pong %#x %q", b0, p)
	}
	c.frame(t, 0x82, mqtttest.Connect{ClientID: "early-ping", Clean: true}.Encode())
	if b0, p := c.next(t); b0 != 0x82 || !bytes.Equal(p, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %#x % x", b0, p)
	}
}

// TestWebSocketOversizedBeforeConnect: a message over the limit as the
// first frame is refused with 1009.
func TestWebSocketOversizedBeforeConnect(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true})
	c := dialRawWS(t, ts.addrOf("ws"))
	hdr := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4} // 1 MiB
	if _, err := c.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if code := c.closedWith(t); code != 1009 {
		t.Fatalf("close code %d, want 1009", code)
	}
}

// TestWebSocketConcurrentWriters: deliveries (the fan-out's sender and
// mochi's writer) and pongs (the reader) are written at once to a ws
// subscriber; every frame it reads is whole, and every delivery and
// pong arrives.
func TestWebSocketConcurrentWriters(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Logger: quietLogger()})
	ch := ts.channel(false)
	sub := ts.device(pubsub(ch))
	nc, err := net.Dial("tcp", ts.addrOf("ws"))
	if err != nil {
		t.Fatal(err)
	}
	s := dialWSStream(t, nc, ts.addrOf("ws"))
	_ = nc.SetDeadline(time.Time{})
	c := mqtttest.Wrap(s)
	deviceConnect(t, c, sub, 4)
	if code, err := c.Subscribe(1, fmt.Sprintf("channels/%d/subscribe", ch)); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	const pubs, npings = 4, 300
	const each = 60
	var wg sync.WaitGroup
	for range pubs {
		dev := ts.device(pubsub(ch))
		p := rawDevice(t, ts.addr, dev, 4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := p.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, uint16(i+1), []byte("field1="+strings.Repeat("z", 1+i*37%250))); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := p.ReadPuback(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range npings {
			if err := s.ping([]byte(fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got := 0; got < pubs*each; got++ {
		if _, _, err := c.ReadPublish(); err != nil {
			t.Fatalf("after %d deliveries: %v", got, err)
		}
	}
	wg.Wait()
	// A PINGREQ's answer comes after every pong of the pings before it.
	if _, err := c.Write([]byte{0xc0, 0}); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := c.ReadPacket(); err != nil || typ != mqtttest.PINGRESP {
		t.Fatalf("type %d %v", typ, err)
	}
	if n := s.pongs.Load(); n != npings {
		t.Fatalf("%d pongs, want %d", n, npings)
	}
}

// TestWebSocketRevoke: revoking a device connected over ws (a subscriber
// taking deliveries) ends it with a close frame and nothing after it.
func TestWebSocketRevoke(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0"})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	c := dialRawWS(t, ts.addrOf("ws"))
	c.frame(t, 0x82, mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Keepalive: 30}.Encode())
	if b0, p := c.next(t); b0 != 0x82 || !bytes.Equal(p, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %#x % x", b0, p)
	}
	c.frame(t, 0x82, subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch)))
	c.next(t)
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	for i := range 20 {
		if err := pub.Publish(fmt.Sprintf("channels/%d/publish", ch), 0, 0, []byte(fmt.Sprintf("field1=%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	ts.srv.Revoke(dev.Device.ID)
	if code := c.closedWith(t); code != 1000 {
		t.Fatalf("revoked: close code %d, want 1000", code)
	}
}

// TestWebSocketPacketTooLarge: as TestPacketTooLarge, over ws: an MQTT 5
// PUBLISH declaring 70,000 bytes (the first 30,000 sent, in a frame
// that is not over) is answered with DISCONNECT 0x95 and a close frame.
func TestWebSocketPacketTooLarge(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true})
	for i := range 20 {
		nc, err := net.Dial("tcp", ts.addrOf("ws"))
		if err != nil {
			t.Fatal(err)
		}
		s := dialWSStream(t, nc, ts.addrOf("ws"))
		c := mqtttest.Wrap(s)
		if code, _ := connack5(t, c, mqtttest.Connect{ClientID: fmt.Sprint("big", i), Clean: true}); code != 0 {
			t.Fatalf("CONNACK %#x", code)
		}
		pk := append(mqtttest.Packet(0x30, make([]byte, 70000))[:4], make([]byte, 30000)...)
		if _, err := c.Write(pk); err != nil {
			t.Fatal(err)
		}
		if code := expectDisconnect(t, c); code != 0x95 {
			t.Fatalf("DISCONNECT %#x, want 0x95", code)
		}
		if _, _, err := c.ReadPacket(); !errors.Is(err, io.EOF) || s.closed == nil {
			t.Fatalf("after DISCONNECT: %v, close frame % x", err, s.closed)
		}
		nc.Close()
	}
}

// TestWebSocketCloseDuringFlood: a ws subscriber taking a flood of
// deliveries sends its close frame: the server's close comes once, last,
// with the client's code, and nothing follows it.
func TestWebSocketCloseDuringFlood(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Logger: quietLogger()})
	ch := ts.channel(false)
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := pub.Publish(fmt.Sprintf("channels/%d/publish", ch), 0, 0, []byte(fmt.Sprintf("field1=%d", i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for round := range 30 {
		dev := ts.device(pubsub(ch))
		c := dialRawWS(t, ts.addrOf("ws"))
		c.frame(t, 0x82, mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
			Password: dev.Password, Clean: true, Keepalive: 30}.Encode())
		c.next(t)
		c.frame(t, 0x82, subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch)))
		for range 1 + round%7 {
			c.next(t)
		}
		c.frame(t, 0x89, []byte("last ping"))
		c.frame(t, 0x88, []byte{0x0f, 0xa1}) // 4001
		pongs := 0
		for {
			b0, p := c.next(t)
			if b0 == 0x8a {
				pongs++
				continue
			}
			if b0 == 0x88 {
				if len(p) != 2 || binary.BigEndian.Uint16(p) != 4001 {
					t.Fatalf("round %d: close % x", round, p)
				}
				break
			}
			if b0 != 0x82 {
				t.Fatalf("round %d: frame %#x", round, b0)
			}
		}
		if pongs != 1 {
			t.Fatalf("round %d: %d pongs", round, pongs)
		}
		if _, err := c.r.ReadByte(); err == nil {
			t.Fatalf("round %d: bytes after the close frame", round)
		}
	}
}

// TestWebSocketCloseCodesRegistered: close codes IANA registered after RFC
// 6455, 1012 (service restart), 1013 (try again later) and 1014 (bad
// gateway), are valid in a close frame, and echoed like the others.
func TestWebSocketCloseCodesRegistered(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0", Anonymous: true})
	for _, code := range []uint16{1012, 1013, 1014} {
		c := dialRawWS(t, ts.addrOf("ws"))
		c.frame(t, 0x82, mqtttest.Connect{ClientID: fmt.Sprint("code-", code), Clean: true}.Encode())
		c.next(t)
		c.frame(t, 0x88, binary.BigEndian.AppendUint16(nil, code))
		if got := c.closedWith(t); got != code {
			t.Errorf("close %d answered with %d", code, got)
		}
	}
}
