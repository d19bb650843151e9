package broker_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// rawPacket frames body as an MQTT packet (remaining length < 128).
func rawPacket(header byte, body []byte) []byte {
	return append([]byte{header, byte(len(body))}, body...)
}

func mqttString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

func unsubscribe(t *testing.T, c *mqtttest.Conn, id uint16, filter string) {
	t.Helper()
	body := mqttString(binary.BigEndian.AppendUint16(nil, id), filter)
	if _, err := c.Write(rawPacket(0xA2, body)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, _, err := c.ReadPacket(); err != nil || typ != 11 {
		t.Fatalf("UNSUBACK: type %d, %v", typ, err)
	}
}

// Subscribers of a topic are cached between deliveries; every
// subscription change must reach the next delivery.
func TestFanOutFollowsSubscriptionChanges(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/subscribe", ch)
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	publish := func(v string) {
		t.Helper()
		if err := pub.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, 1, []byte("field1="+v)); err != nil {
			t.Fatal(err)
		}
		_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := pub.ReadPuback(); err != nil {
			t.Fatal(err)
		}
	}
	want := func(c *mqtttest.Conn, v string) {
		t.Helper()
		got, payload := readPublish(t, c)
		if got != topic || !strings.Contains(payload, `"field1":"`+v+`"`) {
			t.Fatalf("got %s %s, want value %s", got, payload, v)
		}
	}

	a := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	if code, err := a.Subscribe(1, topic); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	publish("1")
	want(a, "1")

	b := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 5)
	if code, err := b.Subscribe(1, topic); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	publish("2")
	want(a, "2")
	want(b, "2")

	unsubscribe(t, a, 2, topic)
	publish("3")
	want(b, "3")
	readNothing(t, a)

	b.Close()
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	if code, err := c.Subscribe(1, "channels/+/subscribe"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	publish("4")
	want(c, "4")
	readNothing(t, a)
}

// MQTT 5 subscribers get their subscription identifier with each
// delivery, and nothing larger than the Maximum Packet Size they set.
func TestFanOutMQTT5Properties(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	cr := ts.device(auth.Grant{ChannelID: ch, Publish: true, Subscribe: true})
	const maxSize = 350

	sub := dial(t, ts.addr)
	body := mqttString(nil, "MQTT")
	body = append(body, 5, 0xC2, 0, 60) // v5; username, password, clean; keepalive 60
	body = append(body, 5, 0x27)        // properties: Maximum Packet Size
	body = binary.BigEndian.AppendUint32(body, maxSize)
	body = mqttString(body, cr.Device.ClientID)
	body = mqttString(body, cr.Device.Username)
	body = mqttString(body, cr.Password)
	if _, err := sub.Write(rawPacket(0x10, body)); err != nil {
		t.Fatal(err)
	}
	_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, ack, err := sub.ReadPacket(); err != nil || typ != 2 || len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK type %d %x %v", typ, ack, err)
	}
	topic := fmt.Sprintf("channels/%d/subscribe", ch)
	body = binary.BigEndian.AppendUint16(nil, 1)
	body = append(body, 2, 0x0B, 7) // properties: Subscription Identifier 7
	body = mqttString(body, topic)
	body = append(body, 0)
	if _, err := sub.Write(rawPacket(0x82, body)); err != nil {
		t.Fatal(err)
	}
	if typ, ack, err := sub.ReadPacket(); err != nil || typ != 9 || ack[len(ack)-1] != 0 {
		t.Fatalf("SUBACK type %d %x %v", typ, ack, err)
	}

	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	for _, v := range []string{"1", strings.Repeat("x", 200), "3"} {
		if err := pub.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, 1, []byte("field1="+v)); err != nil {
			t.Fatal(err)
		}
		_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := pub.ReadPuback(); err != nil {
			t.Fatal(err)
		}
	}
	// Entries 1 and 3 arrive, each carrying identifier 7; entry 2 does
	// not fit the client's maximum and is not sent at all.
	for _, want := range []string{`"entry_id":1,`, `"entry_id":3,`} {
		_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, pk, err := sub.ReadPacket()
		if err != nil || typ != 3 {
			t.Fatalf("PUBLISH: type %d, %v", typ, err)
		}
		tl := int(binary.BigEndian.Uint16(pk))
		if got := string(pk[2 : 2+tl]); got != topic {
			t.Fatalf("topic %q", got)
		}
		props := pk[2+tl:]
		if !bytes.HasPrefix(props, []byte{2, 0x0B, 7}) {
			t.Fatalf("properties % x, want subscription identifier 7", props[:min(len(props), 8)])
		}
		if payload := string(props[3:]); !strings.Contains(payload, want) {
			t.Fatalf("payload %s, want %s", payload, want)
		}
		if len(pk)+2 > maxSize {
			t.Fatalf("a %d-byte packet exceeds the client's maximum %d", len(pk)+2, maxSize)
		}
	}
	readNothing(t, sub)
}

