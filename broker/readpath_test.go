package broker_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// pubPacket is a PUBLISH at QoS 0 or 1 (packet ID id); v5 adds an empty
// property section.
func pubPacket(topic string, qos byte, id uint16, v5 bool, payload string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	if v5 {
		b = append(b, 0)
	}
	return mqtttest.Packet(mqtttest.PUBLISH<<4|qos<<1, append(b, payload...))
}

// expectSubscribedEntry reads SUBACK (ID 1), then a PUBACK with ID ackID
// and the feed's delivery of field1 in either order.
func expectSubscribedEntry(t *testing.T, c *mqtttest.Conn, ch uint64, ackID uint16, field1 string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := c.ReadPacket()
	if err != nil || typ != mqtttest.SUBACK || !bytes.Equal(body, []byte{0, 1, 0}) {
		t.Fatalf("want SUBACK first: type %d % x %v", typ, body, err)
	}
	acked, delivered := false, false
	for !acked || !delivered {
		typ, body, err := c.ReadPacket()
		if err != nil {
			t.Fatalf("acked %v delivered %v: %v", acked, delivered, err)
		}
		switch typ {
		case mqtttest.PUBACK:
			if got := binary.BigEndian.Uint16(body); got != ackID {
				t.Fatalf("PUBACK for %d, want %d", got, ackID)
			}
			acked = true
		case mqtttest.PUBLISH:
			topic := fmt.Sprintf("channels/%d/subscribe", ch)
			n := 2 + int(binary.BigEndian.Uint16(body))
			if string(body[2:n]) != topic || !strings.Contains(string(body[n:]), fmt.Sprintf(`"field1":%q`, field1)) {
				t.Fatalf("delivery % q", body)
			}
			delivered = true
		default:
			t.Fatalf("unexpected packet type %d", typ)
		}
	}
}

// subscribeThenPublish is a SUBSCRIBE (ID 1) of ch's feed and a QoS 1
// publish (ID 2) of field1 to it.
func subscribeThenPublish(ch uint64, field1 string) []byte {
	return append(subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch)),
		pubPacket(fmt.Sprintf("channels/%d/publish", ch), 1, 2, false, "field1="+field1)...)
}

// TestReadPathSubscribeThenPublish: a SUBSCRIBE and a feed publish in one
// segment are processed in order: the subscription is in place before the
// entry is committed and fanned out, so the client gets its own entry.
func TestReadPathSubscribeThenPublish(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	c := rawDevice(t, ts.addr, dev, 4)
	for i, field1 := range []string{"1", "2", "3"} {
		if _, err := c.Write(subscribeThenPublish(ch, field1)); err != nil {
			t.Fatal(err)
		}
		expectSubscribedEntry(t, c, ch, 2, field1)
		if n := len(ts.entries(ch)); n != i+1 {
			t.Fatalf("%d entries, want %d", n, i+1)
		}
	}
}

