package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
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

// connectWillDelay5 is an MQTT 5 CONNECT of a device, Clean Start=0 with a
// session expiry of expiry seconds, and a QoS 1 will delayed by delay
// seconds.
func connectWillDelay5(cr *auth.Credentials, topic, payload string, delay, expiry uint32) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	u32 := func(b []byte, v uint32) []byte { return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }
	b := str(nil, "MQTT")
	b = append(b, 5, 0x80|0x40|0x08|0x04, 0, 60) // user, password, will QoS 1, will; Clean Start=0
	b = u32(append(b, 5, 0x11), expiry)          // session expiry interval
	b = str(b, cr.Device.ClientID)
	b = u32(append(b, 5, 0x18), delay) // will delay interval
	b = str(b, topic)
	b = str(b, payload)
	b = str(b, cr.Device.Username)
	b = str(b, cr.Password)
	return mqtttest.Packet(mqtttest.CONNECT<<4, b)
}

// TestWillDelay: an MQTT 5 will with a delay is what goes out when the
// delay is over, not when the connection drops. A client that reconnects
// within the delay cancels it, so its bound topic gets no entry; a will
// whose device lost its write rule during the delay is not sent (the
// rule is checked when the will falls due, as it is for one without
// delay).
func TestWillDelay(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev, other, watcher := ts.device(), ts.device(), ts.device()
	ts.allow(dev, "readwrite home/#")
	ts.allow(other, "readwrite home/#")
	ts.allow(watcher, "read #")
	if err := ts.svc.WatchBindings(context.Background(), ts.srv.SetBindings); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.svc.Bind(context.Background(), channels.Binding{ChannelID: ch, Topic: "home/+/online", Fields: [8]string{"$"}}); err != nil {
		t.Fatal(err)
	}
	w := rawDevice(t, ts.addr, watcher, 4)
	if code, err := w.Subscribe(1, "home/#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	live := func() int64 { return ts.srv.Stats().Connections["mqtt"].Live }
	connectDrop := func(cr *auth.Credentials, delay uint32) {
		t.Helper()
		n := live()
		c := dial(t, ts.addr)
		if _, err := c.Write(connectWillDelay5(cr, "home/"+cr.Device.ClientID+"/online", "0", delay, 60)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
			t.Fatalf("CONNACK %d % x %v", typ, body, err)
		}
		c.Close()
		waitStats(t, ts, "the connection gone", func(broker.Stats) bool { return live() == n })
	}

	// Reconnecting within the delay: no will, and no entry.
	connectDrop(dev, 60)
	back := dial(t, ts.addr)
	if code, err := back.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Keepalive: 60, Version: 5}); err != nil || code != 0 {
		t.Fatalf("reconnect: CONNACK %#x %v", code, err)
	}
	if es := ts.entries(ch); len(es) != 0 {
		t.Errorf("a will cancelled by a reconnect within its delay made entries: %s", joinLines(es))
	}

	// The rule goes during the delay: the will is not sent. other's will,
	// due later, shows that the first one's time has passed.
	_ = back.Disconnect()
	back.Close()
	waitStats(t, ts, "the device gone", func(broker.Stats) bool { return live() == 1 })
	connectDrop(dev, 1)
	ts.allow(dev)
	connectDrop(other, 3)
	topic, _ := readPublish(t, w)
	if want := "home/" + other.Device.ClientID + "/online"; topic != want {
		t.Errorf("got a will on %s, want only %s (the first device had lost its rule)", topic, want)
	}

	// A session that ends with its connection (expiry 0) sends its will
	// then, whatever the delay: a will goes out at the latest when its
	// session ends.
	c := dial(t, ts.addr)
	if _, err := c.Write(connectWillDelay5(other, "home/"+other.Device.ClientID+"/online", "0", 3600, 0)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	c.Close()
	if topic, _ := readPublish(t, w); topic != "home/"+other.Device.ClientID+"/online" {
		t.Errorf("got %s, want the will of a session that ended", topic)
	}

	// A new connection takes the session over: the old connection's will,
	// which mochi hands over as the old one closes, is not sent.
	ts.allow(dev, "readwrite home/#")
	first := dial(t, ts.addr)
	if _, err := first.Write(connectWillDelay5(dev, "home/"+dev.Device.ClientID+"/online", "0", 1, 60)); err != nil {
		t.Fatal(err)
	}
	_ = first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := first.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	second := dial(t, ts.addr)
	if code, err := second.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Keepalive: 60, Version: 5}); err != nil || code != 0 {
		t.Fatalf("takeover: CONNACK %#x %v", code, err)
	}
	waitStats(t, ts, "the first connection gone", func(broker.Stats) bool { return live() == 2 })
	connectDrop(other, 3)
	if topic, _ := readPublish(t, w); topic != "home/"+other.Device.ClientID+"/online" {
		t.Errorf("got a will on %s, want only other's (the first device's session was taken over)", topic)
	}
	_ = second.Disconnect()
	second.Close()
	waitStats(t, ts, "the device gone", func(broker.Stats) bool { return live() == 1 })

	// The device's password is reset during the delay: nothing it
	// authenticated for stays, its will included.
	connectDrop(dev, 1)
	if _, err := ts.svc.ResetPassword(context.Background(), dev.Device.ID); err != nil {
		t.Fatal(err)
	}
	connectDrop(other, 3)
	topic, _ = readPublish(t, w)
	if want := "home/" + other.Device.ClientID + "/online"; topic != want {
		t.Errorf("got a will on %s, want only %s (the first device's credentials were revoked)", topic, want)
	}
}
