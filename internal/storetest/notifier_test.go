package storetest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/storetest"
)

// next receives one change, failing the test after a deadline.
func next(t *testing.T, ch <-chan channels.Change) (channels.Change, bool) {
	t.Helper()
	select {
	case c, ok := <-ch:
		return c, ok
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s")
	}
	return channels.Change{}, false
}

// Every subscriber gets every change committed after it subscribed, in
// order, with increasing versions; ConfigVersion is the last version.
func TestNotifierDelivers(t *testing.T) {
	var n storetest.Notifier
	ctx := t.Context()
	n.Commit(channels.Change{Kind: channels.ChangeChannel, ID: 9}) // before anyone listens
	a, err := n.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := []channels.Change{
		{Kind: channels.ChangeDevice, ID: 3, Revoke: true},
		{Kind: channels.ChangeChannel, ID: 1, Deleted: true},
		{Kind: channels.ChangeCleared, ID: 2},
	}
	for i := range sent {
		sent[i] = n.Commit(sent[i])
		if sent[i].Version != uint64(i+2) {
			t.Fatalf("change %d got version %d", i, sent[i].Version)
		}
	}
	for _, sub := range []<-chan channels.Change{a, b} {
		for _, want := range sent {
			if got, ok := next(t, sub); !ok || got != want {
				t.Fatalf("got %+v (open %v), want %+v", got, ok, want)
			}
		}
	}
	if v, err := n.ConfigVersion(ctx); err != nil || v != 4 {
		t.Fatalf("ConfigVersion = %d, %v; want 4", v, err)
	}
}

// A subscriber that does not keep up gets one ChangeResync carrying the
// latest version instead of an unbounded backlog; committing never
// blocks on it.
func TestNotifierResyncsASlowSubscriber(t *testing.T) {
	n := storetest.Notifier{Backlog: 4}
	sub, err := n.Changes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var last channels.Change
	for i := range 100 {
		last = n.Commit(channels.Change{Kind: channels.ChangeDevice, ID: uint64(i + 1)})
	}
	// The first change may be in the hands of the delivering goroutine
	// already; after it, at most the backlog, ending in a resync.
	var got []channels.Change
	for {
		c, ok := next(t, sub)
		if !ok {
			t.Fatal("stream closed")
		}
		got = append(got, c)
		if c.Version == last.Version {
			break
		}
	}
	if end := got[len(got)-1]; end.Kind != channels.ChangeResync {
		t.Fatalf("last change %+v, want a resync at version %d", end, last.Version)
	}
	if len(got) > 6 {
		t.Fatalf("%d changes delivered, want the backlog bounded: %+v", len(got), got)
	}
}

// A lost connection closes the stream; changes meanwhile are not
// replayed, but ConfigVersion shows them. A down notifier refuses both
// calls; ctx ending closes the stream too.
func TestNotifierDisconnectAndDown(t *testing.T) {
	var n storetest.Notifier
	ctx := t.Context()
	sub, err := n.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n.Disconnect()
	if _, ok := next(t, sub); ok {
		t.Fatal("stream open after Disconnect")
	}
	n.Commit(channels.Change{Kind: channels.ChangeRules})
	sub, err = n.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := n.ConfigVersion(ctx); v != 1 {
		t.Fatalf("version %d, want 1", v)
	}
	n.SetDown(true, nil)
	if _, ok := next(t, sub); ok {
		t.Fatal("stream open while down")
	}
	if _, err := n.Changes(ctx); !errors.Is(err, storetest.ErrDown) {
		t.Fatalf("Changes while down: %v", err)
	}
	if _, err := n.ConfigVersion(ctx); !errors.Is(err, storetest.ErrDown) {
		t.Fatalf("ConfigVersion while down: %v", err)
	}
	n.Commit(channels.Change{Kind: channels.ChangeAccount}) // committed by another process meanwhile
	n.SetDown(false, nil)
	if v, err := n.ConfigVersion(ctx); err != nil || v != 2 {
		t.Fatalf("version %d %v after coming back, want 2", v, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	sub, err = n.Changes(cctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, ok := next(t, sub); ok {
		t.Fatal("stream open after its context ended")
	}
}