// TestReadPathByteByByte: packets that arrive one byte per segment, a
// feed publish among them, are put together and handled as whole ones.
func TestReadPathByteByByte(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	c := rawDevice(t, ts.addr, dev, 4)
	b := append(subscribeThenPublish(ch, "9"), pubPacket(fmt.Sprintf("channels/%d/publish", ch), 0, 0, false, "field1=10")...)
	for i := range b {
		if _, err := c.Write(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // a segment each, most of the time
	}
	expectSubscribedEntry(t, c, ch, 2, "9")
	if topic, payload := readPublish(t, c); !strings.Contains(payload, `"field1":"10"`) {
		t.Fatalf("QoS 0 entry: %s %s", topic, payload)
	}
	if got := ts.entries(ch); len(got) != 2 {
		t.Fatalf("entries:\n%s", joinLines(got))
	}
}

// TestReadPathLargePackets: a packet larger than the read path's buffer
// (a free-topic publish of 10 KB) passes to mochi whole, and the feed
// publish behind it in the same segment is still handled, after it.
func TestReadPathLargePackets(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev, watcher := ts.device(pubsub(ch)), ts.device()
	ts.allow(dev, "write home/#")
	ts.allow(watcher, "read home/#")
	w := rawDevice(t, ts.addr, watcher, 4)
	if code, err := w.Subscribe(1, "home/#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	c := rawDevice(t, ts.addr, dev, 4)
	big := strings.Repeat("x", 10_000)
	b := append(pubPacket("home/big", 0, 0, false, big), subscribeThenPublish(ch, "4")...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expectSubscribedEntry(t, c, ch, 2, "4")
	if topic, payload := readPublish(t, w); topic != "home/big" || payload != big {
		t.Fatalf("got %s, %d bytes", topic, len(payload))
	}
}

// TestReadPathRenumbers: a feed publish whose packet ID a delivery to the
// client holds is handled under another ID and acknowledged with the
// client's; the delivery stays in flight and comes again to the resumed
// session.
func TestReadPathRenumbers(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	sub, pub := ts.device(pubsub(ch)), ts.device()
	ts.allow(sub, "read home/#")
	ts.allow(pub, "write home/#")
	c := queueOne(t, ts, sub, pub, 4)
	if _, err := c.Write(pubPacket(fmt.Sprintf("channels/%d/publish", ch), 1, 1, false, "field1=1")); err != nil {
		t.Fatal(err)
	}
	if body, _ := readUntil(t, c, mqtttest.PUBACK); binary.BigEndian.Uint16(body) != 1 {
		t.Fatalf("PUBACK % x, want ID 1", body)
	}
	if got := ts.entries(ch); len(got) != 1 {
		t.Fatalf("entries:\n%s", joinLines(got))
	}
	expectQueuedAgain(t, ts, c, sub)
}

// TestReadPathRefusedMQTT5: an MQTT 5 client's refused QoS 1 feed publish
// gets a PUBACK with the reason code and its packet ID, and the client
// carries on; its next publish is stored.
func TestReadPathRefusedMQTT5(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch, other := ts.channel(false), ts.channel(false)
	dev := ts.device(pubsub(ch))
	c := rawDevice(t, ts.addr, dev, 5)
	b := append(pubPacket(fmt.Sprintf("channels/%d/publish", other), 1, 5, true, "field1=1"),
		pubPacket(fmt.Sprintf("channels/%d/publish", ch), 1, 6, true, "field1=2")...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := c.ReadPacket()
	if err != nil || typ != mqtttest.PUBACK || len(body) < 3 || binary.BigEndian.Uint16(body) != 5 || body[2] != 0x87 {
		t.Fatalf("want PUBACK 5 0x87: type %d % x %v", typ, body, err)
	}
	if id, code, err := c.ReadPuback(); err != nil || id != 6 || code != 0 {
		t.Fatalf("PUBACK %d %#x %v", id, code, err)
	}
	if got := ts.entries(ch); len(got) != 1 {
		t.Fatalf("entries:\n%s", joinLines(got))
	}
}

// TestReadPathRefusedMQTT3: an MQTT 3.1.1 client's refused QoS 1 feed
// publish ends the connection (any PUBACK would claim it stored) and,
// as before, that end is no cause for its will; the packets behind the
// refused one are not processed.
func TestReadPathRefusedMQTT3(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch, other := ts.channel(false), ts.channel(false)
	w, c := connectWatchedWill(t, ts, ch)
	b := append(pubPacket(fmt.Sprintf("channels/%d/publish", other), 1, 5, false, "field1=1"),
		pubPacket(fmt.Sprintf("channels/%d/publish", ch), 1, 6, false, "field1=2")...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 5*time.Second)
	readNothing(t, w)
	if got := ts.entries(ch); len(got) != 0 {
		t.Fatalf("entries after the refused publish:\n%s", joinLines(got))
	}
}

// TestReadPathKeepalive: feed publishes alone keep a connection alive past
// its keepalive, as mochi's packets do; silence then ends it.
func TestReadPathKeepalive(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	c := dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Keepalive: 1}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	// The deadline is 1.5 s from each packet: publish for 3 s.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if err := c.Publish(fmt.Sprintf("channels/%d/publish", ch), 0, 0, []byte("field1=1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := c.Write([]byte{mqtttest.PINGREQ << 4, 0}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, _, err := c.ReadPacket(); err != nil || typ != mqtttest.PINGRESP {
		t.Fatalf("PINGRESP: type %d %v", typ, err)
	}
	if d := expectClosed(t, c, 10*time.Second); d < time.Second {
		t.Fatalf("closed %v after the last packet, before the keepalive ran out", d)
	}
}

// TestReadPathTLSAndWebSocket: over TLS a SUBSCRIBE and a feed publish in
// one write are handled in order; over WebSocket too, with the publish
// split across two messages.
func TestReadPathTLSAndWebSocket(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{})
	ch := ts.channel(false)
	t.Run("tls", func(t *testing.T) {
		dev := ts.device(pubsub(ch))
		tc, err := tls.Dial("tcp", ts.addrOf("mqtts"), pki.clientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		c := mqtttest.Wrap(tc)
		deviceConnect(t, c, dev, 4)
		if _, err := c.Write(subscribeThenPublish(ch, "5")); err != nil {
			t.Fatal(err)
		}
		expectSubscribedEntry(t, c, ch, 2, "5")
	})
	t.Run("websocket", func(t *testing.T) {
		dev := ts.device(pubsub(ch))
		ws, _, err := wsDial(t, ts.wsURL("ws", "/mqtt"), "", nil, "mqtt")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		wsWrite(t, ws, websocket.BinaryMessage, mqtttest.Connect{ClientID: dev.Device.ClientID,
			Username: dev.Device.Username, Password: dev.Password, Clean: true, Keepalive: 30}.Encode())
		if b := wsRead(t, ws); !bytes.Equal(b, []byte{0x20, 2, 0, 0}) {
			t.Fatalf("CONNACK % x", b)
		}
		b := subscribeThenPublish(ch, "6")
		wsWrite(t, ws, websocket.BinaryMessage, b[:len(b)-5])
		wsWrite(t, ws, websocket.BinaryMessage, b[len(b)-5:])
		if b := wsRead(t, ws); !bytes.Equal(b, []byte{0x90, 3, 0, 1, 0}) {
			t.Fatalf("SUBACK % x", b)
		}
		// One message may carry several packets (a delivery and the
		// PUBACK written together), as MQTT over WebSocket allows.
		acked, delivered := false, false
		var stream []byte
		for !acked || !delivered {
			if len(stream) == 0 || packetEnd(stream) < 0 {
				stream = append(stream, wsRead(t, ws)...)
				continue
			}
			n := packetEnd(stream)
			b := stream[:n]
			stream = stream[n:]
			switch {
			case bytes.Equal(b, []byte{0x40, 2, 0, 2}):
				acked = true
			case b[0] == 0x30 && bytes.Contains(b, []byte(`"field1":"6"`)):
				delivered = true
			default:
				t.Fatalf("unexpected % x", b)
			}
		}
	})
}

// packetEnd returns the length of the whole MQTT packet at the start of
// b, or -1 when b does not hold all of it yet.
func packetEnd(b []byte) int {
	rem, shift := 0, 0
	for i := 1; i < len(b) && i <= 4; i++ {
		rem |= int(b[i]&0x7f) << shift
		shift += 7
		if b[i]&0x80 == 0 {
			if n := i + 1 + rem; n <= len(b) {
				return n
			}
			return -1
		}
	}
	return -1
}

// connectWatchedWill connects a device allowed to publish to channel ch
// with a will ("gone" on home/will) and returns that connection, c, and
// w, another device's subscription to home/#, which sees the will if it
// is sent.
func connectWatchedWill(t *testing.T, ts *testServer, ch uint64) (w, c *mqtttest.Conn) {
	t.Helper()
	dev, watcher := ts.device(pubsub(ch)), ts.device()
	ts.allow(dev, "write home/#")
	ts.allow(watcher, "read home/#")
	w = rawDevice(t, ts.addr, watcher, 4)
	if code, err := w.Subscribe(1, "home/#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	c = dial(t, ts.addr)
	if _, err := c.Write(connectWithWill(dev, "home/will", "gone")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, mqtttest.CONNACK)
	return w, c
}
