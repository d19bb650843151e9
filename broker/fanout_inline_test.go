package broker_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
)

// A queued entry that is the only one in the commit is fanned out on the
// goroutine that committed it, the others on the fan-out loop. Entries
// alternating between the two (single publishes, each delivered before
// the next, and bursts) reach a subscriber in commit order, which is
// entry ID order for one channel, and every delivery once; a QoS 1
// publisher's PUBACKs come in the order of its publishes and its entries
// in that order too. Both paths must have been taken, or the test proves
// nothing.
func TestFanOutInlineAndLoopOrder(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch0, ch1 := ts.channel(false), ts.channel(false)
	sub := rawDevice(t, ts.addr, ts.device(pubsub(ch0), pubsub(ch1)), 4)
	for i, f := range []string{channels.FeedTopic(ch0), channels.FeedTopic(ch1)} {
		if code, err := sub.Subscribe(uint16(i+1), f); err != nil || code != 0 {
			t.Fatalf("subscribe %s: %#x %v", f, code, err)
		}
	}
	// Two QoS 0 publishers on ch0 (single publishes and bursts) and one
	// QoS 1 publisher on ch1 (single publishes and pipelined ones).
	single := rawDevice(t, ts.addr, ts.device(pubsub(ch0)), 4)
	burst := rawDevice(t, ts.addr, ts.device(pubsub(ch0)), 4)
	acked := rawDevice(t, ts.addr, ts.device(pubsub(ch1)), 5)
	topic0, topic1 := fmt.Sprintf("channels/%d/publish", ch0), fmt.Sprintf("channels/%d/publish", ch1)
	var inline, looped atomic.Int64
	setFanOutHook(t, func(e *channels.Entry, in bool) {
		switch {
		case e.ChannelID != ch0 && e.ChannelID != ch1:
		case in:
			inline.Add(1)
		default:
			looped.Add(1)
		}
	})

	type delivery struct {
		ch, id uint64
		value  string
	}
	got := make(chan delivery, 4096)
	readErr := make(chan error, 1)
	go func() {
		for {
			_ = sub.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, payload, err := sub.ReadPublish()
			if err != nil {
				readErr <- err
				return
			}
			d, err := parseDelivery(payload)
			if err != nil {
				readErr <- err
				return
			}
			got <- delivery{d.ch, d.id, d.value}
		}
	}()
	var want0, want1 []string // each publisher's values, in the order sent
	var pubID uint16
	next := func() delivery {
		t.Helper()
		select {
		case d := <-got:
			return d
		case err := <-readErr:
			t.Fatalf("subscriber: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery in 10 s")
		}
		return delivery{}
	}
	var all []delivery
	publishAcked := func(n int) {
		t.Helper()
		first := pubID + 1
		for range n {
			pubID++
			v := fmt.Sprint("q", pubID)
			want1 = append(want1, v)
			if err := acked.Publish(topic1, 1, pubID, []byte("field1="+v)); err != nil {
				t.Fatal(err)
			}
		}
		_ = acked.SetReadDeadline(time.Now().Add(10 * time.Second))
		for id := first; id <= pubID; id++ {
			got, code, err := acked.ReadPuback()
			if err != nil || got != id || code != 0 {
				t.Fatalf("PUBACK id %d code %#x (%v), want id %d code 0", got, code, err, id)
			}
		}
	}
	const rounds = 40
	for r := range rounds {
		// Alone: delivered before anything else is published.
		v := fmt.Sprint("s", r)
		want0 = append(want0, v)
		if err := single.Publish(topic0, 0, 0, []byte("field1="+v)); err != nil {
			t.Fatal(err)
		}
		all = append(all, next())
		publishAcked(1)
		all = append(all, next())
		// A burst from one connection, a single publish from another
		// in its middle, and pipelined QoS 1 publishes meanwhile.
		for i := range 30 {
			v := fmt.Sprintf("b%d.%d", r, i)
			want0 = append(want0, v)
			if err := burst.Publish(topic0, 0, 0, []byte("field1="+v)); err != nil {
				t.Fatal(err)
			}
			if i == 15 {
				v := fmt.Sprint("m", r)
				want0 = append(want0, v)
				if err := single.Publish(topic0, 0, 0, []byte("field1="+v)); err != nil {
					t.Fatal(err)
				}
			}
		}
		publishAcked(10)
		for len(all) < len(want0)+len(want1) {
			all = append(all, next())
		}
	}
	select {
	case d := <-got:
		t.Fatalf("an extra delivery: %+v", d)
	case <-time.After(100 * time.Millisecond):
	}

	// Each channel's deliveries in entry ID order, none missing; each
	// publisher's values in the order it sent them (the two QoS 0
	// publishers interleave: compare each one's own subsequence).
	lastID := map[uint64]uint64{}
	var seq0s, seq0b, seq1 []string
	for _, d := range all {
		if d.id != lastID[d.ch]+1 {
			t.Fatalf("channel %d: entry %d after %d", d.ch, d.id, lastID[d.ch])
		}
		lastID[d.ch] = d.id
		switch {
		case d.ch == ch1:
			seq1 = append(seq1, d.value)
		case d.value[0] == 'b':
			seq0b = append(seq0b, d.value)
		default:
			seq0s = append(seq0s, d.value)
		}
	}
	var want0s, want0b []string
	for _, v := range want0 {
		if v[0] == 'b' {
			want0b = append(want0b, v)
		} else {
			want0s = append(want0s, v)
		}
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{{"single QoS 0", seq0s, want0s}, {"burst QoS 0", seq0b, want0b}, {"QoS 1", seq1, want1}} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Fatalf("%s publisher's entries arrived as\n%v\nwant\n%v", c.name, c.got, c.want)
		}
	}
	t.Logf("%d deliveries; queued entries fanned out inline %d, on the loop %d", len(all), inline.Load(), looped.Load())
	if inline.Load() < rounds/2 || looped.Load() == 0 {
		t.Fatalf("fanned out inline %d, on the loop %d: both paths must be taken", inline.Load(), looped.Load())
	}
	waitZero(t, "unacked", ts.srv.Unacked)
}

