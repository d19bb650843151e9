package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/storage"
)

// readPathRig is a server on bbolt with one channel and a device
// connected over loopback TCP that may publish to it.
type readPathRig struct {
	s     *Server
	c     *mqtttest.Conn
	topic string
	// qos1Batch is 100 QoS 1 publishes, IDs 1 to 100 (publishQoS1).
	qos1Batch []byte
}

// instantStore answers a queued append at once, without storing it: the
// read path's costs without the commit's.
type instantStore struct{ *storage.DB }

func (st instantStore) AppendEntryAsync(_ context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	then(e, nil)
	return nil
}

// AppendEntry is the reader's own commit (QoS 1 with no commit under
// way): answered at once too.
func (st instantStore) AppendEntry(context.Context, *channels.Entry) error { return nil }

func (st instantStore) AppendEntryThen(_ context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	then(e, nil)
	return nil
}

func newReadPathRig(tb testing.TB, mochiReads, instant bool) *readPathRig {
	tb.Helper()
	db, svc := openLocal(tb)
	var store channels.Store = db
	if instant {
		store = instantStore{db}
	}
	s, err := New(Options{MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, store, svc.Registry)
	if err != nil {
		tb.Fatal(err)
	}
	s.mochiReads = mochiReads
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	ch, err := svc.CreateChannel(context.Background(), auth.ChannelSpec{Name: "bench", Fields: [8]string{"a"}})
	if err != nil {
		tb.Fatal(err)
	}
	cr, err := svc.CreateDevice(context.Background(), auth.DeviceSpec{Name: "d",
		Grants: []auth.Grant{{ChannelID: ch.ID, Publish: true}}})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := mqtttest.Dial(s.Addr("mqtt").String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	if code, err := c.Connect(mqtttest.Connect{ClientID: cr.Device.ClientID, Username: cr.Device.Username,
		Password: cr.Password, Clean: true, Keepalive: 60}); err != nil || code != 0 {
		tb.Fatalf("CONNACK %#x %v", code, err)
	}
	return &readPathRig{s: s, c: c, topic: fmt.Sprintf("channels/%d/publish", ch.ID)}
}

// publish sends n QoS 0 feed publishes, 100 to a write, and waits until
// the server has accepted them.
func (r *readPathRig) publish(tb testing.TB, n int) {
	tb.Helper()
	one := mqtttest.PublishPacket(r.topic, []byte("field1=23.5"))
	var batch []byte
	for range 100 {
		batch = append(batch, one...)
	}
	r.send(tb, n, batch, len(one))
}

// publishQoS1 is publish at QoS 1, packet IDs 1 to 100 in each write; the
// PUBACKs are read and dropped (drainAcks).
func (r *readPathRig) publishQoS1(tb testing.TB, n int) {
	tb.Helper()
	if r.qos1Batch != nil {
		r.send(tb, n, r.qos1Batch, len(r.qos1Batch)/100)
		return
	}
	var batch []byte
	size := 0
	for id := 1; id <= 100; id++ {
		body := binary.BigEndian.AppendUint16(nil, uint16(len(r.topic)))
		body = append(body, r.topic...)
		body = binary.BigEndian.AppendUint16(body, uint16(id))
		one := mqtttest.Packet(mqtttest.PUBLISH<<4|1<<1, append(body, "field1=23.5"...))
		batch, size = append(batch, one...), len(one)
	}
	r.qos1Batch = batch // built once: the test counts allocations
	r.send(tb, n, batch, size)
}

// drainAcks reads and drops whatever the server sends the publisher.
func (r *readPathRig) drainAcks() { go func() { _, _ = io.Copy(io.Discard, r.c) }() }

// send writes n packets of size bytes from batch, 100 at most to a write,
// and waits until the server has accepted them.
func (r *readPathRig) send(tb testing.TB, n int, batch []byte, size int) {
	tb.Helper()
	want := r.s.stats.accepted.Load() + uint64(n)
	for n > 0 {
		k := min(n, 100)
		if _, err := r.c.Write(batch[:k*size]); err != nil {
			tb.Fatal(err)
		}
		n -= k
	}
	for deadline := time.Now().Add(time.Minute); r.s.stats.accepted.Load() < want; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("accepted %d of %d", r.s.stats.accepted.Load(), want)
		}
	}
}

