package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

func dial(t *testing.T, addr string) *mqtttest.Conn {
	t.Helper()
	c, err := mqtttest.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectClosed asserts that the server closes c within limit.
func expectClosed(t *testing.T, c *mqtttest.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	for {
		if _, _, err := c.ReadPacket(); err != nil {
			if err != io.EOF && !isReset(err) {
				t.Fatalf("connection not closed by the server within %v: %v", limit, err)
			}
			return time.Since(start)
		}
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestUmqttStyleClient connects like MicroPython's umqtt.simple in the
// classic ESP32 tutorial: keepalive 0, clean session, anonymous, QoS 0
// publish with the write key in the topic, then disconnect.
func TestUmqttStyleClient(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ch := ts.channel(false)
	c, err := ts.svc.Channel(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		conn := dial(t, ts.addr)
		code, err := conn.Connect(mqtttest.Connect{ClientID: "umqtt_client", Clean: true})
		if err != nil || code != 0 {
			t.Fatalf("CONNACK %d, %v", code, err)
		}
		topic := fmt.Sprintf("channels/%d/publish/%s", ch, c.WriteKey)
		if err := conn.Publish(topic, 0, 0, []byte(fmt.Sprintf("field1=%d&field2=%d", i, i*10))); err != nil {
			t.Fatal(err)
		}
		conn.Disconnect()
	}
	waitEntries(t, ts, ch, 3)
}

// TestIdleKeepaliveZeroDropped checks that a keepalive-0 connection is
// dropped after idle_timeout, here shortened to 2s.
func TestIdleKeepaliveZeroDropped(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, IdleTimeout: 2 * time.Second})
	conn := dial(t, ts.addr)
	if code, err := conn.Connect(mqtttest.Connect{ClientID: "idle", Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %d, %v", code, err)
	}
	if d := expectClosed(t, conn, 10*time.Second); d < time.Second {
		t.Fatalf("dropped after %v, before the idle timeout", d)
	}
}

// TestNoConnectClosed checks that a connection that never sends CONNECT is
// closed after connect_timeout.
func TestNoConnectClosed(t *testing.T) {
	ts := startServer(t, broker.Options{ConnectTimeout: 500 * time.Millisecond})
	conn := dial(t, ts.addr)
	expectClosed(t, conn, 5*time.Second)
}

// TestResetPasswordClosesLiveConnections checks revocation: after a reset
// the old connection is closed and the old password is refused.
func TestResetPasswordClosesLiveConnections(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	conn := dial(t, ts.addr)
	code, err := conn.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Keepalive: 60})
	if err != nil || code != 0 {
		t.Fatalf("CONNACK %d, %v", code, err)
	}
	fresh, err := ts.svc.ResetPassword(context.Background(), dev.Device.ID)
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, conn, 5*time.Second)
	if _, code, _ := connect(t, ts.addr, dev, 4); code != 0x04 {
		t.Fatalf("old password: CONNACK %#x, want 0x04", code)
	}
	if _, code, err := connect(t, ts.addr, fresh, 4); err != nil || code != 0 {
		t.Fatalf("new password: CONNACK %#x, %v", code, err)
	}
}

// TestDeauthorizeStopsDeliveries checks that a live subscription stops
// receiving once the device's grant is removed.
func TestDeauthorizeStopsDeliveries(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	reader := ts.device(auth.Grant{ChannelID: ch, Subscribe: true})
	writer := ts.device(auth.Grant{ChannelID: ch, Publish: true})
	sub := mustConnect(t, ts.addr, reader)
	sub.subscribe(t, fmt.Sprintf("channels/%d/subscribe", ch))
	pub := mustConnect(t, ts.addr, writer)
	if err := pub.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=1"); err != nil {
		t.Fatal(err)
	}
	sub.expect(t)
	if _, err := ts.svc.DeauthorizeDevice(context.Background(), reader.Device.ID, ch); err != nil {
		t.Fatal(err)
	}
	if err := pub.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=2"); err != nil {
		t.Fatal(err)
	}
	sub.expectNothing(t)
}

