package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

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
