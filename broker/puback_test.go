package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/storage"
)

// heldStore is the bbolt store with a hand on the answers of appends:
// while held, entries are committed but the broker hears of it only on
// release, as from a slow disk; failAt answers the n-th append (from 1)
// with an error after storing it, as a commit whose outcome is unknown.
// A held synchronous append blocks its caller, as a slow fdatasync
// would. The answers of asynchronous appends are put aside in commit
// order instead and given on release, from another goroutine: the store
// commits an asynchronous append on its caller's goroutine when the
// writer was idle, and these tests are about a connection that reads on
// while its entries wait for their commit. A synchronous append that
// returns while answers are held or put aside waits for its turn in the
// same line, so that answers come in commit order.
type heldStore struct {
	*storage.DB
	mu       sync.Mutex
	gate     chan struct{} // nil: not held
	queued   int
	failAt   map[int]error
	answers  []func() // put aside while held, in commit order
	draining bool     // answers are being given (drain)
}

func startHeld(t *testing.T, opts broker.Options) (*testServer, *heldStore) {
	t.Helper()
	h := &heldStore{failAt: make(map[int]error)}
	ts := &testServer{t: t, dir: t.TempDir(), opts: opts, wrap: func(db *storage.DB) channels.Store {
		h.DB = db
		return h
	}}
	ts.start()
	t.Cleanup(ts.stop)
	t.Cleanup(h.release) // before stop: Close waits for the queued appends
	return ts, h
}

func (h *heldStore) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate == nil {
		h.gate = make(chan struct{})
	}
}

func (h *heldStore) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
	if len(h.answers) > 0 && !h.draining {
		h.draining = true
		go h.drain()
	}
}

// drain gives the answers put aside, in order, and those put aside
// meanwhile behind them.
func (h *heldStore) drain() {
	for {
		h.mu.Lock()
		if len(h.answers) == 0 || h.gate != nil {
			h.draining = false
			h.mu.Unlock()
			return
		}
		f := h.answers[0]
		h.answers = h.answers[1:]
		h.mu.Unlock()
		f()
	}
}

func (h *heldStore) fail(n int, err error) {
	h.mu.Lock()
	h.failAt[n] = err
	h.mu.Unlock()
}

// Queued returns how many appends were made.
func (h *heldStore) Queued() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.queued
}

// AppendEntry is the reader's own commit: counted, held and failed as
// queued appends are.
func (h *heldStore) AppendEntry(ctx context.Context, e *channels.Entry) error {
	h.mu.Lock()
	h.queued++
	ferr := h.failAt[h.queued]
	h.mu.Unlock()
	err := h.DB.AppendEntry(ctx, e)
	if err == nil && ferr != nil {
		err = ferr
	}
	h.await()
	return err
}

// AppendEntryThen is counted, held and failed as AppendEntry is; its
// answer to then is put aside, as an asynchronous one, while answers are
// held, and the caller returns after it.
func (h *heldStore) AppendEntryThen(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	h.mu.Lock()
	h.queued++
	ferr := h.failAt[h.queued]
	h.mu.Unlock()
	err := h.DB.AppendEntryThen(ctx, e, h.answer(ferr, then))
	if err == nil && ferr != nil {
		err = ferr
	}
	h.await()
	return err
}

