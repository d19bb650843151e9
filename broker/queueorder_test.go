package broker_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestQueuedOrder: the messages queued for a persistent session arrive,
// when its client comes back (also after a restart), in the order they
// were published: a state topic's last message must stay the last (a
// light switched on then off must not end up on). mochi resends a
// session's messages sorted by the second they were queued in, and in no
// set order within one second.
func TestQueuedOrder(t *testing.T) {
	ts := startServer(t, broker.Options{})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read home/#")
	ts.allow(pub, "write home/#")
	connect := func() *mqtttest.Conn {
		c := dial(t, ts.addr)
		if code, err := c.Connect(mqtttest.Connect{ClientID: sub.Device.ClientID, Username: sub.Device.Username,
			Password: sub.Password, Keepalive: 60}); err != nil || code != 0 {
			t.Fatalf("CONNACK %#x %v", code, err)
		}
		return c
	}
	c := connect()
	subscribeQoS1(t, c, 1, "home/#", false)
	readUntil(t, c, mqtttest.SUBACK)
	c.Disconnect()

	const n = 40
	queue := func(prefix string) {
		p := rawDevice(t, ts.addr, pub, 4)
		for i := range n {
			if err := p.Publish("home/light", 1, uint16(i+1), []byte(fmt.Sprint(prefix, i))); err != nil {
				t.Fatal(err)
			}
			if _, _, err := p.ReadPuback(); err != nil {
				t.Fatal(err)
			}
		}
		p.Disconnect()
		// The publisher gone first: its last PUBACK leaves before its
		// message is queued, and an acknowledgement in flight counts too.
		waitStats(t, ts, fmt.Sprint(n, " queued"), func(st broker.Stats) bool {
			return st.Queued == n && st.Connections["mqtt"].Live == 0
		})
	}
	receive := func(prefix string) {
		c := connect()
		for i := range n {
			body, _ := readUntil(t, c, mqtttest.PUBLISH)
			tn := 2 + int(binary.BigEndian.Uint16(body))
			id := binary.BigEndian.Uint16(body[tn:])
			if got, want := string(body[tn+2:]), fmt.Sprint(prefix, i); got != want {
				t.Fatalf("message %d of %d is %q, want %q", i+1, n, got, want)
			}
			if _, err := c.Write([]byte{mqtttest.PUBACK << 4, 2, byte(id >> 8), byte(id)}); err != nil {
				t.Fatal(err)
			}
		}
		// Leave only once the server has taken every PUBACK: a socket
		// closed with data still unread may be reset, and a PUBACK lost
		// that way leaves its message to be sent again, as MQTT wants.
		waitStats(t, ts, "queue emptied", func(st broker.Stats) bool { return st.Queued == 0 })
		c.Disconnect()
	}
	queue("a")
	receive("a")
	queue("b")
	ts.restart()
	receive("b")
}
