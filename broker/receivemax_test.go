package broker_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// connect5ReceiveMax connects an MQTT 5 device that announces Receive
// Maximum max (at most max QoS 1/2 messages unacknowledged towards it).
func connect5ReceiveMax(t *testing.T, addr string, cr *auth.Credentials, max uint16) *mqtttest.Conn {
	t.Helper()
	c := dial(t, addr)
	b := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02 | 0x40 | 0x80, 0, 60}
	b = append(b, 3, 0x21, byte(max>>8), byte(max)) // properties: Receive Maximum
	for _, s := range []string{cr.Device.ClientID, cr.Device.Username, cr.Password} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	if _, err := c.Write(mqtttest.Packet(mqtttest.CONNECT<<4, b)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := c.ReadPacket()
	if err != nil || typ != mqtttest.CONNACK || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	return c
}

// readPublish5 reads one MQTT 5 PUBLISH of QoS 0 or 1 and returns its
// packet ID (0 at QoS 0) and payload.
func readPublish5(c *mqtttest.Conn) (id uint16, payload string, err error) {
	typ, body, err := c.ReadPacket()
	if err != nil {
		return 0, "", err
	}
	if typ != mqtttest.PUBLISH || len(body) < 2 {
		return 0, "", fmt.Errorf("got packet type %d, want PUBLISH", typ)
	}
	n := 2 + int(binary.BigEndian.Uint16(body))
	if n+3 > len(body) {
		return 0, "", fmt.Errorf("short PUBLISH % x", body)
	}
	// Only QoS 1 is subscribed here: a packet ID follows the topic.
	id = binary.BigEndian.Uint16(body[n:])
	n += 2
	props, used := 0, 0
	for shift := 0; n+used < len(body); shift += 7 {
		d := body[n+used]
		used++
		props |= int(d&0x7f) << shift
		if d&0x80 == 0 {
			break
		}
	}
	if n+used+props > len(body) {
		return 0, "", fmt.Errorf("short PUBLISH properties % x", body)
	}
	return id, string(body[n+used+props:]), nil
}

// TestReceiveMaximumDelivery: an MQTT 5 subscriber that announces a small
// Receive Maximum (Eclipse Paho Go v5 and HiveMQ's client announce one)
// and acknowledges each message gets every QoS 1 message of a burst, in
// order, each once. mochi holds the messages past the quota back, then
// sends a held one without keeping it in flight: its PUBACK frees no
// quota, so the rest of the burst stays held for good, and a message
// sent that way would be lost with the connection.
func TestReceiveMaximumDelivery(t *testing.T) {
	ts := startServer(t, broker.Options{})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read home/#")
	ts.allow(pub, "write home/#")
	c := connect5ReceiveMax(t, ts.addr, sub, 2)
	b := binary.BigEndian.AppendUint16(nil, 1)
	b = append(b, 0) // no properties
	b = binary.BigEndian.AppendUint16(b, uint16(len("home/#")))
	b = append(b, "home/#"...)
	b = append(b, 1) // QoS 1
	if _, err := c.Write(mqtttest.Packet(mqtttest.SUBSCRIBE<<4|0x02, b)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.SUBACK || body[len(body)-1] != 1 {
		t.Fatalf("SUBACK %d % x %v", typ, body, err)
	}

	p := rawDevice(t, ts.addr, pub, 4)
	const burst = 10
	for i := range burst {
		if err := p.Publish("home/x", 1, uint16(i+1), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.ReadPuback(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range burst {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		id, payload, err := readPublish5(c)
		if err != nil {
			t.Fatalf("message %d of %d: %v", i+1, burst, err)
		}
		if payload != fmt.Sprint(i) {
			t.Fatalf("message %d is %q, want %q", i+1, payload, fmt.Sprint(i))
		}
		if _, err := c.Write([]byte{mqtttest.PUBACK << 4, 2, byte(id >> 8), byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
}
