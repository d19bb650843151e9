package broker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// publish5 encodes an MQTT 5 PUBLISH, with a Topic Alias property when
// alias is not 0.
func publish5(topic string, alias uint16, qos byte, id uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	if alias > 0 {
		b = append(b, 3, 0x23)
		b = binary.BigEndian.AppendUint16(b, alias)
	} else {
		b = append(b, 0)
	}
	return mqtttest.Packet(0x30|qos<<1, append(b, payload...))
}

// expectDisconnect reads until the server's DISCONNECT and returns its
// reason code; it fails when the connection ends without one.
func expectDisconnect(t *testing.T, c *mqtttest.Conn) byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		typ, body, err := c.ReadPacket()
		if err != nil {
			t.Fatalf("connection ended without DISCONNECT: %v", err)
		}
		if typ == mqtttest.DISCONNECT {
			if len(body) == 0 {
				return 0
			}
			return body[0]
		}
	}
}

// connack5 connects over MQTT 5 and returns the CONNACK's properties by
// identifier (values raw, as encoded).
func connack5(t *testing.T, c *mqtttest.Conn, p mqtttest.Connect) (code byte, props map[byte][]byte) {
	t.Helper()
	p.Version = 5
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(p.Encode()); err != nil {
		t.Fatal(err)
	}
	typ, body, err := c.ReadPacket()
	if err != nil || typ != mqtttest.CONNACK || len(body) < 3 {
		t.Fatalf("CONNACK: type %d %x %v", typ, body, err)
	}
	// The connection's version is set by Connect; this one reads
	// PUBLISHes only as raw packets.
	props = map[byte][]byte{}
	n, used := 0, 0
	for shift := 0; ; shift += 7 {
		d := body[2+used]
		used++
		n |= int(d&0x7f) << shift
		if d&0x80 == 0 {
			break
		}
	}
	ps := body[2+used:]
	if len(ps) != n {
		t.Fatalf("CONNACK properties: length %d, have %d bytes", n, len(ps))
	}
	size := map[byte]int{0x11: 4, 0x13: 2, 0x21: 2, 0x22: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}
	for len(ps) > 0 {
		id := ps[0]
		ps = ps[1:]
		l, ok := size[id]
		if !ok { // strings and binary data
			l = 2 + int(binary.BigEndian.Uint16(ps))
		}
		props[id], ps = ps[:l], ps[l:]
	}
	return body[1], props
}

// TestTopicAliasLimits: CONNACK grants 16 topic aliases, aliases up to it
// work, one beyond it is a protocol error (DISCONNECT 0x94), and a topic
// longer than any feedmq topic is refused (PUBACK 0x90) and never stored
// as an alias.
func TestTopicAliasLimits(t *testing.T) {
	logger, logs := captureLogs(t)
	ts := startServer(t, broker.Options{Anonymous: true, Logger: logger})
	ch := ts.channel(false)
	cfg, err := ts.svc.Channel(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	topic := fmt.Sprintf("channels/%d/publish/%s", ch, cfg.WriteKey)

	c := dial(t, ts.addr)
	code, props := connack5(t, c, mqtttest.Connect{ClientID: "alias", Clean: true})
	if code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	if got := props[0x22]; len(got) != 2 || binary.BigEndian.Uint16(got) != 16 {
		t.Fatalf("Topic Alias Maximum %x, want 16", got)
	}
	for i, pk := range [][]byte{
		publish5(topic, 16, 1, 1, []byte("field1=1")),
		publish5("", 16, 1, 2, []byte("field1=2")),
	} {
		if _, err := c.Write(pk); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, body, err := c.ReadPacket()
		if err != nil || typ != mqtttest.PUBACK || len(body) > 2 && body[2] != 0 {
			t.Fatalf("publish %d: type %d %x %v", i+1, typ, body, err)
		}
	}
	if _, err := c.Write(publish5(topic, 17, 0, 0, []byte("field1=3"))); err != nil {
		t.Fatal(err)
	}
	if code := expectDisconnect(t, c); code != 0x94 {
		t.Fatalf("alias 17: DISCONNECT %#x, want 0x94", code)
	}

	// A topic longer than any feedmq topic, with an alias: refused (and
	// not kept as the alias), the connection stays.
	long := "channels/1/publish/" + strings.Repeat("K", channels.MaxTopicLen)
	c = dial(t, ts.addr)
	if code, _ := connack5(t, c, mqtttest.Connect{ClientID: "long", Clean: true}); code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	for i, pk := range [][]byte{publish5(long, 1, 1, 1, []byte("field1=1")), publish5(topic, 2, 1, 2, []byte("field1=3"))} {
		if _, err := c.Write(pk); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, body, err := c.ReadPacket()
		if want := []byte{0x90, 0}[i]; err != nil || typ != mqtttest.PUBACK || len(body) > 2 && body[2] != want || len(body) == 2 && want != 0 {
			t.Fatalf("publish %d: type %d %x %v, want PUBACK %#x", i+1, typ, body, err, want)
		}
	}
	waitEntries(t, ts, ch, 3)
	logs.noKeys(t, cfg.WriteKey, cfg.ReadKey)
}

// TestTopicAliasBeyondMaximumLongTopic: an alias beyond the maximum is a
// protocol error (DISCONNECT 0x94) whatever the topic's length; a topic
// too long for feedmq must not turn it into a mere refused publish.
func TestTopicAliasBeyondMaximumLongTopic(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	c := dial(t, ts.addr)
	if code, _ := connack5(t, c, mqtttest.Connect{ClientID: "alias", Clean: true}); code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	long := "channels/1/publish/" + strings.Repeat("K", channels.MaxTopicLen)
	if _, err := c.Write(publish5(long, 17, 1, 1, []byte("field1=1"))); err != nil {
		t.Fatal(err)
	}
	if code := expectDisconnect(t, c); code != 0x94 {
		t.Fatalf("alias 17 on a long topic: DISCONNECT %#x, want 0x94", code)
	}
}

// TestPacketTooLarge: CONNACK advertises the maximum packet size, and an
// MQTT 5 packet over it is answered with DISCONNECT 0x95, not a reset.
func TestPacketTooLarge(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	c := dial(t, ts.addr)
	code, props := connack5(t, c, mqtttest.Connect{ClientID: "big", Clean: true})
	if code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	got := props[0x27]
	if len(got) != 4 || binary.BigEndian.Uint32(got) != 64<<10 {
		t.Fatalf("Maximum Packet Size %x, want %d", got, 64<<10)
	}
	// A PUBLISH declaring 70,000 bytes, and the first 30,000 of them.
	pk := append(mqtttest.Packet(0x30, make([]byte, 70000))[:4], make([]byte, 30000)...)
	if _, err := c.Write(pk); err != nil {
		t.Fatal(err)
	}
	if code := expectDisconnect(t, c); code != 0x95 {
		t.Fatalf("DISCONNECT %#x, want 0x95", code)
	}
}

// TestEmptyClientIDPersistentV311: 3.1.1 with an empty client ID and
// CleanSession=0 is refused with return code 0x02 (identifier rejected),
// one 3.1.1 has, not 0x80.
func TestEmptyClientIDPersistentV311(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	c := dial(t, ts.addr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	code, err := c.Connect(mqtttest.Connect{ClientID: "", Clean: false})
	if err != nil || code != 0x02 {
		t.Fatalf("CONNACK %#x %v, want 0x02", code, err)
	}
	expectClosed(t, c, 5*time.Second)
}

// TestOversizedFirstPacket: a connection whose first fixed header
// declares 65,530 bytes is closed at once, without waiting for the bytes
// (mochi would allocate them) or for the CONNECT timeout.
func TestOversizedFirstPacket(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, ConnectTimeout: time.Minute})
	c := dial(t, ts.addr)
	if _, err := c.Write([]byte{0x10, 0xFA, 0xFF, 0x03}); err != nil { // CONNECT, 65,530 bytes
		t.Fatal(err)
	}
	expectClosed(t, c, 10*time.Second)
	// A CONNECT of 8 KiB (a long client ID) is still served.
	c = dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: strings.Repeat("c", 8000), Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
}