// answer wraps then: ferr, when set, replaces a success, and the answer
// is put aside while answers are held or put aside.
func (h *heldStore) answer(ferr error, then func(*channels.Entry, error)) func(*channels.Entry, error) {
	return func(e *channels.Entry, err error) {
		if err == nil && ferr != nil {
			err = ferr
		}
		h.mu.Lock()
		if h.gate != nil || h.draining || len(h.answers) > 0 {
			h.answers = append(h.answers, func() { then(e, err) })
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		then(e, err)
	}
}

// await returns at once when nothing is held or put aside; otherwise it
// waits for its turn behind the answers put aside.
func (h *heldStore) await() {
	h.mu.Lock()
	if h.gate == nil && !h.draining && len(h.answers) == 0 {
		h.mu.Unlock()
		return
	}
	turn := make(chan struct{})
	h.answers = append(h.answers, func() { close(turn) })
	h.mu.Unlock()
	<-turn
}

func (h *heldStore) AppendEntryAsync(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	h.mu.Lock()
	h.queued++
	ferr := h.failAt[h.queued]
	h.mu.Unlock()
	return h.DB.AppendEntryAsync(ctx, e, h.answer(ferr, then))
}

// heldStore answers in commit order, as a store whose commits are slow
// does: an asynchronous append's answer runs before the commit after it
// starts, so before a synchronous append committed after it returns,
// however long the answer takes.
func TestHeldStoreAnswerOrder(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	order := make(chan string, 2)
	h.hold()
	queued := &channels.Entry{ChannelID: ch}
	queued.SetValue(0, "queued")
	if err := h.AppendEntryAsync(context.Background(), queued, func(_ *channels.Entry, err error) {
		if err != nil {
			t.Error(err)
		}
		time.Sleep(50 * time.Millisecond) // a fan-out that takes a while
		order <- "asynchronous"
	}); err != nil {
		t.Fatal(err)
	}
	waited := &channels.Entry{ChannelID: ch}
	waited.SetValue(0, "waited")
	go func() {
		if err := h.AppendEntry(context.Background(), waited); err != nil {
			t.Error(err)
		}
		order <- "synchronous"
	}()
	waitQueued(t, h, 2)
	time.Sleep(20 * time.Millisecond) // committed, if the held store lets it
	h.release()
	if a, b := <-order, <-order; a != "asynchronous" || b != "synchronous" {
		t.Fatalf("answers given %s, %s; want the asynchronous append's (committed first) first", a, b)
	}
}

// holdCommits holds the store's answers and queues a QoS 0 entry on ch
// from another connection, which keeps a commit under way until release:
// QoS 1 publishes are then queued (a reader commits itself only when no
// commit is under way). It returns the appends queued so far.
func holdCommits(t *testing.T, ts *testServer, h *heldStore, ch uint64) int {
	t.Helper()
	h.hold()
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	n := h.Queued() + 1
	if err := c.Publish(fmt.Sprintf("channels/%d/publish", ch), 0, 0, []byte("field8=held")); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, h, n)
	return n
}

// waitQueued waits until n appends were queued.
func waitQueued(t *testing.T, h *heldStore, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", h.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// readNoPacket asserts that nothing arrives for a short while.
func readNoPacket(t *testing.T, c *mqtttest.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if typ, body, err := c.ReadPacket(); err == nil {
		t.Fatalf("unexpected packet type %d: %x", typ, body)
	}
}

// expectPubacks reads PUBACKs and compares their IDs and codes with want.
func expectPubacks(t *testing.T, c *mqtttest.Conn, want ...[2]int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, w := range want {
		id, code, err := c.ReadPuback()
		if err != nil || int(id) != w[0] || int(code) != w[1] {
			t.Fatalf("PUBACK %d: id %d code %#x (%v), want id %d code %#x", i, id, code, err, w[0], w[1])
		}
	}
}

// waitZero polls f until it is 0.
func waitZero(t *testing.T, what string, f func() int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still %d", what, f())
		}
		time.Sleep(time.Millisecond)
	}
}