// BenchmarkReadPathFeedPublish: QoS 0 feed publishes from one device over
// loopback TCP, read, parsed, authorized, queued for commit and counted,
// with the read path and with every packet left to mochi; "instant" uses
// a store that answers at once (the read side's cost), "bbolt" the real
// one (group commits). allocs/op counts every goroutine's allocations per
// publish: 0 for instant/readpath (entries, JSON buffers and value chunks
// are pooled or shared, topics cached; TestReadPathAllocs holds it);
// bbolt/readpath adds the store's, mostly bbolt's own on checkpoints.
// go test -run '^$' -bench ReadPathFeedPublish -benchmem ./broker
func BenchmarkReadPathFeedPublish(b *testing.B) {
	for _, tc := range []struct {
		name                string
		mochiReads, instant bool
		qos1                bool
	}{
		{"instant/readpath", false, true, false}, {"instant/mochi", true, true, false},
		{"bbolt/readpath", false, false, false}, {"bbolt/mochi", true, false, false},
		{"instant/readpath/qos1", false, true, true}, {"bbolt/readpath/qos1", false, false, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newReadPathRig(b, tc.mochiReads, tc.instant)
			publish := r.publish
			if tc.qos1 {
				r.drainAcks()
				publish = r.publishQoS1
			}
			publish(b, 1000) // warm-up: pools, buffers, first commits
			b.ReportAllocs()
			b.ResetTimer()
			publish(b, b.N)
		})
	}
}

// TestReadPathCounts: feed publishes handled by the read path count in
// mochi's $SYS figures as mochi counts them (packets, messages, bytes),
// and nothing on it allocates per publish beyond what the commit needs.
func TestReadPathCounts(t *testing.T) {
	r := newReadPathRig(t, false, false)
	info := r.s.mochi.Info
	packets, messages, bytes := atomic.LoadInt64(&info.PacketsReceived), atomic.LoadInt64(&info.MessagesReceived),
		atomic.LoadInt64(&info.BytesReceived)
	r.publish(t, 250)
	size := int64(len(mqtttest.PublishPacket(r.topic, []byte("field1=23.5"))))
	if got := atomic.LoadInt64(&info.PacketsReceived) - packets; got != 250 {
		t.Errorf("PacketsReceived +%d, want 250", got)
	}
	if got := atomic.LoadInt64(&info.MessagesReceived) - messages; got != 250 {
		t.Errorf("MessagesReceived +%d, want 250", got)
	}
	if got := atomic.LoadInt64(&info.BytesReceived) - bytes; got != 250*size {
		t.Errorf("BytesReceived +%d, want %d", got, 250*size)
	}
}

// TestReadPathAllocs: a QoS 0 or QoS 1 feed publish on the read path
// allocates nothing once warm, on any goroutine (read, parse, queue,
// fan-out with the JSON and topic, the PUBACK): counted over all
// goroutines while 2000 publishes go through a store that answers at
// once. What is left is amortised: a new chunk for values every few
// hundred publishes, and whatever the runtime and the test's own polling
// allocate. It was 4 to 5 a publish at QoS 0.
func TestReadPathAllocs(t *testing.T) {
	if raceBuild {
		t.Skip("sync.Pool drops items under the race detector")
	}
	for _, qos1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("qos1=%v", qos1), func(t *testing.T) {
			r := newReadPathRig(t, false, true)
			publish := r.publish
			if qos1 {
				r.drainAcks()
				publish = r.publishQoS1
			}
			publish(t, 2000) // warm-up: pools, buffers, the topic cache
			const n = 2000
			perPublish := testing.AllocsPerRun(5, func() { publish(t, n) }) / n
			t.Logf("%.4f allocations per publish", perPublish)
			if perPublish > 0.1 {
				t.Errorf("%.3f allocations per feed publish, want 0 (amortised: at most 0.1)", perPublish)
			}
		})
	}
}