// TestOversizedFirstPacketPaddedLength: a remaining length padded with
// a zero continuation byte (five bytes, which mochi decodes as the same
// value) must not slip 65,000 bytes past the first-packet bound.
func TestOversizedFirstPacketPaddedLength(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, ConnectTimeout: time.Minute})
	c := dial(t, ts.addr)
	// CONNECT, 65,000 bytes: E8 FB 83 encode it, 80 00 add nothing.
	if _, err := c.Write([]byte{0x10, 0xE8, 0xFB, 0x83, 0x80, 0x00}); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 10*time.Second)
}

// TestUnconnectedSocketsCapped: sockets that have not sent CONNECT are
// capped by MaxConnections too: a socket past the cap closes the oldest
// of them, and the others are served.
func TestUnconnectedSocketsCapped(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, MaxConnections: 3, ConnectTimeout: time.Minute})
	var idle []*mqtttest.Conn
	for i := 0; i < 3; i++ {
		idle = append(idle, dial(t, ts.addr))
	}
	// One accept loop takes sockets in order: the fourth is counted after
	// the first three.
	late := dial(t, ts.addr)
	expectClosed(t, idle[0], 10*time.Second)
	for i, c := range []*mqtttest.Conn{idle[1], late} {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if code, err := c.Connect(mqtttest.Connect{ClientID: fmt.Sprintf("c%d", i), Clean: true}); err != nil || code != 0 {
			t.Fatalf("socket %d: CONNACK %#x %v", i, code, err)
		}
	}
}

// TestIdleSocketsDoNotLockOutDevices: sockets that never send CONNECT,
// as many as max_connections, must not keep a device out (renewed every
// connect_timeout, they would keep every device out for good): a new
// socket evicts the oldest idle one instead of being refused.
func TestIdleSocketsDoNotLockOutDevices(t *testing.T) {
	ts := startServer(t, broker.Options{MaxConnections: 3, ConnectTimeout: time.Minute})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	var idle []*mqtttest.Conn
	for i := 0; i < 3; i++ {
		idle = append(idle, dial(t, ts.addr))
	}
	// One accept loop takes sockets in order: the idle ones are counted
	// before the device's.
	c := dial(t, ts.addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Keepalive: 60})
	if err != nil || code != 0 {
		t.Fatalf("device behind %d idle sockets: CONNACK %#x %v, want 0", len(idle), code, err)
	}
	expectClosed(t, idle[0], 10*time.Second) // the oldest idle socket made room
}

// TestUnconnectedWebSocketSocketsCapped: the cap on sockets that have not
// sent CONNECT holds on the WebSocket listener too, from the TCP accept
// on: sockets that never send their HTTP upgrade request count.
func TestUnconnectedWebSocketSocketsCapped(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, MaxConnections: 3, ConnectTimeout: time.Minute,
		WSAddr: "127.0.0.1:0"})
	addr := ts.addrOf("ws")
	var idle []*mqtttest.Conn
	for i := 0; i < 4; i++ {
		idle = append(idle, dial(t, addr))
	}
	expectClosed(t, idle[0], 10*time.Second)
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
