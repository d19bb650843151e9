package broker_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
)

// TestWatchEntries checks that watchers get each committed entry's JSON,
// only for their channel, that a full buffer drops (and counts) instead of
// blocking the publisher, and that stop closes the channel.
func TestWatchEntries(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	a, b := ts.channel(true), ts.channel(true)
	got, stop := ts.srv.WatchEntries(a, 1)
	other, stopOther := ts.srv.WatchEntries(b, 4)
	defer stopOther()
	if n, _ := ts.srv.WatchStats(); n != 2 {
		t.Fatalf("watchers = %d, want 2", n)
	}
	publish := func(ch uint64, v string) {
		t.Helper()
		e := channels.Entry{ChannelID: ch}
		e.SetValue(0, v)
		if err := ts.srv.Publish(context.Background(), &e); err != nil {
			t.Fatal(err)
		}
	}
	publish(a, "1")
	select {
	case m := <-got:
		if !strings.HasPrefix(string(m), `{"channel_id":1,"created_at":"`) || !strings.Contains(string(m), `"entry_id":1,"field1":"1"`) {
			t.Errorf("entry JSON: %s", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no entry")
	}
	// Buffer 1: the second of two unread entries is dropped, at once.
	start := time.Now()
	publish(a, "2")
	publish(a, "3")
	if time.Since(start) > 5*time.Second {
		t.Error("publish blocked on a slow watcher")
	}
	if _, dropped := ts.srv.WatchStats(); dropped != 1 {
		t.Errorf("dropped = %d, want 1", dropped)
	}
	if m := <-got; !strings.Contains(string(m), `"field1":"2"`) {
		t.Errorf("buffered entry: %s", m)
	}
	select {
	case m := <-other:
		t.Errorf("channel %d watcher got %s", b, m)
	default:
	}
	stop()
	stop()
	if _, ok := <-got; ok {
		t.Error("channel not closed by stop")
	}
	if n, _ := ts.srv.WatchStats(); n != 1 {
		t.Errorf("watchers after stop = %d, want 1", n)
	}
	publish(a, "4") // nobody listens: no panic on a closed channel
}

// TestWatchedJSONKept: fan-out reuses its JSON buffers, but not one a
// watcher received: what a watcher holds stays as it was while later
// entries, watched or not, are fanned out.
func TestWatchedJSONKept(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	a := ts.channel(true)
	got, stop := ts.srv.WatchEntries(a, 100)
	publish := func(v string) {
		t.Helper()
		e := channels.Entry{ChannelID: a}
		e.SetValue(0, v)
		if err := ts.srv.Publish(context.Background(), &e); err != nil {
			t.Fatal(err)
		}
	}
	var held [][]byte
	for i := range 50 {
		publish(strconv.Itoa(i))
		// A watcher that falls behind misses some: keep the last.
		if i%2 == 1 {
			select {
			case m := <-got:
				held = append(held, m)
			case <-time.After(5 * time.Second):
				t.Fatal("no entry")
			}
		}
	}
	stop()
	for m := range got {
		held = append(held, m)
	}
	want := make([]string, len(held))
	for i, m := range held {
		want[i] = string(m)
	}
	for i := range 200 { // unwatched: their buffers are recycled
		publish("x" + strconv.Itoa(i))
	}
	for i, m := range held {
		if string(m) != want[i] {
			t.Fatalf("watched JSON changed after later entries:\nwas %s\nnow %s", want[i], m)
		}
		if !strings.Contains(want[i], `"entry_id":`) || strings.Contains(want[i], `"field1":"x`) {
			t.Fatalf("watched JSON %s", want[i])
		}
	}
}
