package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/storetest"
	"github.com/feedmq/feedmq/storage"
)

// startFailing starts a broker whose store is a storetest.Failing over
// the bbolt file.
func startFailing(t *testing.T) (*testServer, *storetest.Failing) {
	t.Helper()
	f := new(storetest.Failing)
	ts := &testServer{t: t, dir: t.TempDir(), wrap: func(db *storage.DB) channels.Store {
		f.Store = db
		return f
	}}
	ts.start()
	t.Cleanup(ts.stop)
	return ts, f
}

// The two append outcomes a store shared by several servers adds: its own
// rate refusal is answered as the broker's (MQTT 5 PUBACK 0x97, MQTT
// 3.1.1 QoS 1 disconnect, QoS 0 dropped, counted as rate_limited); a
// commit whose outcome is unknown as a store failure (PUBACK 0x80,
// disconnect, dropped, counted as store_error). Neither is delivered to
// subscribers, even when the entry was in fact stored, and the
// connections that stay are served normally once the store recovers.
func TestStoreAppendOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		stored bool
		v5code byte
		reason string
	}{
		{"rate refusal", channels.RateLimited(1, 15*time.Second, 4*time.Second), false, 0x97, "rate_limited"},
		{"commit unknown, not stored", fmt.Errorf("commit: %w", channels.ErrCommitUnknown), false, 0x80, "store_error"},
		{"commit unknown, stored", fmt.Errorf("commit: %w", channels.ErrCommitUnknown), true, 0x80, "store_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, store := startFailing(t)
			ch := ts.channel(false)
			topic := fmt.Sprintf("channels/%d/publish", ch)
			sub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
			if code, err := sub.Subscribe(1, channels.FeedTopic(ch)); err != nil || code != 0 {
				t.Fatalf("subscribe: %#x %v", code, err)
			}
			v5 := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 5)
			v3 := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
			v3q0 := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
			fail := store.Fail
			if tt.stored {
				fail = store.FailAfterStoring
			}
			fail(tt.err)

			if err := v5.Publish(topic, 1, 1, []byte("field1=v5")); err != nil {
				t.Fatal(err)
			}
			_ = v5.SetReadDeadline(time.Now().Add(5 * time.Second))
			if id, code, err := v5.ReadPuback(); err != nil || id != 1 || code != tt.v5code {
				t.Fatalf("MQTT 5 QoS 1: PUBACK %d %#x %v, want %#x", id, code, err, tt.v5code)
			}
			if err := v3q0.Publish(topic, 0, 0, []byte("field1=q0")); err != nil {
				t.Fatal(err)
			}
			if err := v3.Publish(topic, 1, 1, []byte("field1=v3")); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, v3, 5*time.Second)
			// The QoS 0 publish failed too: three refusals, counted
			// under the reason.
			deadline := time.Now().Add(5 * time.Second)
			for ts.srv.Stats().Rejected[tt.reason] < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("rejections %v, want 3 %s", ts.srv.Stats().Rejected, tt.reason)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n := store.Refused(); n != 3 {
				t.Fatalf("the store refused %d appends, want 3", n)
			}
			stored := ts.entries(ch)
			if want := map[bool]int{false: 0, true: 3}[tt.stored]; len(stored) != want {
				t.Fatalf("%d entries stored, want %d: %v", len(stored), want, stored)
			}

			// Recovered: the connections that stayed are served, and
			// the subscriber's first delivery is the new entry.
			store.Fail(nil)
			if err := v5.Publish(topic, 1, 2, []byte("field1=after")); err != nil {
				t.Fatal(err)
			}
			if id, code, err := v5.ReadPuback(); err != nil || id != 2 || code != 0 {
				t.Fatalf("after recovery: PUBACK %d %#x %v", id, code, err)
			}
			if err := v3q0.Publish(topic, 1, 7, []byte("field1=after-q0")); err != nil {
				t.Fatal(err)
			}
			_ = v3q0.SetReadDeadline(time.Now().Add(5 * time.Second))
			if id, code, err := v3q0.ReadPuback(); err != nil || id != 7 || code != 0 {
				t.Fatalf("the QoS 0 publisher after recovery: PUBACK %d %#x %v", id, code, err)
			}
			_, payload := readPublish(t, sub)
			if !strings.Contains(payload, `"field1":"after"`) || !strings.Contains(payload, fmt.Sprintf(`"entry_id":%d,`, len(stored)+1)) {
				t.Fatalf("subscriber's first delivery %s, want the entry after recovery", payload)
			}
			if st := ts.srv.Stats(); st.Accepted != 2 {
				t.Fatalf("accepted %d, want 2", st.Accepted)
			}
		})
	}
}

// A batch (the HTTP bulk write's path) refused by the store's rate check
// reports the refusal as a rate limit, and one whose commit is unknown as
// a store failure; nothing is fanned out.
func TestStoreBatchOutcomes(t *testing.T) {
	ts, store := startFailing(t)
	ch := ts.channel(false)
	batch := func() []*channels.Entry {
		es := make([]*channels.Entry, 2)
		for i := range es {
			es[i] = &channels.Entry{ChannelID: ch, CreatedAt: time.Now()}
			es[i].SetValue(0, "b")
		}
		return es
	}
	store.Fail(channels.RateLimited(ch, time.Minute, time.Second))
	err := ts.srv.PublishBatch(t.Context(), batch())
	if channels.ErrorCode(err) != channels.ERATELIMIT {
		t.Fatalf("rate refusal: %v (code %s)", err, channels.ErrorCode(err))
	}
	store.FailAfterStoring(fmt.Errorf("commit: %w", channels.ErrCommitUnknown))
	err = ts.srv.PublishBatch(t.Context(), batch())
	if err == nil || channels.ErrorCode(err) != channels.EINTERNAL || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("commit unknown: %v", err)
	}
	st := ts.srv.Stats()
	if st.Rejected["rate_limited"] != 0 || st.Rejected["store_error"] != 0 || st.Accepted != 0 {
		// Batches count nothing as MQTT rejections; nothing accepted.
		t.Fatalf("stats %+v", st)
	}
	store.Fail(nil)
	if err := ts.srv.PublishBatch(t.Context(), batch()); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.entries(ch)); n != 4 {
		t.Fatalf("%d entries, want the 2 of unknown outcome and 2 after", n)
	}
}
