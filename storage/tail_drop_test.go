package storage_test

import (
	"bytes"
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// A checkpoint drops from the in-memory copy of the log only the entries
// it copied into the file. An append that fails (its log sync does) must
// not leave the checkpoint a claim on entry IDs it does not hold: once the
// channel is cleared those IDs are given again, to entries that are still
// only in the log, and a read would miss them.
func TestTailFailedAppendDoesNotDropLaterEntries(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	release := storage.HoldCheckpoints(t) // held only once the logs switch
	var failing atomic.Bool
	storage.FailLogSyncs(t, func(op string) bool { return op == "append" && failing.Load() })
	db := MustOpenDB(t)
	ctx := context.Background()
	x, y := MustCreateChannel(t, db, "x"), MustCreateChannel(t, db, "y")
	MustAppend(t, db, x.ID, "old1")
	storage.Sync(t, db) // nothing pending: the refused append is alone

	failing.Store(true)
	e := &channels.Entry{ChannelID: x.ID}
	e.SetValue(0, "refused")
	if err := db.AppendEntry(ctx, e); err == nil {
		t.Fatal("the append whose sync failed succeeded")
	}
	failing.Store(false)
	if err := db.ClearChannel(ctx, x.ID); err != nil {
		t.Fatal(err)
	}

	// The next switch hands the checkpointer the other channel's entry,
	// and the checkpoint waits until released.
	other := storage.WALPaths(db.Path())[1]
	header := func() []byte {
		b, err := os.ReadFile(other)
		if err != nil {
			t.Fatal(err)
		}
		return b[:16]
	}
	before := header()
	storage.SetCheckpointDelay(t, time.Millisecond)
	MustAppend(t, db, y.ID, "y1")
	for deadline := time.Now().Add(10 * time.Second); bytes.Equal(header(), before); {
		if time.Now().After(deadline) {
			t.Fatal("the logs did not switch")
		}
		time.Sleep(5 * time.Millisecond)
	}
	storage.SetCheckpointDelay(t, time.Hour)
	MustAppend(t, db, x.ID, "new1") // ID 1 again, only in the log
	MustAppend(t, db, x.ID, "new2")
	release()
	if err := storage.WaitCheckpoint(db); err != nil {
		t.Fatal(err)
	}
	list, err := db.Entries(ctx, x.ID, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list {
		v, _ := e.Field(1)
		got = append(got, v)
	}
	if len(got) != 2 || got[0] != "new1" || got[1] != "new2" {
		t.Fatalf("after the checkpoint, channel x reads %q, want [new1 new2]", got)
	}
	if _, err := db.FindEntry(ctx, x.ID, 1); err != nil {
		t.Fatalf("entry 1: %v", err)
	}
}

// A read handed out a page at a time is one read of one feed: once the
// feed is cleared, the pages still to come must not carry the new feed's
// entries, which only share their IDs with the ones the read began on.
func TestEntryPagesDoNotCrossAClear(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	c := MustCreateChannel(t, db, "c")
	for range 6 {
		MustAppend(t, db, c.ID, "old")
	}
	span, err := db.EntrySpan(ctx, c.ID, channels.EntryFilter{})
	if err != nil || span.First != 1 || span.Last != 6 {
		t.Fatalf("span %+v, %v", span, err)
	}
	page, err := db.EntryPage(ctx, c.ID, channels.EntryFilter{}, span, span.First, 3, nil)
	if err != nil || len(page) != 3 {
		t.Fatalf("first page: %d entries, %v", len(page), err)
	}
	if err := db.ClearChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		MustAppend(t, db, c.ID, "new")
	}
	page, err = db.EntryPage(ctx, c.ID, channels.EntryFilter{}, span, page[2].ID+1, 3, page[:0])
	for _, e := range page {
		if v, _ := e.Field(1); v != "old" {
			t.Fatalf("the read begun on the old feed goes on with entry %d %q of the cleared one (err %v)", e.ID, v, err)
		}
	}
	if channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("page after the clear: %v, want a conflict", err)
	}
	// A span read after the clear pages through the new feed.
	if span, err = db.EntrySpan(ctx, c.ID, channels.EntryFilter{}); err != nil {
		t.Fatal(err)
	}
	page, err = db.EntryPage(ctx, c.ID, channels.EntryFilter{}, span, span.First, 10, page[:0])
	if err != nil || len(page) != 6 {
		t.Fatalf("new feed: %d entries, %v", len(page), err)
	}
}
