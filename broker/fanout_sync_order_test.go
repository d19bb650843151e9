package broker_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// lateStore is the bbolt store with a hand on the return of synchronous
// appends: once armed, the next one returns a while after its commit, as
// when the goroutine that waited for it runs again only later (a busy
// host). Asynchronous appends go on meanwhile.
type lateStore struct {
	*storage.DB
	late atomic.Int64 // nanoseconds the next synchronous append returns late
}

func (l *lateStore) AppendEntry(ctx context.Context, e *channels.Entry) error {
	err := l.DB.AppendEntry(ctx, e)
	if d := l.late.Swap(0); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return err
}

func (l *lateStore) AppendEntryThen(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	err := l.DB.AppendEntryThen(ctx, e, then)
	if d := l.late.Swap(0); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return err
}

func (l *lateStore) AppendEntries(ctx context.Context, es []*channels.Entry) error {
	err := l.DB.AppendEntries(ctx, es)
	if d := l.late.Swap(0); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return err
}

func (l *lateStore) AppendEntriesThen(ctx context.Context, es []*channels.Entry, then func(error)) error {
	err := l.DB.AppendEntriesThen(ctx, es, then)
	if d := l.late.Swap(0); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return err
}

// Entries of one channel reach a subscriber in commit order, entry ID
// order, when an entry committed by the goroutine that waited for it (a
// QoS 1 publish a reader commits itself when no commit is under way, or
// an HTTP write) is fanned out late: an entry of another connection
// committed after it must not pass it, on the fan-out loop or fanned out
// where it was committed. The entries of an HTTP bulk write (a batch) are
// no different.
func TestFanOutAfterSyncCommitOrder(t *testing.T) {
	for _, c := range []struct {
		name  string
		first func(ts *testServer, ch uint64) func() error
		want  []string // the deliveries first makes
	}{
		{"mqtt qos 1", func(ts *testServer, ch uint64) func() error {
			a := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
			return func() error {
				return a.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, 1, []byte("field1=first"))
			}
		}, []string{"first"}},
		{"http", func(ts *testServer, ch uint64) func() error {
			return func() error {
				e := &channels.Entry{ChannelID: ch}
				e.SetValue(0, "first")
				return ts.srv.Publish(context.Background(), e)
			}
		}, []string{"first"}},
		{"http bulk", func(ts *testServer, ch uint64) func() error {
			return func() error {
				var es []*channels.Entry
				for _, v := range []string{"first", "first.2"} {
					e := &channels.Entry{ChannelID: ch}
					e.SetValue(0, v)
					es = append(es, e)
				}
				return ts.srv.PublishBatch(context.Background(), es)
			}
		}, []string{"first", "first.2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &lateStore{}
			ts := &testServer{t: t, dir: t.TempDir(), opts: broker.Options{}, wrap: func(db *storage.DB) channels.Store {
				l.DB = db
				return l
			}}
			ts.start()
			t.Cleanup(ts.stop)
			ch := ts.channel(false)
			sub := feedSubscriber(t, ts, ch)
			b := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
			first := c.first(ts, ch)

			l.late.Store(int64(300 * time.Millisecond))
			firstErr := make(chan error, 1)
			go func() { firstErr <- first() }()
			defer func() {
				if err := <-firstErr; err != nil {
					t.Error(err)
				}
			}()
			deadline := time.Now().Add(5 * time.Second)
			for len(ts.entries(ch)) < 1 {
				if time.Now().After(deadline) {
					t.Fatal("the first entry was not committed")
				}
				time.Sleep(time.Millisecond)
			}
			if err := b.Publish(fmt.Sprintf("channels/%d/publish", ch), 0, 0, []byte("field1=second")); err != nil {
				t.Fatal(err)
			}
			for _, want := range append(c.want, "second") {
				if _, payload := readPublish(t, sub); !strings.Contains(payload, `"field1":"`+want+`"`) {
					t.Fatalf("delivery %.100s, want %s", payload, want)
				}
			}
		})
	}
}
