package broker_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// subscribeQoS1 sends a SUBSCRIBE of filter at QoS 1 with packet ID id.
func subscribeQoS1(t *testing.T, c *mqtttest.Conn, id uint16, filter string, v5 bool) {
	t.Helper()
	b := binary.BigEndian.AppendUint16(nil, id)
	if v5 {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(filter)))
	b = append(b, filter...)
	b = append(b, 1)
	if _, err := c.Write(mqtttest.Packet(mqtttest.SUBSCRIBE<<4|0x02, b)); err != nil {
		t.Fatal(err)
	}
}

// readUntil reads packets until one of type typ and returns its body;
// the PUBLISHes on the way are returned too, by packet ID.
func readUntil(t *testing.T, c *mqtttest.Conn, typ byte) (body []byte, publishes map[uint16][]byte) {
	t.Helper()
	publishes = map[uint16][]byte{}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		got, b, err := c.ReadPacket()
		if err != nil {
			t.Fatalf("waiting for packet type %d: %v", typ, err)
		}
		if got == typ {
			return b, publishes
		}
		if got == mqtttest.PUBLISH {
			n := 2 + int(binary.BigEndian.Uint16(b))
			publishes[binary.BigEndian.Uint16(b[n:])] = b
		}
	}
}

// queueOne leaves one QoS 1 message queued for sub's persistent session
// (subscribed to home/# at QoS 1), and returns sub connected again with
// that message received but not acknowledged: in flight, with packet
// ID 1.
func queueOne(t *testing.T, ts *testServer, sub, pub *auth.Credentials, version byte) *mqtttest.Conn {
	t.Helper()
	connect := func() *mqtttest.Conn {
		c := dial(t, ts.addr)
		if code, err := c.Connect(mqtttest.Connect{ClientID: sub.Device.ClientID, Username: sub.Device.Username,
			Password: sub.Password, Keepalive: 60, Version: version}); err != nil || code != 0 {
			t.Fatalf("CONNACK %#x %v", code, err)
		}
		return c
	}
	c := connect()
	if version == 5 { // a session expiry, or the session ends with the connection
		c.Close()
		c = dial(t, ts.addr)
		b := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xc0, 0, 60, 5, 0x11, 0, 0, 0x0e, 0x10}
		for _, s := range []string{sub.Device.ClientID, sub.Device.Username, sub.Password} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
			b = append(b, s...)
		}
		if _, err := c.Write(mqtttest.Packet(mqtttest.CONNECT<<4, b)); err != nil {
			t.Fatal(err)
		}
		readUntil(t, c, mqtttest.CONNACK)
	}
	subscribeQoS1(t, c, 7, "home/#", version == 5)
	readUntil(t, c, mqtttest.SUBACK)
	c.Disconnect()
	p := rawDevice(t, ts.addr, pub, 4)
	if err := p.Publish("home/x", 1, 1, []byte("queued")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.ReadPuback(); err != nil {
		t.Fatal(err)
	}
	p.Disconnect()
	// The publisher gone first: its PUBACK leaves before its message is
	// queued, and an acknowledgement in flight counts too.
	waitStats(t, ts, "1 queued", func(st broker.Stats) bool { return st.Queued == 1 && st.Connections["mqtt"].Live == 0 })
	if version == 5 {
		c = dial(t, ts.addr)
		b := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xc0, 0, 60, 5, 0x11, 0, 0, 0x0e, 0x10}
		for _, s := range []string{sub.Device.ClientID, sub.Device.Username, sub.Password} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
			b = append(b, s...)
		}
		if _, err := c.Write(mqtttest.Packet(mqtttest.CONNECT<<4, b)); err != nil {
			t.Fatal(err)
		}
		readUntil(t, c, mqtttest.CONNACK)
	} else {
		c = connect()
	}
	body, _ := readUntil(t, c, mqtttest.PUBLISH)
	if n := 2 + int(binary.BigEndian.Uint16(body)); binary.BigEndian.Uint16(body[n:]) != 1 {
		t.Fatalf("queued message resent with packet ID %d, want 1", binary.BigEndian.Uint16(body[n:]))
	}
	return c
}

