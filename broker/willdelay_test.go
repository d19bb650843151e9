package broker_test

import (
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// connectWillDelayClean5 is an MQTT 5 CONNECT of a device with a QoS 1 will
// delayed by delay seconds, and a session expiry of expiry seconds.
func connectWillDelayClean5(cr *auth.Credentials, topic, payload string, delay, expiry uint32) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	u32 := func(b []byte, v uint32) []byte { return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }
	b := str(nil, "MQTT")
	b = append(b, 5, 0x80|0x40|0x08|0x04|0x02, 0, 60) // user, password, will QoS 1, will, clean start
	if expiry > 0 {
		b = u32(append(b, 5, 0x11), expiry)
	} else {
		b = append(b, 0)
	}
	b = str(b, cr.Device.ClientID)
	b = u32(append(b, 5, 0x18), delay) // will properties: Will Delay Interval
	b = str(b, topic)
	b = str(b, payload)
	b = str(b, cr.Device.Username)
	b = str(b, cr.Password)
	return mqtttest.Packet(mqtttest.CONNECT<<4, b)
}

// TestWillDelaySessionEnd: a will is delayed until its Will Delay
// Interval passes or the session ends, whichever comes first: a client
// whose session ends with its connection (session expiry 0) has its will
// sent when it drops, whatever delay it asked. mochi kept every such
// will for its whole delay (up to 136 years), one per client ID: a
// stream of clients could pile them up without bound, and the will of a
// device deleted meanwhile was still sent.
func TestWillDelaySessionEnd(t *testing.T) {
	ts := startServer(t, broker.Options{})
	dev, watcher := ts.device(), ts.device()
	ts.allow(dev, "readwrite home/#")
	ts.allow(watcher, "read home/#")
	w := mustConnect(t, ts.addr, watcher)
	if code := w.subscribe(t, "home/#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	c := dial(t, ts.addr)
	if _, err := c.Write(connectWillDelayClean5(dev, "home/dev/status", "offline", 1<<31, 0)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	c.Close()
	expectMsg(t, w, "home/dev/status", "offline")
}