// An MQTT 5 publisher's PUBACKs come in the order of its publishes: a
// refused publish (PUBACK with its reason code, answered by mochi) and a
// commit that fails (0x80) do not overtake the accepted publishes still
// being committed ahead of them [MQTT-4.6.0-2], and nothing is
// acknowledged before the commit answered.
func TestPubackOrderMixed(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch, other := ts.channel(false), ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	sub := feedSubscriber(t, ts, ch)
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 5)

	base := holdCommits(t, ts, h, other)
	h.fail(base+3, fmt.Errorf("commit: %w", channels.ErrCommitUnknown))
	for i, p := range []struct {
		topic, payload string
	}{
		{topic, "field1=1"},
		{topic, "field1=2"},
		{fmt.Sprintf("channels/%d/publish", other), "field1=no"}, // not granted: 0x87
		{topic, "field1=3"}, // stored, answered as unknown: 0x80
		{topic, "field1=4"},
		{topic, "nothing=x"}, // no value: 0x99
		{topic, "field1=5"},
	} {
		if err := c.Publish(p.topic, 1, uint16(i+1), []byte(p.payload)); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, h, base+2)
	readNoPacket(t, c) // the refusal waits for the commits ahead
	h.release()
	expectPubacks(t, c, [2]int{1, 0}, [2]int{2, 0}, [2]int{3, 0x87}, [2]int{4, 0x80}, [2]int{5, 0},
		[2]int{6, 0x99}, [2]int{7, 0})

	// Fanned out in order, the failed commit not at all.
	for _, want := range []string{`"field1":"1"`, `"field1":"2"`, `"field1":"4"`, `"field1":"5"`} {
		if _, payload := readPublish(t, sub); !strings.Contains(payload, want) {
			t.Fatalf("delivery %s, want %s", payload, want)
		}
	}
	if st := ts.srv.Stats(); st.Accepted != 5 || st.Rejected["store_error"] != 1 {
		t.Fatalf("accepted %d, store errors %d; want 5 (the held one and four) and 1", st.Accepted, st.Rejected["store_error"])
	}
	waitZero(t, "unacked", ts.srv.Unacked)
}

