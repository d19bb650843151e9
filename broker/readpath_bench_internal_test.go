package broker

import (
	"context"
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
}

// instantStore answers a queued append at once, without storing it: the
// read path's costs without the commit's.
type instantStore struct{ *storage.DB }

func (st instantStore) AppendEntryAsync(_ context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
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
	want := r.s.stats.accepted.Load() + uint64(n)
	for n > 0 {
		k := min(n, 100)
		if _, err := r.c.Write(batch[:k*len(one)]); err != nil {
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
	}{
		{"instant/readpath", false, true}, {"instant/mochi", true, true},
		{"bbolt/readpath", false, false}, {"bbolt/mochi", true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newReadPathRig(b, tc.mochiReads, tc.instant)
			r.publish(b, 1000) // warm-up: pools, buffers, first commits
			b.ReportAllocs()
			b.ResetTimer()
			r.publish(b, b.N)
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

// TestReadPathAllocs: a QoS 0 feed publish on the read path allocates
// nothing once warm, on any goroutine (read, parse, queue, fan-out with
// the JSON and topic): counted over all goroutines while 2000 publishes
// go through a store that answers at once. What is left is amortised: a
// new chunk for values every few hundred publishes, and whatever the
// runtime and the test's own polling allocate. It was 4 to 5 a publish.
func TestReadPathAllocs(t *testing.T) {
	if raceBuild {
		t.Skip("sync.Pool drops items under the race detector")
	}
	r := newReadPathRig(t, false, true)
	r.publish(t, 2000) // warm-up: pools, buffers, the topic cache
	const n = 2000
	perPublish := testing.AllocsPerRun(5, func() { r.publish(t, n) }) / n
	t.Logf("%.4f allocations per publish", perPublish)
	if perPublish > 0.1 {
		t.Errorf("%.3f allocations per feed publish, want 0 (amortised: at most 0.1)", perPublish)
	}
}
