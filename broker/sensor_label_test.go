package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
)

// TestSensorLabelSpelledLikeField: a field labelled like another,
// disabled field ("field3" on field1) is written through
// devices/<id>/sensors/field3/value, and that topic is a valid filter. A
// subscriber granted it must then receive what a publish to it wrote, as
// one by the channel's name does (devices/<name>/sensors/field3/value):
// a filter is refused, or served, never granted and left silent.
func TestSensorLabelSpelledLikeField(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ch, err := ts.svc.CreateChannel(context.Background(), auth.ChannelSpec{Name: "green", Public: true, Fields: [8]string{"field3"}})
	if err != nil {
		t.Fatal(err)
	}
	byID := fmt.Sprintf("devices/%d/sensors/field3/value", ch.ID)
	byName := "devices/green/sensors/field3/value"
	subs := map[string]bool{}
	idSub := rawAnonymous(t, ts.addr, "by-id")
	code, err := idSub.Subscribe(1, byID)
	if err != nil {
		t.Fatal(err)
	}
	subs[byID] = code < 0x80
	nameSub := rawAnonymous(t, ts.addr, "by-name")
	if code, err := nameSub.Subscribe(1, byName); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v for %s", code, err, byName)
	}

	dev := rawDevice(t, ts.addr, ts.device(pubsub(ch.ID)), 5)
	if err := dev.Publish(byID, 1, 1, []byte(`{"value":"42"}`)); err != nil {
		t.Fatal(err)
	}
	if _, code, err := dev.ReadPuback(); err != nil || code != 0 {
		t.Fatalf("PUBACK %#x %v", code, err)
	}
	if e := ts.entries(ch.ID); len(e) != 1 || !strings.Contains(e[0], `"field1":"42"`) {
		t.Fatalf("stored %v, want field1=42", e)
	}
	if topic, payload := readPublish(t, nameSub); topic != byName || !strings.Contains(payload, `"42"`) {
		t.Fatalf("by name: got %s %s", topic, payload)
	}
	if !subs[byID] {
		return // refused: fine, as long as it is not granted and silent
	}
	if topic, payload := readPublish(t, idSub); topic != byID || !strings.Contains(payload, `"42"`) {
		t.Fatalf("by ID: got %s %s", topic, payload)
	}
}
