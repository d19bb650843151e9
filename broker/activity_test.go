package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// waitActivity polls DeviceActivity until ok accepts device's activity,
// and fails the test after a deadline.
func waitActivity(t *testing.T, ts *testServer, device uint64, what string, ok func(a auth.Activity, present bool) bool) auth.Activity {
	t.Helper()
	var a auth.Activity
	var present bool
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		a, present = ts.srv.DeviceActivity()[device]
		if ok(a, present) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %d: %s; activity %+v (present %v)", device, what, a, present)
		}
	}
}

func connCount(n int) func(auth.Activity, bool) bool {
	return func(a auth.Activity, present bool) bool { return present && len(a.Connections) == n }
}

// deviceConnect connects c as cr's device in MQTT version v.
func deviceConnect(t *testing.T, c *mqtttest.Conn, cr *auth.Credentials, v byte) {
	t.Helper()
	code, err := c.Connect(mqtttest.Connect{ClientID: cr.Device.ClientID, Username: cr.Device.Username,
		Password: cr.Password, Clean: true, Keepalive: 60, Version: v})
	if err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
}

// TestDeviceActivity: a device's live connection is listed with its client
// ID, remote address, listener and connect time; an accepted publish sets
// its last publish time and a refused one does not; anonymous connections
// are not listed; a disconnect removes the connection and keeps the last
// publish time.
func TestDeviceActivity(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ch, other := ts.channel(false), ts.channel(false)
	dev := ts.device(pubsub(ch))
	idle := ts.device(pubsub(ch))
	if got := ts.srv.DeviceActivity(); len(got) != 0 {
		t.Fatalf("activity before any connection: %+v", got)
	}

	start := time.Now().UTC().Truncate(time.Second)
	c := dial(t, ts.addr)
	deviceConnect(t, c, dev, 5)
	anon := dial(t, ts.addr)
	if code, err := anon.Connect(mqtttest.Connect{ClientID: "anon-1", Clean: true}); err != nil || code != 0 {
		t.Fatalf("anonymous CONNACK %#x %v", code, err)
	}
	a := waitActivity(t, ts, dev.Device.ID, "one connection", connCount(1))
	got := a.Connections[0]
	if got.ClientID != dev.Device.ClientID || got.Listener != "mqtt" || got.RemoteAddr != c.LocalAddr().String() {
		t.Fatalf("connection %+v, want client %s on mqtt from %s", got, dev.Device.ClientID, c.LocalAddr())
	}
	if got.Since.Before(start) || got.Since.After(time.Now()) || got.Since.Location() != time.UTC {
		t.Fatalf("connected at %v, want a UTC time from %v to now", got.Since, start)
	}
	if a.LastPublish != nil {
		t.Fatalf("last publish %v before any publish", a.LastPublish)
	}
	if len(ts.srv.DeviceActivity()) != 1 {
		t.Fatalf("anonymous or idle device listed: %+v", ts.srv.DeviceActivity())
	}

	// Refused (not granted on other): no PUBACK success, no time.
	if err := c.Publish(fmt.Sprintf("channels/%d/publish", other), 1, 1, []byte("field1=1")); err != nil {
		t.Fatal(err)
	}
	if _, code, err := c.ReadPuback(); err != nil || code < 0x80 {
		t.Fatalf("refused publish: PUBACK %#x %v", code, err)
	}
	if a := ts.srv.DeviceActivity()[dev.Device.ID]; a.LastPublish != nil {
		t.Fatalf("refused publish set last publish %v", a.LastPublish)
	}

	if err := c.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, 2, []byte("field1=1")); err != nil {
		t.Fatal(err)
	}
	if _, code, err := c.ReadPuback(); err != nil || code != 0 {
		t.Fatalf("publish: PUBACK %#x %v", code, err)
	}
	a = ts.srv.DeviceActivity()[dev.Device.ID]
	if a.LastPublish == nil || a.LastPublish.Before(start) || a.LastPublish.After(time.Now()) {
		t.Fatalf("last publish %v after an accepted publish at %v", a.LastPublish, start)
	}
	published := *a.LastPublish

	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	a = waitActivity(t, ts, dev.Device.ID, "no connection after DISCONNECT", connCount(0))
	if a.Connections == nil || a.LastPublish == nil || !a.LastPublish.Equal(published) {
		t.Fatalf("after disconnect: %+v, want connections [] and last publish %v", a, published)
	}
	if _, ok := ts.srv.DeviceActivity()[idle.Device.ID]; ok {
		t.Fatal("a device that never connected is listed")
	}

	// QoS 0 publishes are accepted without an acknowledgement.
	c2 := dial(t, ts.addr)
	deviceConnect(t, c2, idle, 4)
	if err := c2.Publish(fmt.Sprintf("channels/%d/publish", ch), 0, 0, []byte("field1=2")); err != nil {
		t.Fatal(err)
	}
	waitActivity(t, ts, idle.Device.ID, "last publish after a QoS 0 publish", func(a auth.Activity, _ bool) bool {
		return a.LastPublish != nil && len(a.Connections) == 1
	})
}

// TestDeviceActivityConnectionsEnd: no connection stays listed after a
// takeover, a refused CONNECT, a password reset or a device's deletion,
// and a deleted device's record is dropped.
func TestDeviceActivityConnectionsEnd(t *testing.T) {
	ts := startServer(t, broker.Options{Logger: quietLogger()})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	id := dev.Device.ID

	first := dial(t, ts.addr)
	deviceConnect(t, first, dev, 4)
	waitActivity(t, ts, id, "first connection", connCount(1))
	second := dial(t, ts.addr)
	deviceConnect(t, second, dev, 4) // takes the first over
	expectClosed(t, first, 5*time.Second)
	a := waitActivity(t, ts, id, "only the second connection", func(a auth.Activity, _ bool) bool {
		return len(a.Connections) == 1 && a.Connections[0].RemoteAddr == second.LocalAddr().String()
	})
	if a.Connections[0].RemoteAddr == first.LocalAddr().String() {
		t.Fatal("the taken-over connection is listed")
	}

	// Refused CONNECTs never count: a wrong password, and an anonymous
	// one with the device's client ID.
	for _, p := range []mqtttest.Connect{
		{ClientID: dev.Device.ClientID, Username: dev.Device.Username, Password: "wrong", Clean: true},
		{ClientID: dev.Device.ClientID, Clean: true},
	} {
		c := dial(t, ts.addr)
		if code, err := c.Connect(p); err != nil || code == 0 {
			t.Fatalf("CONNACK %#x %v, want a refusal", code, err)
		}
		if n := len(ts.srv.DeviceActivity()[id].Connections); n != 1 {
			t.Fatalf("%d connections after a refused CONNECT, want 1", n)
		}
	}

	if err := second.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, 1, []byte("field1=1")); err != nil {
		t.Fatal(err)
	}
	if _, code, err := second.ReadPuback(); err != nil || code != 0 {
		t.Fatalf("PUBACK %#x %v", code, err)
	}
	cr, err := ts.svc.ResetPassword(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, second, 5*time.Second)
	a = waitActivity(t, ts, id, "no connection after a password reset", connCount(0))
	if a.LastPublish == nil {
		t.Fatal("a password reset forgot the last publish")
	}

	third := dial(t, ts.addr)
	deviceConnect(t, third, cr, 4)
	waitActivity(t, ts, id, "a connection with the new password", connCount(1))
	if err := ts.svc.DeleteDevice(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, third, 5*time.Second)
	waitActivity(t, ts, id, "nothing after deletion", func(_ auth.Activity, present bool) bool { return !present })
}