// TestUpdateDeviceGrantsTakeEffect checks that replacing a device's grants
// (the console's Edit) works on live connections at once, as deauthorize
// does: a lost subscribe right stops deliveries, a lost publish right
// stops writes.
func TestUpdateDeviceGrantsTakeEffect(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	other := ts.channel(false)
	reader := ts.device(auth.Grant{ChannelID: ch, Subscribe: true})
	writer := ts.device(auth.Grant{ChannelID: ch, Publish: true})
	sub := mustConnect(t, ts.addr, reader)
	sub.subscribe(t, fmt.Sprintf("channels/%d/subscribe", ch))
	pub := mustConnect(t, ts.addr, writer)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	if err := pub.publish(t, topic, 1, "field1=1"); err != nil {
		t.Fatal(err)
	}
	sub.expect(t)

	ctx := context.Background()
	readerGrants := []auth.Grant{{ChannelID: ch, Publish: true}, {ChannelID: other, Subscribe: true}}
	if _, err := ts.svc.UpdateDevice(ctx, reader.Device.ID, auth.DeviceUpdate{Grants: &readerGrants}); err != nil {
		t.Fatal(err)
	}
	if err := pub.publish(t, topic, 1, "field1=2"); err != nil {
		t.Fatal(err)
	}
	sub.expectNothing(t)

	writerGrants := []auth.Grant{{ChannelID: ch, Subscribe: true}}
	if _, err := ts.svc.UpdateDevice(ctx, writer.Device.ID, auth.DeviceUpdate{Grants: &writerGrants}); err != nil {
		t.Fatal(err)
	}
	// The refused publish is followed by one on a channel the reader may
	// still write, which orders the check after the refusal.
	_ = pub.publish(t, topic, 1, "field1=3")
	if err := sub.publish(t, topic, 1, "field1=4"); err != nil {
		t.Fatal(err)
	}
	es := ts.entries(ch)
	if len(es) != 3 {
		t.Fatalf("stored %d entries, want 3 (the writer's third publish refused):\n%s", len(es), joinLines(es))
	}
	if got := ts.srv.Stats().Rejected["not_authorized"]; got != 1 {
		t.Fatalf("rejected[not_authorized] = %d, want 1", got)
	}
}

// TestBadPublishesRejected covers topics and payloads that must never
// become entries.
func TestBadPublishesRejected(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false, "only field1")
	dev := ts.device(pubsub(ch))
	c := mustConnect(t, ts.addr, dev)
	cases := []struct{ topic, payload, reason string }{
		{fmt.Sprintf("channels/%d/publish", ch), "field2=1", "bad_payload"},
		{fmt.Sprintf("channels/%d/publish", ch), "field1=%zz", "bad_payload"},
		{fmt.Sprintf("channels/%d/publish", ch), "", "bad_payload"},
		{fmt.Sprintf("channels/%d/publish", ch), "field1=" + string(make([]byte, 3001)), "too_large"},
		{fmt.Sprintf("channels/%d/subscribe", ch), "field1=1", "bad_topic"},
		{"channels/999/publish", "field1=1", "unknown_channel"},
		{"some/other/topic", "x", "not_authorized"}, // a free topic without a rule
	}
	for _, tc := range cases {
		if err := c.publish(t, tc.topic, 0, tc.payload); err != nil {
			t.Fatal(err)
		}
	}
	// A good publish after the bad ones proves the connection survived and
	// orders the checks after the rejections were processed.
	if err := c.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=ok"); err != nil {
		t.Fatal(err)
	}
	if es := ts.entries(ch); len(es) != 1 {
		t.Fatalf("stored %d entries, want 1:\n%s", len(es), joinLines(es))
	}
	want := map[string]uint64{}
	for _, tc := range cases {
		want[tc.reason]++
	}
	got := ts.srv.Stats().Rejected
	for r, n := range want {
		if got[r] != n {
			t.Errorf("rejected[%s] = %d, want %d (all: %v)", r, got[r], n, got)
		}
	}
}

// TestPublicChannelAndReadKey: anyone may subscribe to a public channel;
// a private one needs a grant or its read key.
func TestPublicChannelAndReadKey(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	public, private := ts.channel(true), ts.channel(false)
	conn := dial(t, ts.addr)
	if code, err := conn.Connect(mqtttest.Connect{ClientID: "reader", Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %d, %v", code, err)
	}
	if code, _ := conn.Subscribe(1, fmt.Sprintf("channels/%d/subscribe", public)); code != 0 {
		t.Fatalf("public: SUBACK %#x", code)
	}
	if code, _ := conn.Subscribe(2, fmt.Sprintf("channels/%d/subscribe", private)); code != 0x80 {
		t.Fatalf("private without key: SUBACK %#x, want 0x80", code)
	}
	c, _ := ts.svc.Channel(context.Background(), private)
	if code, _ := conn.Subscribe(3, fmt.Sprintf("channels/%d/subscribe/json/%s", private, c.ReadKey)); code != 0 {
		t.Fatalf("private with read key: SUBACK %#x", code)
	}
	if code, _ := conn.Subscribe(4, fmt.Sprintf("channels/%d/subscribe/json/%s", private, c.WriteKey)); code != 0x80 {
		t.Fatalf("private with write key as read key: SUBACK %#x, want 0x80", code)
	}
	if code, _ := conn.Subscribe(5, "$SYS/#"); code != 0x80 {
		t.Fatalf("$SYS: SUBACK %#x, want 0x80", code)
	}
}

// TestFailedLoginsThrottled: after the configured failures, an address is
// refused (CONNACK 0x03) even with the right password, until the back-off
// ends; the sweep of failures does not touch other connections.
func TestFailedLoginsThrottled(t *testing.T) {
	ts := startServer(t, broker.Options{AuthBackoff: broker.AuthBackoff{AfterFailures: 3, Initial: 2 * time.Second}})
	dev := ts.device()
	live := rawDevice(t, ts.addr, ts.device(), 4)
	bad := *dev
	bad.Password = "wrong"
	for i := 0; i < 3; i++ {
		if _, code, _ := connect(t, ts.addr, &bad, 4); code != 0x04 {
			t.Fatalf("failure %d: CONNACK %#x, want 0x04", i+1, code)
		}
	}
	if _, code, _ := connect(t, ts.addr, dev, 4); code != 0x03 {
		t.Fatalf("during back-off: CONNACK %#x, want 0x03", code)
	}
	if code, err := live.Subscribe(1, "x"); err != nil || code != 0x80 {
		t.Fatalf("an established connection was affected: %#x %v", code, err)
	}
	time.Sleep(4100 * time.Millisecond) // the refused attempt doubled it to 4s
	if _, code, err := connect(t, ts.addr, dev, 4); err != nil || code != 0 {
		t.Fatalf("after back-off: CONNACK %#x %v", code, err)
	}
}

// TestMaxConnections: past max_connections, CONNECT gets 0x03.
func TestMaxConnections(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, MaxConnections: 2})
	rawAnonymous(t, ts.addr, "a")
	b := rawAnonymous(t, ts.addr, "b")
	c := dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: "c", Clean: true}); err != nil || code != 0x03 {
		t.Fatalf("third connection: CONNACK %#x %v, want 0x03", code, err)
	}
	b.Disconnect()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(t, ts.addr)
		code, err := c.Connect(mqtttest.Connect{ClientID: "d", Clean: true})
		if err == nil && code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed after a disconnect: CONNACK %#x %v", code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMaxConnectionsKeepsDevicesIn: anonymous clients filling
