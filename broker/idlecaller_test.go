package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/storage"
)

// idleRecorder is the bbolt store, noting for each asynchronous append
// (by its field1) whether it came marked by channels.CallerIdle.
type idleRecorder struct {
	*storage.DB
	seen chan idleSeen
}

type idleSeen struct {
	value string
	idle  bool
}

func (r *idleRecorder) AppendEntryAsync(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	v, _ := e.Field(1)
	r.seen <- idleSeen{v, channels.IsCallerIdle(ctx)}
	return r.DB.AppendEntryAsync(ctx, e, then)
}

// TestIdleCallerHint: a QoS 0 feed publish that is the last packet of a
// read that left its connection's socket empty is appended marked
// channels.CallerIdle (the store may commit it on the reader's goroutine,
// which would only wait for more input otherwise); one with another
// packet behind it in the same read is not, so that a busy reader is not
// held up by a commit.
func TestIdleCallerHint(t *testing.T) {
	rec := &idleRecorder{seen: make(chan idleSeen, 16)}
	ts := &testServer{t: t, dir: t.TempDir(), wrap: func(db *storage.DB) channels.Store {
		rec.DB = db
		return rec
	}}
	ts.start()
	t.Cleanup(ts.stop)
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	// next returns the next append, which should be value's.
	next := func(value string) idleSeen {
		t.Helper()
		select {
		case got := <-rec.seen:
			if got.value != value {
				t.Fatalf("append %q, want %q", got.value, value)
			}
			return got
		case <-time.After(10 * time.Second):
			t.Fatalf("no append for %q", value)
			return idleSeen{}
		}
	}
	expect := func(want ...idleSeen) {
		t.Helper()
		for _, w := range want {
			if got := next(w.value); got.idle != w.idle {
				t.Errorf("append %q marked idle %v, want %v", got.value, got.idle, w.idle)
			}
		}
	}

	if err := c.Publish(topic, 0, 0, []byte("field1=alone")); err != nil {
		t.Fatal(err)
	}
	expect(idleSeen{"alone", true})

	// Two publishes in one write reach the broker in one read.
	two := append(mqtttest.PublishPacket(topic, []byte("field1=first")), mqtttest.PublishPacket(topic, []byte("field1=second"))...)
	if _, err := c.Write(two); err != nil {
		t.Fatal(err)
	}
	expect(idleSeen{"first", false}, idleSeen{"second", true})

	// A publish split across two writes: the read that completes it
	// left the socket empty.
	p := mqtttest.PublishPacket(topic, []byte("field1=split"))
	if _, err := c.Write(p[:5]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // read on its own, most likely; either way the answer is the same
	if _, err := c.Write(p[5:]); err != nil {
		t.Fatal(err)
	}
	expect(idleSeen{"split", true})

	// More than a read buffer at once: only the last publish, read
	// after the socket had been emptied, may be marked; the first ones
	// come from full reads.
	var burst []byte
	n := 0
	for len(burst) < 16<<10 {
		burst = append(burst, mqtttest.PublishPacket(topic, fmt.Appendf(nil, "field1=b%d", n))...)
		n++
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if got := next(fmt.Sprintf("b%d", i)); got.idle && i < 10 {
			t.Errorf("append %q, one of the first of a %d-byte burst, marked idle", got.value, len(burst))
		}
	}
}
