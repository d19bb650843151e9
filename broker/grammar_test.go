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

// TestNumericChannelNameDoesNotLeak: a private channel named like another
// channel's ID must not reach readers of that ID's sensor topics. Creating
// such a name is refused; a name that an older database already holds
// (put into the registry as loading it would) is never used in a topic.
func TestNumericChannelNameDoesNotLeak(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ctx := context.Background()
	public, err := ts.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "outside", Public: true, Fields: [8]string{"Temperature"}})
	if err != nil {
		t.Fatal(err)
	}
	if public.ID != 1 {
		t.Fatalf("first channel has ID %d, want 1", public.ID)
	}
	secret, err := ts.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "secret", Fields: [8]string{"Temperature"}})
	if err != nil {
		t.Fatal(err)
	}
	// An older database may hold the name anyway.
	legacy := *secret
	legacy.Name = "1"
	ts.svc.Registry.PutChannel(&legacy)

	sub := rawAnonymous(t, ts.addr, "reader")
	if code, err := sub.Subscribe(1, "devices/1/sensors/Temperature/value"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	pub := rawAnonymous(t, ts.addr, "writer")
	for i, c := range []*channels.Channel{secret, public} {
		topic := fmt.Sprintf("channels/%d/publish/%s", c.ID, c.WriteKey)
		if err := pub.Publish(topic, 1, uint16(i+1), []byte(fmt.Sprintf("field1=%d", 100+c.ID))); err != nil {
			t.Fatal(err)
		}
		if _, code, err := pub.ReadPuback(); err != nil || code != 0 {
			t.Fatalf("PUBACK %#x %v", code, err)
		}
	}
	// Entries fan out in order: the secret one first, if at all.
	topic, payload := readPublish(t, sub)
	if want := fmt.Sprintf(`"%d"`, 100+public.ID); topic != "devices/1/sensors/Temperature/value" || !strings.Contains(payload, want) {
		t.Fatalf("got %s %s, want channel 1's value %s only", topic, payload, want)
	}
	readNothing(t, sub)

	// Addressed by the name, the channel is not found either.
	dev := rawDevice(t, ts.addr, ts.device(pubsub(secret.ID)), 5)
	if err := dev.Publish("devices/1/sensors/Temperature/value", 1, 1, []byte(`{"value":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if _, code, err := dev.ReadPuback(); err != nil || code != 0x87 {
		t.Fatalf("publish by the numeric name: PUBACK %#x %v, want 0x87 (channel 1, not granted)", code, err)
	}
	if n := len(ts.entries(secret.ID)); n != 1 {
		t.Fatalf("%d entries on the secret channel, want 1", n)
	}

	// Creating or renaming to such a name is refused.
	if _, err := ts.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "1", Fields: [8]string{"Temperature"}}); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("create a channel named 1: %v, want EINVALID", err)
	}
	for _, name := range []string{"1", "02"} {
		if _, err := ts.svc.UpdateChannel(ctx, public.ID, auth.ChannelUpdate{Name: &name}); channels.ErrorCode(err) != channels.EINVALID {
			t.Fatalf("rename to %q: %v, want EINVALID", name, err)
		}
	}
}

// TestNonCanonicalChannelIDs: a channel ID has one spelling. "01" is not
// channel 1 in any topic: such publishes are bad topics (the same answer as
// any other malformed topic), nothing is stored, and such filters are
// refused rather than granted and never served.
func TestNonCanonicalChannelIDs(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ch := ts.channel(true, "Temperature")
	if ch != 1 {
		t.Fatalf("channel ID %d, want 1", ch)
	}
	c, _ := ts.svc.Channel(context.Background(), ch)
	v5 := dial(t, ts.addr)
	if code, err := v5.Connect(mqtttest.Connect{ClientID: "v5", Clean: true, Version: 5}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	bad := []struct{ topic, payload string }{
		{"channels/x/publish/" + c.WriteKey, "field1=1"}, // any other bad topic, for comparison
		{"channels/01/publish/" + c.WriteKey, "field1=1"},
		{"channels/01/publish/fields/field1/" + c.WriteKey, "1"},
		{"channels/00000000000000000001/publish/" + c.WriteKey, "field1=1"},
		{"channels/18446744073709551617/publish/" + c.WriteKey, "field1=1"},
		{"devices/01/sensors/field1/value", `{"value":"1"}`},
		{"devices/01/sensors/Temperature/value", `{"value":"1"}`},
		{"devices/001/sensors/field1/value", `{"value":"1"}`},
		{"devices/0/sensors/field1/value", `{"value":"1"}`},
	}
	for i, tc := range bad {
		if err := v5.Publish(tc.topic, 1, uint16(i+1), []byte(tc.payload)); err != nil {
			t.Fatal(err)
		}
		_ = v5.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, code, err := v5.ReadPuback(); err != nil || code != 0x90 {
			t.Fatalf("%s: PUBACK %#x %v, want 0x90 (topic name invalid)", tc.topic, code, err)
		}
	}
	// MQTT 3.1.1 at QoS 1: every bad topic closes the connection (any
	// PUBACK would claim the entry was stored).
	for _, tc := range bad {
		v3 := rawAnonymous(t, ts.addr, "v3")
		if err := v3.Publish(tc.topic, 1, 1, []byte(tc.payload)); err != nil {
			t.Fatal(err)
		}
		_ = v3.SetReadDeadline(time.Now().Add(5 * time.Second))
		if typ, _, err := v3.ReadPacket(); err == nil {
			t.Fatalf("%s over 3.1.1: got packet type %d, want the connection closed", tc.topic, typ)
		}
	}
	if n := len(ts.entries(ch)); n != 0 {
		t.Fatalf("%d entries stored on channel 1, want 0", n)
	}
	sub := rawAnonymous(t, ts.addr, "sub")
	for i, f := range []string{
		"channels/01/subscribe", "channels/01/subscribe/fields/field1", "channels/01/+", "+/01/subscribe",
		"channels/01/subscribe/fields/+", "devices/01/sensors/field1/value", "devices/01/sensors/+/value",
		"devices/01/#", "channels/18446744073709551616/subscribe/#",
	} {
		if code, err := sub.Subscribe(uint16(i+1), f); err != nil || code != 0x80 {
			t.Fatalf("SUBACK %#x %v for %s, want 0x80", code, err, f)
		}
	}
	// The canonical spellings work.
	for i, f := range []string{"channels/1/subscribe", "devices/1/sensors/field1/value", "+/1/subscribe"} {
		if code, err := sub.Subscribe(uint16(20+i), f); err != nil || code != 0 {
			t.Fatalf("SUBACK %#x %v for %s, want 0", code, err, f)
		}
	}
}
