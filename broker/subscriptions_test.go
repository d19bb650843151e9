package broker_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestSubscriptionLimit: a client holds at most MaxSubscriptions filters.
// Filters past it are refused with 0x97 (MQTT 5) or 0x80 (3.1.1), counted
// within one SUBSCRIBE too; a filter held already does not count twice,
// UNSUBSCRIBE frees a slot, and a filter refused for another reason keeps
// its own code. Filters longer than any topic are refused unparsed.
func TestSubscriptionLimit(t *testing.T) {
	var logs syncBuffer
	ts := startServer(t, broker.Options{Anonymous: true, MaxSubscriptions: 3,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	pub := ts.channel(true)
	priv := ts.channel(false)
	for _, version := range []byte{5, 4} {
		quota, invalid := byte(0x97), byte(0x8f)
		denied := byte(0x87)
		if version == 4 {
			quota, invalid, denied = 0x80, 0x80, 0x80
		}
		c := dial(t, ts.addr)
		id := fmt.Sprintf("limit%d", version)
		if code, err := c.Connect(mqtttest.Connect{ClientID: id, Clean: true, Version: version}); err != nil || code != 0 {
			t.Fatalf("CONNACK %#x %v", code, err)
		}
		feed := fmt.Sprintf("channels/%d/subscribe", pub)
		check := func(pid uint16, want []byte, filters ...string) {
			t.Helper()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := c.SubscribeMany(pid, filters...)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("v%d SUBACK %x %v for %q, want %x", version, got, err, filters, want)
			}
		}
		check(1, []byte{0, 0, 0, 0, quota, quota},
			feed, "+/+/subscribe", feed, "channels/+/subscribe", "#", "channels/#")
		check(2, []byte{0, denied}, feed, fmt.Sprintf("channels/%d/subscribe", priv)) // held; private
		check(3, []byte{invalid}, "channels/"+strings.Repeat("9", 60000)+"/+")
		check(4, []byte{invalid, quota}, strings.Repeat("a/", channels.MaxTopicLen), "#")
		if _, err := c.Unsubscribe(5, "+/+/subscribe"); err != nil {
			t.Fatal(err)
		}
		check(6, []byte{0, quota}, "#", "channels/#")

		// The granted filters still deliver.
		w := rawAnonymous(t, ts.addr, "w"+id)
		c0, _ := ts.svc.Channel(t.Context(), pub)
		if err := w.Publish(fmt.Sprintf("channels/%d/publish/%s", pub, c0.WriteKey), 1, 1, []byte("field1=1")); err != nil {
			t.Fatal(err)
		}
		if _, code, err := w.ReadPuback(); err != nil || code != 0 {
			t.Fatalf("PUBACK %#x %v", code, err)
		}
		if topic, _ := readPublish(t, c); topic != feed {
			t.Fatalf("got %s", topic)
		}
	}
	// One line per connection and limit, without the filters.
	out := logs.String()
	if n := strings.Count(out, "subscription limit reached"); n != 2 {
		t.Errorf("%d quota lines, want one per connection:\n%s", n, out)
	}
	if n := strings.Count(out, "filter too long"); n != 2 {
		t.Errorf("%d length lines, want one per connection:\n%s", n, out)
	}
	if strings.Contains(out, "99999999") || strings.Contains(out, "a/a/a/") || len(out) > 16<<10 {
		t.Errorf("log quotes long filters (%d bytes)", len(out))
	}
}