// A failed commit closes an MQTT 3.1.1 connection (it has no negative
// PUBACK) after the PUBACKs of the publishes ahead of it, and no later
// one is acknowledged: the client sends them again. Entries already
// stored stay stored.
func TestPubackStoreFailureMQTT3(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	cr := ts.device(pubsub(ch))
	c := rawDevice(t, ts.addr, cr, 4)

	base := holdCommits(t, ts, h, ch)
	h.fail(base+3, fmt.Errorf("commit: %w", channels.ErrCommitUnknown))
	for i := 1; i <= 5; i++ {
		if err := c.Publish(topic, 1, uint16(i), fmt.Appendf(nil, "field1=%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, h, base+5)
	h.release()
	expectPubacks(t, c, [2]int{1, 0}, [2]int{2, 0})
	expectClosed(t, c, 5*time.Second)
	if n := ts.srv.Stats().Rejected["store_error"]; n != 1 {
		t.Fatalf("store errors %d, want 1", n)
	}
	waitZero(t, "unacked", ts.srv.Unacked)

	// The device reconnects and is served (no commit under way: the
	// reader commits it and writes the PUBACK).
	c = rawDevice(t, ts.addr, cr, 4)
	if err := c.Publish(topic, 1, 9, []byte("field1=again")); err != nil {
		t.Fatal(err)
	}
	expectPubacks(t, c, [2]int{9, 0})
	if n := len(ts.entries(ch)); n != 7 {
		t.Fatalf("%d entries stored, want 7 (the held one, every queued one, and the one sent again)", n)
	}
}

// A connection holds at most MaxUnacked publishes whose PUBACK is not
// written: its reader waits for the commits, and goes on once they are
// acknowledged; every publish is stored and acknowledged in order.
func TestPubackCap(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)

	n := broker.MaxUnacked + 8
	base := holdCommits(t, ts, h, ch)
	for i := 1; i <= n; i++ {
		if err := c.Publish(topic, 1, uint16(i), fmt.Appendf(nil, "field1=%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, h, base+broker.MaxUnacked)
	readNoPacket(t, c)
	if q := h.Queued() - base; q != broker.MaxUnacked {
		t.Fatalf("%d publishes queued past the cap of %d", q, broker.MaxUnacked)
	}
	h.release()
	want := make([][2]int, n)
	for i := range want {
		want[i] = [2]int{i + 1, 0}
	}
	expectPubacks(t, c, want...)
	if got := len(ts.entries(ch)); got != n+1 {
		t.Fatalf("%d entries stored, want %d", got, n+1)
	}
	waitZero(t, "unacked", ts.srv.Unacked)
}

// A client that closes with PUBACKs pending gets nothing written; its
// entries are stored and fanned out, and nothing stays counted (unwritten
// PUBACKs, bytes queued), so Close does not wait for it.
func TestPubackClientGone(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	sub := mustConnect(t, ts.addr, ts.device(pubsub(ch)))
	sub.subscribe(t, channels.FeedTopic(ch))
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 5)

	base := holdCommits(t, ts, h, ch)
	for i := 1; i <= 5; i++ {
		if err := c.Publish(topic, 1, uint16(i), fmt.Appendf(nil, "field1=%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, h, base+5)
	_ = c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.Stats().Connections["mqtt"].Live > 2 {
		if time.Now().After(deadline) {
			t.Fatal("the server did not see the client go")
		}
		time.Sleep(time.Millisecond)
	}
	h.release()
	if m := sub.expect(t); !strings.Contains(m.payload, `"field8":"held"`) {
		t.Fatalf("first delivery: %s", m.payload)
	}
	for i := 1; i <= 5; i++ {
		if m := sub.expect(t); !strings.Contains(m.payload, fmt.Sprintf(`"field1":"%d"`, i)) {
			t.Fatalf("delivery %d: %s", i, m.payload)
		}
	}
	waitZero(t, "unacked", ts.srv.Unacked)
	waitZero(t, "bytes queued", ts.srv.SendQueued)
	start := time.Now()
	ts.stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// A subscriber that does not read fills its socket: the direct write
// takes what fits, the rest waits in its sender, and once the subscriber
// reads it gets every entry once, in order.
func TestSlowSubscriberDirectWrite(t *testing.T) {
	ts := startServer(t, broker.Options{SendQueueBytes: 64 << 20, SendQueueTotal: 256 << 20, WriteTimeout: time.Minute})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	cr := ts.device(pubsub(ch))
	// A small receive window, set before the handshake, fills soon.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	raw, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Wrap(raw)
	t.Cleanup(func() { _ = sub.Close() })
	if code, err := sub.Connect(mqtttest.Connect{ClientID: cr.Device.ClientID, Username: cr.Device.Username,
		Password: cr.Password, Clean: true, Keepalive: 60, Version: 4}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	if code, err := sub.Subscribe(1, channels.FeedTopic(ch)); err != nil || code != 0 {
		t.Fatalf("subscribe: %#x %v", code, err)
	}
	pub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	value := strings.Repeat("v", 250)
	// QoS 1 every 100 publishes: the last PUBACK means every entry is
	// fanned out, and the wait on the way keeps the queue bounded.
	n, queued := 0, false
	for !queued || n < 400 {
		if n >= 20000 {
			t.Fatal("the subscriber's socket never filled")
		}
		n++
		payload := fmt.Sprintf("field1=%d&field2=%s&field3=%s&field4=%s&field5=%s&field6=%s&field7=%s&field8=%s",
			n, value, value, value, value, value, value, value)
		if n%100 == 0 {
			if err := pub.Publish(topic, 1, uint16(n/100), []byte(payload)); err != nil {
				t.Fatal(err)
			}
			_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := pub.ReadPuback(); err != nil {
				t.Fatal(err)
			}
			queued = queued || ts.srv.SendQueued() > 0
			continue
		}
		if err := pub.Publish(topic, 0, 0, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	if n%100 != 0 {
		n++
		if err := pub.Publish(topic, 1, 999, fmt.Appendf(nil, "field1=%d", n)); err != nil {
			t.Fatal(err)
		}
		_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := pub.ReadPuback(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, payload, err := sub.ReadPublish()
		if err != nil {
			t.Fatalf("delivery %d of %d: %v", i, n, err)
		}
		if want := fmt.Sprintf(`"field1":"%d"`, i); !strings.Contains(string(payload), want) {
			t.Fatalf("delivery %d: %.80s, want %s", i, payload, want)
		}
	}
	readNothing(t, sub)
	if d := ts.srv.Stats().Dropped; d != 0 {
		t.Fatalf("%d deliveries dropped", d)
	}
	waitZero(t, "bytes queued", ts.srv.SendQueued)
}

// A failed commit that closes an MQTT 3.1.1 connection from the fan-out
// side is no cause for the client's will, as a refusal or a failed commit
// answered by the reader itself is not (the reader's close ends mochi's
// read loop without an error; a close from another goroutine ends it
// with one, which sends the will unless the flag is cleared).
func TestPubackStoreFailureMQTT3NoWill(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	w, c := connectWatchedWill(t, ts, ch)

	base := holdCommits(t, ts, h, ch)
	h.fail(base+2, fmt.Errorf("commit: %w", channels.ErrCommitUnknown))
	for i := 1; i <= 3; i++ {
		if _, err := c.Write(pubPacket(topic, 1, uint16(i), false, fmt.Sprintf("field1=%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, h, base+3)
	h.release()
	expectPubacks(t, c, [2]int{1, 0})
	expectClosed(t, c, 5*time.Second)
	readNothing(t, w)
}

// PUBACKs and PUBRECs keep the order of the publishes whatever path each
// took: feed publishes queued for commit, a free-topic QoS 1 publish that
// mochi acknowledges, a feed publish with MQTT 5 properties (through
// mochi's OnPublish, then queued), and a QoS 2 feed publish (committed by
// the reader, PUBREC from mochi).
func TestPubackOrderAcrossPaths(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			ts, h := startHeld(t, broker.Options{})
			ch, other := ts.channel(false), ts.channel(false)
			topic := fmt.Sprintf("channels/%d/publish", ch)
			dev := ts.device(pubsub(ch))
			ts.allow(dev, "write home/#")
			c := rawDevice(t, ts.addr, dev, v)
			base := holdCommits(t, ts, h, other)

			v5 := v == 5
			b := pubPacket(topic, 1, 1, v5, "field1=1")
			b = append(b, pubPacket("home/x", 1, 2, v5, "free")...)
			b = append(b, pubPacket(topic, 1, 3, v5, "field1=3")...)
			if v5 {
				// Payload format indicator: a property, so mochi decodes it.
				body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
				body = append(body, topic...)
				body = append(body, 0, 4, 2, 0x01, 1)
				b = append(b, mqtttest.Packet(mqtttest.PUBLISH<<4|1<<1, append(body, "field1=4"...))...)
			} else {
				b = append(b, pubPacket(topic, 1, 4, v5, "field1=4")...)
			}
			b = append(b, pubPacket(topic, 2, 5, v5, "field1=5")...)
			b = append(b, pubPacket(topic, 1, 6, v5, "field1=6")...)
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			waitQueued(t, h, base+1)
			readNoPacket(t, c) // nothing overtakes the held commit
			h.release()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i, want := range []struct {
				typ byte
				id  uint16
			}{{mqtttest.PUBACK, 1}, {mqtttest.PUBACK, 2}, {mqtttest.PUBACK, 3}, {mqtttest.PUBACK, 4}, {5, 5}, {mqtttest.PUBACK, 6}} {
				typ, body, err := c.ReadPacket()
				if err != nil || typ != want.typ || len(body) < 2 || binary.BigEndian.Uint16(body) != want.id {
					t.Fatalf("packet %d: type %d body %x (%v), want type %d id %d", i, typ, body, err, want.typ, want.id)
				}
				if len(body) > 2 && body[2] >= 0x80 {
					t.Fatalf("packet %d refused: %x", i, body)
				}
			}
			waitZero(t, "unacked", ts.srv.Unacked)
		})
	}
}

// One publisher's entries reach a subscriber in the order it published
// them when a QoS 2 publish follows QoS 1 publishes still queued for
// commit (MQTT's ordered topics): the QoS 2 entry is committed by the
// reader, which must not fan it out ahead of the queued ones.
func TestQoS2AfterQueuedQoS1Order(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch, other := ts.channel(false), ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	sub := feedSubscriber(t, ts, ch)
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	n := broker.MaxUnacked - 1
	base := holdCommits(t, ts, h, other)
	var b []byte
	for i := 1; i <= n; i++ {
		b = append(b, pubPacket(topic, 1, uint16(i), false, fmt.Sprintf("field1=%d", i))...)
	}
	b = append(b, pubPacket(topic, 2, uint16(n+1), false, fmt.Sprintf("field1=%d", n+1))...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, h, base+n)
	readNoPacket(t, c) // the QoS 2 publish's PUBREC waits; so may its commit
	h.release()
	for i := 1; i <= n+1; i++ {
		if _, payload := readPublish(t, sub); !strings.Contains(payload, fmt.Sprintf(`"field1":"%d"`, i)) {
			t.Fatalf("delivery %d: %s", i, payload)
		}
	}
}

// Close while a connection's reader waits at the cap of unacknowledged
// publishes: Close neither hangs nor acknowledges anything not stored.
// The PUBACKs the client gets are the first k of its publishes, in
// order, each of them stored; the publishes behind them are refused
// (shutting down) or stored, never acknowledged otherwise.
func TestPubackCapAtClose(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	n := broker.MaxUnacked + 8
	base := holdCommits(t, ts, h, ch)
	var b []byte
	for i := 1; i <= n; i++ {
		b = append(b, pubPacket(topic, 1, uint16(i), false, fmt.Sprintf("field1=%d", i))...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, h, base+broker.MaxUnacked)
	closed := make(chan error, 1)
	go func() { closed <- ts.srv.Close() }()
	waitUntil(t, "Close begun", ts.srv.Closing)
	h.release()

	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var acked []int
	for {
		typ, body, err := c.ReadPacket()
		if err != nil {
			break
		}
		if typ == mqtttest.PUBACK && len(body) >= 2 {
			acked = append(acked, int(binary.BigEndian.Uint16(body)))
		}
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
	stored := map[string]bool{}
	for _, e := range ts.entries(ch) {
		stored[e[strings.Index(e, `"field1"`):]] = true
	}
	for i, id := range acked {
		if id != i+1 {
			t.Fatalf("PUBACKs %v: not the first ones in order", acked)
		}
		found := false
		for k := range stored {
			if strings.HasPrefix(k, fmt.Sprintf(`"field1":"%d"`, id)) {
				found = true
			}
		}
		if !found {
			t.Fatalf("PUBACK %d for an entry not stored", id)
		}
	}
	t.Logf("%d of %d acknowledged, %d entries stored (one held)", len(acked), n, len(stored))
	if len(acked) < broker.MaxUnacked {
		t.Fatalf("%d PUBACKs, want at least the %d committed before Close", len(acked), broker.MaxUnacked)
	}
	waitZero(t, "unacked", ts.srv.Unacked)
}

// feedSubscriber connects a device allowed to read channel ch and
// subscribes it to the channel's feed topic.
func feedSubscriber(t *testing.T, ts *testServer, ch uint64) *mqtttest.Conn {
	t.Helper()
	sub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	if code, err := sub.Subscribe(1, channels.FeedTopic(ch)); err != nil || code != 0 {
		t.Fatalf("subscribe: %#x %v", code, err)
	}
	return sub
}
