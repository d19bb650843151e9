package storage_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

func batchOf(ch uint64, prefix string, n int) []*channels.Entry {
	es := make([]*channels.Entry, n)
	for i := range es {
		es[i] = &channels.Entry{ChannelID: ch}
		es[i].SetValue(0, prefix+strconv.Itoa(i+1))
	}
	return es
}

// A batch whose write the power cut short is lost whole on recovery: the
// marker before it names the records it must have.
func TestAppendEntries_TornBatchIsDroppedWhole(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "1")
	size := func() int64 {
		end, err := storage.WALEnd(storage.WALPath(db.Path()))
		if err != nil {
			t.Fatal(err)
		}
		return end
	}
	before := size()
	if err := db.AppendEntries(context.Background(), batchOf(c.ID, "b", 4)); err != nil {
		t.Fatal(err)
	}
	whole := size() - before
	// Whole, the batch is recovered.
	wantValues(t, MustOpenPath(t, crashCopy(t, db)), c.ID, "1", "b1", "b2", "b3", "b4")
	for cut := int64(1); cut < whole; cut += 5 {
		path := crashCopy(t, db)
		if err := os.Truncate(storage.WALPath(path), before+cut); err != nil {
			t.Fatal(err)
		}
		cp := MustOpenPath(t, path)
		wantValues(t, cp, c.ID, "1")
		if e := MustAppend(t, cp, c.ID, "2"); e.ID != 2 {
			t.Fatalf("cut at %d: next entry got ID %d, want 2", cut, e.ID)
		}
		if err := cp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A flipped bit in the batch's last record drops the whole batch too.
	path := crashCopy(t, db)
	wal := storage.WALPath(path)
	b, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	b[before+whole-1] ^= 1
	if err := os.WriteFile(wal, b, 0o600); err != nil {
		t.Fatal(err)
	}
	wantValues(t, MustOpenPath(t, path), c.ID, "1")
}

// Checkpointed batches are read back from the file as the log held them.
func TestAppendEntries_Checkpoint(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	if err := db.AppendEntries(context.Background(), batchOf(c.ID, "b", 3)); err != nil {
		t.Fatal(err)
	}
	storage.Sync(t, db)
	if n := storage.Unapplied(db); n != 0 {
		t.Fatalf("%d entries unapplied after sync", n)
	}
	wantValues(t, db, c.ID, "b1", "b2", "b3")
}

func BenchmarkAppendEntries960(b *testing.B) {
	db := MustOpenDB(b)
	c := MustCreateChannel(b, db, "c")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := db.AppendEntries(ctx, batchOf(c.ID, "v", 960)); err != nil {
			b.Fatal(err)
		}
	}
}

// A batch refused because its log sync failed may still be on disk past
// the log's end. When the next append is shorter than it and ends on one
// of its record boundaries, the refused batch's remaining records follow
// the log's valid end as valid records of the same epoch: recovery must
// not take them (entries whose writer was told they were not stored).
func TestAppendEntries_RefusedBatchLeavesNoRecords(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	var failing atomic.Bool
	storage.FailLogSyncs(t, func(op string) bool { return op == "append" && failing.Load() })
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "a1")
	failing.Store(true)
	if err := db.AppendEntries(context.Background(), batchOf(c.ID, "r", 5)); err == nil {
		t.Fatal("the batch whose sync failed succeeded")
	}
	failing.Store(false)
	// Same sizes as the refused batch's marker and first record.
	if err := db.AppendEntries(context.Background(), batchOf(c.ID, "c", 1)); err != nil {
		t.Fatal(err)
	}
	wantValues(t, db, c.ID, "a1", "c1")
	wantValues(t, MustOpenPath(t, crashCopy(t, db)), c.ID, "a1", "c1")
}

// The refused batch's records left behind a shorter append are worse once
// the logs switch: recovery applies the older log first, its leftover
// records take the IDs that acknowledged entries in the newer log have,
// and those are then skipped as already held.
func TestAppendEntries_RefusedBatchDoesNotHideAcknowledged(t *testing.T) {
	// Only the batch below arms the timer (nothing else is pending
	// then): the logs switch right after it, leaving it the last thing
	// in its log, and not again while that checkpoint is held.
	storage.SetCheckpointDelay(t, time.Millisecond)
	release := storage.HoldCheckpoints(t) // the old log is not applied and started over
	var failing atomic.Bool
	storage.FailLogSyncs(t, func(op string) bool { return op == "append" && failing.Load() })
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	failing.Store(true)
	if err := db.AppendEntries(context.Background(), batchOf(c.ID, "r", 5)); err == nil {
		t.Fatal("the batch whose sync failed succeeded")
	}
	failing.Store(false)
	other := storage.WALPaths(db.Path())[1]
	header := func() []byte {
		b, err := os.ReadFile(other)
		if err != nil {
			t.Fatal(err)
		}
		return b[:16]
	}
	before := header()
	if err := db.AppendEntries(context.Background(), batchOf(c.ID, "c", 1)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); bytes.Equal(header(), before); {
		if time.Now().After(deadline) {
			t.Fatal("the logs did not switch")
		}
		time.Sleep(5 * time.Millisecond)
	}
	MustAppend(t, db, c.ID, "d1") // acknowledged, in the other log
	MustAppend(t, db, c.ID, "d2")
	path := crashCopy(t, db)
	release() // else closing db waits for the held checkpoint
	wantValues(t, MustOpenPath(t, path), c.ID, "c1", "d1", "d2")
}
