package broker_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// rawDevice connects a device over the wire-level client.
func rawDevice(t *testing.T, addr string, cr *auth.Credentials, version byte) *mqtttest.Conn {
	t.Helper()
	c := dial(t, addr)
	code, err := c.Connect(mqtttest.Connect{ClientID: cr.Device.ClientID, Username: cr.Device.Username,
		Password: cr.Password, Clean: true, Keepalive: 60, Version: version})
	if err != nil || code != 0 {
		t.Fatalf("CONNACK %#x, %v", code, err)
	}
	return c
}

func rawAnonymous(t *testing.T, addr, id string) *mqtttest.Conn {
	t.Helper()
	c := dial(t, addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: id, Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x, %v", code, err)
	}
	return c
}

// readPublish reads one PUBLISH within 5s.
func readPublish(t *testing.T, c *mqtttest.Conn) (string, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	topic, payload, err := c.ReadPublish()
	if err != nil {
		t.Fatalf("read publish: %v", err)
	}
	return topic, string(payload)
}

// readNothing asserts that nothing arrives for a short while.
func readNothing(t *testing.T, c *mqtttest.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if topic, payload, err := c.ReadPublish(); err == nil {
		t.Fatalf("unexpected publish on %s: %s", topic, payload)
	}
}

// TestMQTT5ReasonCodes: MQTT 5 clients learn why a QoS 1 publish or a
// subscription was refused, and keep their connection.
func TestMQTT5ReasonCodes(t *testing.T) {
	ts := startServer(t, broker.Options{})
	mine, theirs := ts.channel(false, "f1"), ts.channel(false)
	c := rawDevice(t, ts.addr, ts.device(pubsub(mine)), 5)
	cases := []struct {
		topic, payload string
		code           byte
	}{
		{fmt.Sprintf("channels/%d/publish", theirs), "field1=1", 0x87},
		{fmt.Sprintf("channels/%d/publish", mine), "field2=1", 0x99},
		{fmt.Sprintf("channels/%d/publish", mine), "field1=" + strings.Repeat("x", 3000), 0x95},
		{"channels/4242/publish", "field1=1", 0x90},
		{fmt.Sprintf("channels/%d/publish", mine), "field1=1", 0x00},
	}
	for i, tc := range cases {
		if err := c.Publish(tc.topic, 1, uint16(i+1), []byte(tc.payload)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		id, code, err := c.ReadPuback()
		if err != nil || id != uint16(i+1) || code != tc.code {
			t.Fatalf("%s %q: PUBACK id %d code %#x err %v, want code %#x", tc.topic, tc.payload, id, code, err, tc.code)
		}
	}
	if code, err := c.Subscribe(10, fmt.Sprintf("channels/%d/subscribe", theirs)); err != nil || code != 0x87 {
		t.Fatalf("SUBACK %#x %v, want 0x87", code, err)
	}
	if n := len(ts.entries(mine)); n != 1 {
		t.Fatalf("%d entries stored, want 1", n)
	}
}

// TestLegacySubscribeForms: the legacy ThingSpeak filters deliver the same
// payloads, and a topic carrying a read key never reaches anyone else.
func TestLegacySubscribeForms(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ch := ts.channel(false)
	c, _ := ts.svc.Channel(context.Background(), ch)
	key := c.ReadKey
	jsonSub := rawAnonymous(t, ts.addr, "json")
	if code, _ := jsonSub.Subscribe(1, fmt.Sprintf("channels/%d/subscribe/json/%s", ch, key)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	fieldSub := rawAnonymous(t, ts.addr, "field")
	if code, _ := fieldSub.Subscribe(1, fmt.Sprintf("channels/%d/subscribe/fields/field2/%s", ch, key)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	plusSub := rawAnonymous(t, ts.addr, "plus")
	if code, _ := plusSub.Subscribe(1, fmt.Sprintf("channels/%d/subscribe/fields/+/%s", ch, key)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	// A device entitled to the channel, subscribed to everything, must see
	// the canonical topics only: never one with the key in it.
	all := rawDevice(t, ts.addr, ts.device(auth.Grant{ChannelID: ch, Subscribe: true}), 4)
	if code, _ := all.Subscribe(1, "#"); code != 0 {
		t.Fatalf("SUBACK # %#x", code)
	}

	pub := rawDevice(t, ts.addr, ts.device(auth.Grant{ChannelID: ch, Publish: true}), 4)
	if err := pub.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, 1, []byte("field1=1&field2=2&created_at=2026-11-22T10:00:00Z")); err != nil {
		t.Fatal(err)
	}
	feed := fmt.Sprintf(`{"channel_id":%d,"created_at":"2026-11-22T10:00:00Z","entry_id":1,"field1":"1","field2":"2",`+
		`"field3":null,"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,`+
		`"latitude":null,"longitude":null,"elevation":null,"status":null}`, ch)
	if topic, payload := readPublish(t, jsonSub); topic != fmt.Sprintf("channels/%d/subscribe/json/%s", ch, key) || payload != feed {
		t.Fatalf("json/KEY got %s %s", topic, payload)
	}
	readNothing(t, jsonSub)
	if topic, payload := readPublish(t, fieldSub); topic != fmt.Sprintf("channels/%d/subscribe/fields/field2/%s", ch, key) || payload != "2" {
		t.Fatalf("field2/KEY got %s %s", topic, payload)
	}
	readNothing(t, fieldSub)
	got := map[string]string{}
	for range 2 {
		topic, payload := readPublish(t, plusSub)
		got[topic] = payload
	}
	if got[fmt.Sprintf("channels/%d/subscribe/fields/field1/%s", ch, key)] != "1" ||
		got[fmt.Sprintf("channels/%d/subscribe/fields/field2/%s", ch, key)] != "2" {
		t.Fatalf("fields/+/KEY got %v", got)
	}
	// "#" also matches the Waziup sensor topics of the two fields.
	seen := map[string]bool{}
	for range 5 {
		topic, _ := readPublish(t, all)
		if strings.Contains(topic, key) || strings.HasSuffix(topic, "/json") {
			t.Fatalf("# subscriber got legacy topic %s", topic)
		}
		seen[topic] = true
	}
	readNothing(t, all)
	if len(seen) != 5 || !seen[fmt.Sprintf("devices/%d/sensors/field2/value", ch)] {
		t.Fatalf("# subscriber saw %v", seen)
	}
}

// TestWildcardsDeliverOnlyReadableChannels: channels/+/subscribe and #
// are allowed, and each delivery is checked against the subscriber's
// rights.
func TestWildcardsDeliverOnlyReadableChannels(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	mine, other, public := ts.channel(false), ts.channel(false), ts.channel(true)
	sub := rawDevice(t, ts.addr, ts.device(auth.Grant{ChannelID: mine, Subscribe: true}), 4)
	if code, _ := sub.Subscribe(1, "channels/+/subscribe"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	anon := rawAnonymous(t, ts.addr, "anon")
	if code, _ := anon.Subscribe(1, "#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	for _, bad := range []string{"$SYS/#", "$share/g/channels/1/subscribe", "foo/bar", "channels/1/publish", "channels/+/publish"} {
		if code, _ := anon.Subscribe(2, bad); code != 0x80 {
			t.Fatalf("SUBACK for %s: %#x, want 0x80", bad, code)
		}
	}
	pub := rawDevice(t, ts.addr, ts.device(pubsub(mine), pubsub(other), pubsub(public)), 4)
	for i, ch := range []uint64{other, mine, public} {
		if err := pub.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, uint16(i+1), []byte("field1=1")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := pub.ReadPuback(); err != nil {
			t.Fatal(err)
		}
	}
	// The device reads its own channel and the public one; anonymous reads
	// only the public one (feed and field topics).
	for _, want := range []uint64{mine, public} {
		if topic, _ := readPublish(t, sub); topic != fmt.Sprintf("channels/%d/subscribe", want) {
			t.Fatalf("device got %s, want channel %d", topic, want)
		}
	}
	readNothing(t, sub)
	for _, want := range []string{fmt.Sprintf("channels/%d/subscribe", public), fmt.Sprintf("channels/%d/subscribe/fields/field1", public),
		fmt.Sprintf("devices/%d/sensors/field1/value", public)} {
		if topic, _ := readPublish(t, anon); topic != want {
			t.Fatalf("anonymous got %s, want %s", topic, want)
		}
	}
	readNothing(t, anon)
}

// TestStalledSubscriberNeverBlocksPublishers: a subscriber that stops
// reading is cut off after the write timeout; publishers and shutdown go
// on.
func TestStalledSubscriberNeverBlocksPublishers(t *testing.T) {
	ts := startServer(t, broker.Options{WriteTimeout: 500 * time.Millisecond,
		Limits: channels.Limits{MaxPayload: 60000, MaxValueLen: 19000}})
	ch := ts.channel(false)
	stalled := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	if code, _ := stalled.Subscribe(1, fmt.Sprintf("channels/%d/subscribe", ch)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	// From here on `stalled` never reads. 300 entries of about 57 KB of
	// JSON each overflow the socket buffers.
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	payload := []byte("field1=" + strings.Repeat("v", 19000) + "&field2=" + strings.Repeat("w", 19000) + "&status=" + strings.Repeat("s", 19000))
	start := time.Now()
	for i := 1; i <= 300; i++ {
		if err := pub.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, uint16(i), payload); err != nil {
			t.Fatal(err)
		}
		_ = pub.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := pub.ReadPuback(); err != nil {
			t.Fatalf("publish %d after %v: %v", i, time.Since(start), err)
		}
	}
	// Publishing may finish before the server's blocked write reaches its
	// timeout; reading now would unblock it. So wait out the timeout
	// first (the socket buffers hold far less than 300 entries).
	time.Sleep(3 * 500 * time.Millisecond)
	// The stalled connection has been closed by the server: draining it
	// ends in EOF or a reset, not in our read timeout.
	_ = stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1<<20)
	for {
		_, err := stalled.Read(buf)
		if err == nil {
			continue
		}
		if err != io.EOF && !isReset(err) {
			t.Fatalf("stalled subscriber still connected: %v", err)
		}
		break
	}
}

// TestDeleteDeviceClosesConnections: deleting a device ends its sessions.
func TestDeleteDeviceClosesConnections(t *testing.T) {
	ts := startServer(t, broker.Options{})
	dev := ts.device()
	c := rawDevice(t, ts.addr, dev, 4)
	if err := ts.svc.DeleteDevice(context.Background(), dev.Device.ID); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 5*time.Second)
}
