package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestWillWildcardTopic: a will topic is a topic name, so + and # have no
// place in it (a PUBLISH never carries them: mochi drops such a publish).
// A device whose rule covers home/# must not get a will on "home/#" or
// "home/+/x" through: sent, it would reach subscribers as a PUBLISH with a
// wildcard topic, and retained it would sit in the tree for good, since
// no publish can ever clear a topic holding a wildcard.
func TestWillWildcardTopic(t *testing.T) {
	ts := startServer(t, broker.Options{})
	dev, watcher := ts.device(), ts.device()
	ts.allow(dev, "readwrite home/#", "readwrite +")
	ts.allow(watcher, "read #")
	w := rawDevice(t, ts.addr, watcher, 4)
	if code, err := w.Subscribe(1, "#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	live := func() int64 { return ts.srv.Stats().Connections["mqtt"].Live }
	for i, topic := range []string{"home/#", "home/+/x", "home/#/x", "+", "#"} {
		before := ts.srv.Stats()
		c := dial(t, ts.addr)
		if _, err := c.Write(connectWithRetainedWill(dev, topic, fmt.Sprintf("offline %d", i))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK {
			t.Fatalf("%s: CONNACK %d % x %v", topic, typ, body, err)
		} else if body[1] != 0 {
			continue // refusing the CONNECT is fine too
		}
		c.Close() // unclean: the will is due
		// mochi sends the will before the session ends.
		waitStats(t, ts, "the device gone", func(broker.Stats) bool { return live() == 1 })
		st := ts.srv.Stats()
		if st.FreePublished != before.FreePublished || st.Retained != before.Retained {
			t.Errorf("will on %q: free published %d -> %d, retained %d -> %d; want no change",
				topic, before.FreePublished, st.FreePublished, before.Retained, st.Retained)
		}
	}
	// Nothing with a wildcard topic ever reached the subscriber: the
	// first PUBLISH it reads is a plain one sent now.
	p := rawDevice(t, ts.addr, dev, 4)
	if err := p.Publish("home/plain", 0, 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if topic, _ := readPublish(t, w); strings.ContainsAny(topic, "+#") || topic != "home/plain" {
		t.Fatalf("subscriber got a PUBLISH on %q, want home/plain", topic)
	}
}

// connectWithRetainedWill is a 3.1.1 CONNECT of a device with a
// retained QoS 1 will.
func connectWithRetainedWill(cr *auth.Credentials, topic, payload string) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	b := str(nil, "MQTT")
	b = append(b, 4, 0x80|0x40|0x20|0x08|0x04|0x02, 0, 60) // user, password, will retain, will QoS 1, will, clean
	b = str(b, cr.Device.ClientID)
	b = str(b, topic)
	b = str(b, payload)
	b = str(b, cr.Device.Username)
	b = str(b, cr.Password)
	return mqtttest.Packet(mqtttest.CONNECT<<4, b)
}