// max_connections must not lock the devices out (with anonymous access
// on, anyone can hold the connections for as long as they send PINGREQ).
// A device has one client ID, so devices cannot exceed their own number.
func TestMaxConnectionsKeepsDevicesIn(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, MaxConnections: 2})
	ch := ts.channel(false)
	rawAnonymous(t, ts.addr, "a")
	rawAnonymous(t, ts.addr, "b")
	dev := ts.device(pubsub(ch))
	c := dial(t, ts.addr)
	code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Keepalive: 60})
	if err != nil || code != 0 {
		t.Fatalf("device past anonymous connections at the cap: CONNACK %#x %v, want 0", code, err)
	}
	extra := dial(t, ts.addr)
	if code, err := extra.Connect(mqtttest.Connect{ClientID: "c", Clean: true}); err != nil || code != 0x03 {
		t.Fatalf("third anonymous connection: CONNACK %#x %v, want 0x03", code, err)
	}
}

// TestRateLimit: a second entry within the interval is refused and
// consumes no entry ID; after the interval the channel accepts again.
func TestRateLimit(t *testing.T) {
	ts := startServer(t, broker.Options{RateLimit: 700 * time.Millisecond})
	ch := ts.channel(false)
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 5)
	publish := func(id uint16) byte {
		t.Helper()
		if err := c.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, id, []byte("field1=1")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, code, err := c.ReadPuback()
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	if code := publish(1); code != 0 {
		t.Fatalf("first: PUBACK %#x", code)
	}
	if code := publish(2); code != 0x97 {
		t.Fatalf("too soon: PUBACK %#x, want 0x97 (quota exceeded)", code)
	}
	time.Sleep(800 * time.Millisecond)
	if code := publish(3); code != 0 {
		t.Fatalf("after the interval: PUBACK %#x", code)
	}
	es := ts.entries(ch)
	if len(es) != 2 || !strings.Contains(es[1], `"entry_id":2,`) {
		t.Fatalf("entries %v", es)
	}
	if got := ts.srv.Stats().Rejected["rate_limited"]; got != 1 {
		t.Fatalf("rate_limited = %d", got)
	}
}

// TestChannelRateLimitOverride: a channel's own interval applies even
// when the server has none.
func TestChannelRateLimitOverride(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	hour := time.Hour
	if _, err := ts.svc.UpdateChannel(context.Background(), ch, auth.ChannelUpdate{RateLimit: &hour}); err != nil {
		t.Fatal(err)
	}
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 5)
	for i, want := range []byte{0, 0x97} {
		if err := c.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, uint16(i+1), []byte("field1=1")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, code, err := c.ReadPuback(); err != nil || code != want {
			t.Fatalf("publish %d: PUBACK %#x %v, want %#x", i+1, code, err, want)
		}
	}
}

// TestTakeoverOfLiveConnection checks that a second connection with a
// live connection's client ID takes it over after the grace period: the
// old one is closed, the new one is served.
func TestTakeoverOfLiveConnection(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	old := dial(t, ts.addr)
	if code, err := old.Connect(mqtttest.Connect{ClientID: "dup", Clean: true}); err != nil || code != 0 {
		t.Fatalf("first CONNACK %d, %v", code, err)
	}
	start := time.Now()
	fresh := dial(t, ts.addr)
	if code, err := fresh.Connect(mqtttest.Connect{ClientID: "dup", Clean: true}); err != nil || code != 0 {
		t.Fatalf("second CONNACK %d, %v", code, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("took over after %v, without waiting for the old connection", d)
	}
	expectClosed(t, old, 5*time.Second)
	if code, err := fresh.Subscribe(1, "channels/1/subscribe"); err != nil {
		t.Fatalf("new connection not served: SUBACK %#x, %v", code, err)
	}
}
