package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// TestEntryCount checks that the count is the number of entries held, not
// the last entry_id, once an import kept another server's IDs with gaps.
// (storetest's suite checks counts after appends, retention and a clear
// on every store.)
func TestEntryCount_ImportedGaps(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	count := func(id uint64) uint64 {
		t.Helper()
		n, err := db.EntryCount(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	gaps := MustCreateChannel(t, db, "imported")
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := []channels.Entry{imported(gaps.ID, 5, t0, "a"), imported(gaps.ID, 7, t0.Add(time.Minute), "b"), imported(gaps.ID, 100, t0.Add(time.Hour), "c")}
	if err := db.ImportEntries(ctx, gaps.ID, batch, true); err != nil {
		t.Fatal(err)
	}
	if n := count(gaps.ID); n != 3 {
		t.Fatalf("imported with gaps: count %d, want 3", n)
	}
	MustAppend(t, db, gaps.ID, "d")
	if n := count(gaps.ID); n != 4 {
		t.Fatalf("after an append: count %d, want 4", n)
	}
}