var deliveryRE = regexp.MustCompile(`^\{"channel_id":(\d+),.*"entry_id":(\d+),"field1":"([^"]*)"`)

type parsedDelivery struct {
	ch, id uint64
	value  string
}

// parseDelivery takes the channel, entry ID and field1 of a feed
// delivery.
func parseDelivery(payload []byte) (parsedDelivery, error) {
	m := deliveryRE.FindSubmatch(payload)
	if m == nil {
		return parsedDelivery{}, fmt.Errorf("unexpected delivery %.120s", payload)
	}
	ch, _ := strconv.ParseUint(string(m[1]), 10, 64)
	id, _ := strconv.ParseUint(string(m[2]), 10, 64)
	return parsedDelivery{ch, id, string(m[3])}, nil
}

// setFanOutHook sets the fan-out hook for the test.
func setFanOutHook(t *testing.T, f func(e *channels.Entry, inline bool)) {
	t.Helper()
	broker.SetFanOutHook(f)
	t.Cleanup(func() { broker.SetFanOutHook(nil) })
}

// An entry committed while an earlier one is still on the fan-out loop
// waits for it there, although no other is queued behind it: fanned out
// on the committing goroutine, it would reach subscribers first. The
// loop is held on the first entry; nothing may be delivered meanwhile,
// and after it every entry comes in order.
func TestFanOutInlineWaitsForLoop(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	sub := feedSubscriber(t, ts, ch)
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	other := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)

	onLoop, hold := make(chan string, 16), make(chan struct{})
	var held atomic.Bool
	setFanOutHook(t, func(e *channels.Entry, inline bool) {
		if e.ChannelID != ch {
			return
		}
		v, _ := e.Field(1)
		if inline {
			onLoop <- "inline " + v
			return
		}
		onLoop <- v
		if held.CompareAndSwap(false, true) {
			<-hold
		}
	})
	// Two entries committed together: the first goes to the loop (the
	// other is still queued) and is held there.
	h.hold()
	base := h.Queued()
	for _, v := range []string{"a1", "a2"} {
		if err := pub.Publish(topic, 0, 0, []byte("field1="+v)); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, h, base+2)
	h.release()
	if v := <-onLoop; v != "a1" {
		close(hold)
		t.Fatalf("first fan-out %q, want a1 on the loop", v)
	}
	// a2, then one more from another connection, each committed with
	// no other queued: both wait behind a1.
	if err := other.Publish(topic, 0, 0, []byte("field1=b")); err != nil {
		close(hold)
		t.Fatal(err)
	}
	waitQueued(t, h, base+3)
	readNothing(t, sub)
	close(hold)
	for _, want := range []string{"a2", "b"} {
		select {
		case v := <-onLoop:
			if v != want {
				t.Fatalf("fan-out %q, want %s on the loop", v, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no fan-out of %s", want)
		}
	}
	for _, want := range []string{"a1", "a2", "b"} {
		if _, payload := readPublish(t, sub); !strings.Contains(payload, `"field1":"`+want+`"`) {
			t.Fatalf("delivery %.100s, want %s", payload, want)
		}
	}
	// With the loop idle again, a lone entry is fanned out where it was
	// committed.
	if err := other.Publish(topic, 0, 0, []byte("field1=c")); err != nil {
		t.Fatal(err)
	}
	if v := <-onLoop; v != "inline c" {
		t.Fatalf("fan-out %q, want c inline", v)
	}
	if _, payload := readPublish(t, sub); !strings.Contains(payload, `"field1":"c"`) {
		t.Fatalf("delivery %.100s, want c", payload)
	}
}

// A QoS 1 publish the reader commits itself (no commit under way when it
// came) is acknowledged after its entry is fanned out, as a queued one
// is: a publisher subscribed to its own channel gets the entry before
// the PUBACK, also when an entry of another connection committed after
// it sends both to the fan-out loop, which is held here for a while.
func TestSyncPubackAfterFanOut(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	if code, err := pub.Subscribe(1, channels.FeedTopic(ch)); err != nil || code != 0 {
		t.Fatalf("subscribe: %#x %v", code, err)
	}
	other := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)

	hold := make(chan struct{})
	defer close(hold)
	onLoop := make(chan string, 4)
	setFanOutHook(t, func(e *channels.Entry, inline bool) {
		if v, _ := e.Field(1); e.ChannelID == ch && v == "p" && !inline {
			onLoop <- v
			select {
			case <-hold:
			case <-time.After(2 * time.Second):
			}
		}
	})
	h.hold()
	base := h.Queued()
	// Nothing under way: the reader commits p itself, and waits.
	if err := pub.Publish(topic, 1, 1, []byte("field1=p")); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, h, base+1)
	if err := other.Publish(topic, 0, 0, []byte("field1=x")); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, h, base+2)
	h.release()
	select {
	case <-onLoop:
	case <-time.After(5 * time.Second):
		t.Fatal("p was not fanned out on the loop")
	}
	_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, _, err := pub.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	if typ != 3 { // PUBLISH
		t.Fatalf("the publisher got packet type %d first while its entry waits on the fan-out loop, want its entry (PUBLISH) before its PUBACK", typ)
	}
}
