package storage_test

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// imported returns an entry for ImportEntries with field1 = v.
func imported(ch, id uint64, at time.Time, v string) channels.Entry {
	e := channels.Entry{ChannelID: ch, ID: id, CreatedAt: at}
	e.SetValue(0, v)
	return e
}

func ids(es []channels.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i := range es {
		out[i] = es[i].ID
	}
	return out
}

// Imported IDs, gaps and the numbering after them survive a reopen
// (storetest's suite checks imports on every store; the file is this
// store's own).
func TestImportEntries_KeepIDs(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := []channels.Entry{
		imported(c.ID, 5, t0, "a"),
		imported(c.ID, 7, t0.Add(500*time.Millisecond), "b"), // same second
		imported(c.ID, 10, t0.Add(time.Hour), "c"),
	}
	batch[1].SetValue(channels.Status, "door open, back")
	if err := db.ImportEntries(ctx, c.ID, batch, true); err != nil {
		t.Fatal(err)
	}
	if got := ids(batch); !reflect.DeepEqual(got, []uint64{5, 7, 10}) {
		t.Fatalf("IDs %v", got)
	}
	// A second batch continues above; one at or below the last ID is
	// refused whole.
	more := []channels.Entry{imported(c.ID, 11, t0.Add(2*time.Hour), "d"), imported(c.ID, 10, t0.Add(3*time.Hour), "e")}
	wantCode(t, db.ImportEntries(ctx, c.ID, more, true), channels.ECONFLICT)
	more = []channels.Entry{imported(c.ID, 12, t0.Add(2*time.Hour), "d")}
	if err := db.ImportEntries(ctx, c.ID, more, true); err != nil {
		t.Fatal(err)
	}
	// An append continues after the highest imported ID.
	if e := MustAppend(t, db, c.ID, "live"); e.ID != 13 {
		t.Fatalf("append after import got ID %d, want 13", e.ID)
	}
	check := func(db *storage.DB) {
		t.Helper()
		got, err := db.FindChannel(ctx, c.ID)
		if err != nil || got.LastEntryID != 13 {
			t.Fatalf("LastEntryID %v, %v; want 13", got, err)
		}
		es, err := db.Entries(ctx, c.ID, channels.EntryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(es); !reflect.DeepEqual(got, []uint64{5, 7, 10, 12, 13}) {
			t.Fatalf("entries %v", got)
		}
		e, err := db.FindEntry(ctx, c.ID, 7)
		if err != nil {
			t.Fatal(err)
		}
		want := batch[1]
		want.CreatedAt = t0
		if !reflect.DeepEqual(*e, want) {
			t.Fatalf("entry 7 = %+v, want %+v", *e, want)
		}
		if _, err := db.FindEntry(ctx, c.ID, 6); channels.ErrorCode(err) != channels.ENOTFOUND {
			t.Fatalf("gap entry 6: %v", err)
		}
	}
	check(db)
	check(MustReopen(t, db))
}

// TestImportEntries_WithAppends imports while appends run: every entry
// gets its own ID, and appends logged before a batch are numbered before
// it, also once the log is replayed at a reopen.
func TestImportEntries_WithAppends(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	const appends, batches, per = 300, 20, 10
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < appends; i++ {
			e := &channels.Entry{ChannelID: c.ID}
			e.SetValue(0, "live")
			if err := db.AppendEntry(ctx, e); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for b := 0; b < batches; b++ {
		es := make([]channels.Entry, per)
		for i := range es {
			es[i] = imported(c.ID, 0, now, "imp") // now: never older than an append
		}
		if err := db.ImportEntries(ctx, c.ID, es, false); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < per; i++ {
			if es[i].ID != es[i-1].ID+1 {
				t.Fatalf("batch IDs not consecutive: %v", ids(es))
			}
		}
	}
	wg.Wait()
	check := func(db *storage.DB) {
		t.Helper()
		es, err := db.Entries(ctx, c.ID, channels.EntryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != appends+batches*per {
			t.Fatalf("%d entries, want %d", len(es), appends+batches*per)
		}
		for i := range es {
			if es[i].ID != uint64(i+1) {
				t.Fatalf("entry %d has ID %d", i, es[i].ID)
			}
		}
	}
	check(db)
	check(MustReopen(t, db))
}

// TestImportEntries_PagingReader: a reader paging through a feed goes on
// across an import, which changes no ID it holds.
func TestImportEntries_PagingReader(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	for i := 0; i < 5; i++ {
		MustAppend(t, db, c.ID, "v")
	}
	span, err := db.EntrySpan(ctx, c.ID, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.ImportEntries(ctx, c.ID, []channels.Entry{imported(c.ID, 0, now, "imp")}, false); err != nil {
		t.Fatal(err)
	}
	page, err := db.EntryPage(ctx, c.ID, channels.EntryFilter{}, span, 1, 10, nil)
	if err != nil || len(page) != 5 {
		t.Fatalf("page after import: %d entries, %v", len(page), err)
	}
	// A clear, by contrast, ends such a read.
	if err := db.ClearChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EntryPage(ctx, c.ID, channels.EntryFilter{}, span, 1, 10, nil); channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("page after clear: %v", err)
	}
}

// TestImportEntries_WideGap: an unfiltered read of a feed whose imported
// IDs leave a huge gap reserves no memory for the gap.
func TestImportEntries_WideGap(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	es := []channels.Entry{imported(c.ID, 1, now, "a"), imported(c.ID, storage.MaxImportedID, now, "b")}
	if err := db.ImportEntries(ctx, c.ID, es, true); err != nil {
		t.Fatal(err)
	}
	got, err := db.Entries(ctx, c.ID, channels.EntryFilter{})
	if err != nil || len(got) != 2 || cap(got) > 1<<16 {
		t.Fatalf("Entries: %d entries, cap %d, %v", len(got), cap(got), err)
	}
	if e := MustAppend(t, db, c.ID, "next"); e.ID != storage.MaxImportedID+1 {
		t.Fatalf("append after the gap got ID %d", e.ID)
	}
}