// TestPacketIDNamespaces: the packet IDs a client picks (SUBSCRIBE,
// UNSUBSCRIBE, its own QoS 1/2 PUBLISH) and those the server picks for
// its deliveries are separate: a client may use 1 for its SUBSCRIBE
// while the server's delivery 1 awaits its PUBACK (mosquitto_sub -c
// always subscribes with ID 1, and gets its session's queued messages
// first). mochi keeps both in one table, and answered 0x91 (packet ID in
// use) to every filter, which mosquitto_sub takes as "All subscription
// requests were denied" and exits.
func TestPacketIDNamespaces(t *testing.T) {
	devices := func() (ts *testServer, sub, pub *auth.Credentials) {
		ts = startServer(t, broker.Options{})
		sub, pub = ts.device(), ts.device()
		ts.allow(sub, "read home/#")
		ts.allow(pub, "write home/#")
		return ts, sub, pub
	}

	t.Run("subscribe", func(t *testing.T) {
		ts, sub, pub := devices()
		c := queueOne(t, ts, sub, pub, 4)
		subscribeQoS1(t, c, 1, "home/#", false)
		body, _ := readUntil(t, c, mqtttest.SUBACK)
		if len(body) != 3 || body[0] != 0 || body[1] != 1 || body[2] != 1 {
			t.Fatalf("SUBACK % x, want 00 01 01", body)
		}
		c.Disconnect()
	})
	t.Run("unsubscribe v5", func(t *testing.T) {
		ts, sub, pub := devices()
		c := queueOne(t, ts, sub, pub, 5)
		b := []byte{0, 1, 0, 0, 6}
		b = append(b, "home/#"...)
		if _, err := c.Write(mqtttest.Packet(mqtttest.UNSUBSCRIBE<<4|0x02, b)); err != nil {
			t.Fatal(err)
		}
		body, _ := readUntil(t, c, mqtttest.UNSUBACK)
		if len(body) != 4 || body[0] != 0 || body[1] != 1 || body[3] != 0 {
			t.Fatalf("UNSUBACK % x, want 00 01 00 00", body)
		}
		c.Disconnect()
	})
}

// TestPacketIDNamespacesPublish: a client's own QoS 1 publish under the
// packet ID of a delivery it has not acknowledged yet leaves that
// delivery in flight: the client may still lose it (its connection
// drops) and must get it again on its next connection. mochi took the
// client's ID for its own and forgot the delivery.
func TestPacketIDNamespacesPublish(t *testing.T) {
	ts := startServer(t, broker.Options{})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read home/#", "write mine/#")
	ts.allow(pub, "write home/#")
	c := queueOne(t, ts, sub, pub, 4)
	if err := c.Publish("mine/x", 1, 1, []byte("own")); err != nil {
		t.Fatal(err)
	}
	if body, _ := readUntil(t, c, mqtttest.PUBACK); binary.BigEndian.Uint16(body) != 1 {
		t.Fatalf("PUBACK % x, want ID 1", body)
	}
	expectQueuedAgain(t, ts, c, sub)
}

// TestPacketIDNamespacesPublishQoS2: the same for a QoS 2 publish, whose
// PUBREC, PUBREL and PUBCOMP all carry the client's packet ID.
func TestPacketIDNamespacesPublishQoS2(t *testing.T) {
	ts := startServer(t, broker.Options{})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read home/#", "write mine/#")
	ts.allow(pub, "write home/#")
	c := queueOne(t, ts, sub, pub, 4)
	b := []byte{0, 6}
	b = append(b, "mine/x"...)
	b = append(b, 0, 1)
	b = append(b, "own"...)
	if _, err := c.Write(mqtttest.Packet(mqtttest.PUBLISH<<4|0x04, b)); err != nil {
		t.Fatal(err)
	}
	if body, _ := readUntil(t, c, 5); len(body) < 2 || binary.BigEndian.Uint16(body) != 1 { // PUBREC
		t.Fatalf("PUBREC % x, want ID 1", body)
	}
	if _, err := c.Write([]byte{6<<4 | 0x02, 2, 0, 1}); err != nil { // PUBREL 1
		t.Fatal(err)
	}
	if body, _ := readUntil(t, c, 7); len(body) < 2 || binary.BigEndian.Uint16(body) != 1 { // PUBCOMP
		t.Fatalf("PUBCOMP % x, want ID 1", body)
	}
	c.Close()
	waitStats(t, ts, "1 queued", func(st broker.Stats) bool { return st.Queued == 1 && st.Sessions == 1 })
}

// expectQueuedAgain closes c, sub's connection holding the delivery of
// "queued" unacknowledged, and checks that sub's resumed session gets it
// again.
func expectQueuedAgain(t *testing.T, ts *testServer, c *mqtttest.Conn, sub *auth.Credentials) {
	t.Helper()
	c.Close()
	waitStats(t, ts, "1 queued", func(st broker.Stats) bool { return st.Queued == 1 && st.Sessions == 1 })
	c = dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: sub.Device.ClientID, Username: sub.Device.Username,
		Password: sub.Password, Keepalive: 60}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	body, _ := readUntil(t, c, mqtttest.PUBLISH)
	if n := 2 + int(binary.BigEndian.Uint16(body)); string(body[n+2:]) != "queued" {
		t.Fatalf("got % x, want the queued message again", body)
	}
}
