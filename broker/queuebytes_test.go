package broker_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestQueuedBytesBound: the payload bytes queued for persistent sessions
// are bounded over all clients (sessions.max_queued_bytes), not only
// their number: at the count bounds alone (100000 messages of up to
// 64 KiB), anonymous clients allowed to read and write one topic could
// make 100 sessions and fill them with 6 GiB of payloads (17 GiB of
// memory measured, and as much in mqtt-sessions.db). Past the bound the
// largest queues lose their oldest messages, as past the count bounds.
func TestQueuedBytesBound(t *testing.T) {
	const limit = 1 << 20
	ts := startServer(t, broker.Options{QueuedMaxBytes: limit})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read home/#")
	ts.allow(pub, "write home/#")
	c := dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: sub.Device.ClientID, Username: sub.Device.Username,
		Password: sub.Password, Keepalive: 60}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	subscribeQoS1(t, c, 1, "home/#", false)
	readUntil(t, c, mqtttest.SUBACK)
	c.Disconnect()

	p := rawDevice(t, ts.addr, pub, 4)
	payload := strings.Repeat("x", 30000)
	const n = 100 // 3 MB
	for i := range n {
		if err := p.Publish("home/x", 1, uint16(i+1), []byte(fmt.Sprintf("%03d%s", i, payload))); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.ReadPuback(); err != nil {
			t.Fatal(err)
		}
	}
	p.Disconnect()
	keep := limit / (len(payload) + 3)
	waitStats(t, ts, fmt.Sprint("at most ", keep, " queued"), func(st broker.Stats) bool {
		return st.Queued > 0 && st.Queued <= keep && st.Connections["mqtt"].Live == 0 && st.QueueDropped == uint64(n-st.Queued)
	})
	// The newest stay.
	c = dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: sub.Device.ClientID, Username: sub.Device.Username,
		Password: sub.Password, Keepalive: 60}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	body, _ := readUntil(t, c, mqtttest.PUBLISH)
	if got := string(body[2+len("home/x")+2:][:3]); got != fmt.Sprintf("%03d", n-keep) && got != fmt.Sprintf("%03d", n-keep+1) {
		t.Fatalf("first queued message left is %s, want one of the newest %d", got, keep)
	}
}