// A burst of small entries reaches a subscriber that reads, whole and in
// order: the backlog is bounded in bytes (1 MiB), and 2000 entries of
// about 270 bytes fit, however the subscriber is scheduled.
func TestFanOutBurstIsNotDropped(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	sub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	if code, err := sub.Subscribe(1, fmt.Sprintf("channels/%d/subscribe", ch)); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	const n = 2000
	var burst []byte
	for i := 1; i <= n; i++ {
		burst = append(burst, mqtttest.PublishPacket(fmt.Sprintf("channels/%d/publish", ch), []byte(fmt.Sprintf("field1=%d", i)))...)
	}
	if _, err := pub.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		_, payload := readPublish(t, sub)
		if want := fmt.Sprintf(`"entry_id":%d,"field1":"%d"`, i, i); !strings.Contains(payload, want) {
			t.Fatalf("delivery %d: %s, want %s", i, payload, want)
		}
	}
}

// TestFanOutBurstBesideStalledSubscribers: subscribers that stopped
// reading, holding all the bytes send_queue_total allows, must not starve
// one that reads: it still gets a 2000-entry burst whole.
func TestFanOutBurstBesideStalledSubscribers(t *testing.T) {
	// Stalled subscribers are cut off only after the write timeout: keep
	// them stuck for the whole test.
	ts := startServer(t, broker.Options{Anonymous: true, WriteTimeout: 2 * time.Minute, Logger: quietLogger()})
	ch := ts.channel(true)
	topic := fmt.Sprintf("channels/%d/subscribe", ch)
	for i := 0; i < 4; i++ {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		nc, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		c := mqtttest.Wrap(nc)
		t.Cleanup(func() { c.Close() })
		if code, err := c.Connect(mqtttest.Connect{ClientID: fmt.Sprintf("stalled%d", i), Clean: true}); err != nil || code != 0 {
			t.Fatalf("CONNACK %#x %v", code, err)
		}
		if code, err := c.Subscribe(1, topic); err != nil || code != 0 {
			t.Fatalf("SUBACK %#x %v", code, err)
		}
	}
	// Large entries until the stalled subscribers' queues are full.
	v := strings.Repeat("v", 250)
	for deadline := time.Now().Add(time.Minute); ts.srv.Stats().Dropped < 100; {
		if err := ts.srv.Publish(context.Background(), entry(ch, v, v, v, v, v, v, v, v)); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled subscribers never filled their queues")
		}
	}
	sub := dial(t, ts.addr)
	if code, err := sub.Connect(mqtttest.Connect{ClientID: "reader", Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	if code, err := sub.Subscribe(1, topic); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	const n = 2000
	var burst []byte
	for i := 1; i <= n; i++ {
		burst = append(burst, mqtttest.PublishPacket(fmt.Sprintf("channels/%d/publish", ch), []byte(fmt.Sprintf("field1=%d", i)))...)
	}
	if _, err := pub.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		_, payload := readPublish(t, sub)
		if want := fmt.Sprintf(`"field1":"%d"`, i); !strings.Contains(payload, want) {
			t.Fatalf("delivery %d: %s, want %s", i, payload, want)
		}
	}
}
