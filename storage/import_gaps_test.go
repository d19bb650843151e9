package storage_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Retention by MaxEntries keeps the newest MaxEntries entries even where
// imported IDs left gaps (sequence minus MaxEntries would delete entries
// the limit allows).
func TestPrune_MaxEntriesKeepsEnoughAcrossImportedGaps(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "gappy")
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := []channels.Entry{
		imported(c.ID, 1, t0, "a"),
		imported(c.ID, 10, t0.Add(time.Minute), "b"),
		imported(c.ID, 20, t0.Add(2*time.Minute), "c"),
		imported(c.ID, 30, t0.Add(3*time.Minute), "d"),
	}
	if err := db.ImportEntries(ctx, c.ID, batch, true); err != nil {
		t.Fatal(err)
	}
	withRetention(t, db, c, 3, 0)
	n, err := db.Prune(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if first, last, cnt := feedIDs(t, db, c.ID); n != 1 || first != 10 || last != 30 || cnt != 3 {
		t.Fatalf("max_entries 3 over IDs 1,10,20,30: pruned %d, left %d..%d (%d entries), want 10..30 (3)", n, first, last, cnt)
	}
}

// An imported entry_id at the top of the ID range must not make the next
// append wrap around to ID 0, which recovery would skip (an acknowledged
// entry lost) and which sorts before every other key.
func TestImportEntries_RefusesIDsWithNoRoomAbove(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "top")
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	err := db.ImportEntries(ctx, c.ID, []channels.Entry{imported(c.ID, math.MaxUint64, t0, "a")}, true)
	if err == nil {
		e := MustAppend(t, db, c.ID, "live")
		t.Fatalf("entry_id %d imported; the next append got ID %d", uint64(math.MaxUint64), e.ID)
	}
	if channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("entry_id %d: %v, want EINVALID", uint64(math.MaxUint64), err)
	}
}

// Stats (which backup reports) counts the entries a feed holds, not the
// span of its IDs, which imported gaps widen.
func TestStats_CountsEntriesAcrossImportedGaps(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "gappy")
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := []channels.Entry{imported(c.ID, 1, t0, "a"), imported(c.ID, 1000, t0.Add(time.Minute), "b")}
	if err := db.ImportEntries(ctx, c.ID, batch, true); err != nil {
		t.Fatal(err)
	}
	if st, err := db.Stats(ctx); err != nil || st.Entries != 2 {
		t.Fatalf("stats of a feed with IDs 1 and 1000: %+v, %v; want 2 entries", st, err)
	}
	_, st, err := db.BackupFile(ctx, t.TempDir()+"/backup.db")
	if err != nil || st.Entries != 2 {
		t.Fatalf("backup of a feed with IDs 1 and 1000: %+v, %v; want 2 entries", st, err)
	}
}
