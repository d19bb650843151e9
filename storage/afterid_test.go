package storage_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// AfterID keeps only entries with an ID above it, in every read that
// takes a filter: Entries, the paged read (EntrySpan, EntryPage) and the
// keyed read (EntryKeys), with and without the other filters, while the
// newest entries are only in the log, once they are in bbolt, after
// retention deleted the oldest, and after a clear renumbered the feed.
func TestAfterID(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	c := MustCreateChannel(t, db, "c")
	n := 0
	add := func(k int) {
		for range k {
			n++
			// Every third entry is back-dated, so that ID order and
			// time order differ; even IDs set field 2.
			at := now.Add(time.Duration(n) * time.Minute)
			if n%3 == 0 {
				at = now.Add(-time.Duration(n) * time.Minute)
			}
			e := &channels.Entry{ChannelID: c.ID, CreatedAt: at}
			e.SetValue(0, "v")
			if n%2 == 0 {
				e.SetValue(1, "w")
			}
			if err := db.AppendEntry(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	// want is the read worked out the slow way from the whole feed.
	want := func(f channels.EntryFilter) []uint64 {
		all, err := db.Entries(ctx, c.ID, channels.EntryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, e := range all {
			if _, ok := e.Field(2); e.ID > f.AfterID && (f.Field == 0 || ok) &&
				(f.Start.IsZero() || !e.CreatedAt.Before(f.Start)) {
				ids = append(ids, e.ID)
			}
		}
		if f.Limit > 0 && len(ids) > f.Limit {
			ids = ids[len(ids)-f.Limit:]
		}
		return ids
	}
	check := func(stage string) {
		t.Helper()
		last, err := db.FindChannel(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for after := uint64(0); after <= last.LastEntryID+1; after++ {
			for _, f := range []channels.EntryFilter{
				{AfterID: after},
				{AfterID: after, Limit: 1},
				{AfterID: after, Limit: 3},
				{AfterID: after, Field: 2},
				{AfterID: after, Field: 2, Limit: 2},
				{AfterID: after, Start: now},
			} {
				w := want(f)
				if after > 0 && f.Limit == 0 && f.Field == 0 && f.Start.IsZero() {
					// The filter alone, against the feed's IDs.
					var plain []uint64
					for id := max(after+1, 1); id <= last.LastEntryID; id++ {
						plain = append(plain, id)
					}
					if kept := want(channels.EntryFilter{}); len(kept) > 0 {
						plain = slices.DeleteFunc(plain, func(id uint64) bool { return id < kept[0] })
					}
					if !slices.Equal(w, plain) {
						t.Fatalf("%s: model %v, want %v", stage, w, plain)
					}
				}
				list, err := db.Entries(ctx, c.ID, f)
				if err != nil {
					t.Fatalf("%s: Entries(%+v): %v", stage, f, err)
				}
				if got := ids(list); !slices.Equal(got, w) {
					t.Fatalf("%s: Entries(%+v) = %v, want %v", stage, f, got, w)
				}
				span, err := db.EntrySpan(ctx, c.ID, f)
				if err != nil {
					t.Fatalf("%s: EntrySpan(%+v): %v", stage, f, err)
				}
				var paged []channels.Entry
				if span.First > 0 {
					// Two entries a page, from below AfterID: the
					// page itself must not go under it.
					pf := f
					pf.Limit = 0
					for from := uint64(1); ; {
						page, err := db.EntryPage(ctx, c.ID, pf, span, from, 2, nil)
						if err != nil {
							t.Fatalf("%s: EntryPage(%+v, %d): %v", stage, f, from, err)
						}
						paged = append(paged, page...)
						if len(page) < 2 {
							break
						}
						from = page[len(page)-1].ID + 1
					}
					paged = slices.DeleteFunc(paged, func(e channels.Entry) bool { return e.ID < span.First })
				}
				if got := ids(paged); !slices.Equal(got, w) {
					t.Fatalf("%s: paged read of %+v (span %+v) = %v, want %v", stage, f, span, got, w)
				}
				if f.Limit > 0 {
					keys, err := db.EntryKeys(ctx, c.ID, f)
					if err != nil {
						t.Fatalf("%s: EntryKeys(%+v): %v", stage, f, err)
					}
					wk := wantKeys(t, db, c.ID, channels.EntryFilter{Field: f.Field, Start: f.Start, Limit: MaxKeys})
					wk = slices.DeleteFunc(wk, func(k channels.EntryKey) bool { return k.ID <= f.AfterID })
					wk = wk[max(len(wk)-f.Limit, 0):]
					if !slices.Equal(keys.Keys, wk) {
						t.Fatalf("%s: EntryKeys(%+v) = %v, want %v", stage, f, keys.Keys, wk)
					}
				}
			}
		}
	}
	check("empty")
	add(12)
	check("logged")
	storage.Sync(t, db)
	check("in bbolt")
	add(7)
	check("in bbolt and logged")
	withRetention(t, db, c, 8, 0)
	if _, err := db.Prune(ctx, now); err != nil {
		t.Fatal(err)
	}
	if es, _ := db.Entries(ctx, c.ID, channels.EntryFilter{}); len(es) != 8 || es[0].ID != 12 {
		t.Fatalf("after retention: %v", ids(es))
	}
	check("after retention")
	if err := db.ClearChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	n = 0
	add(5)
	check("cleared and refilled")
}

// MaxKeys is storage.MaxKeyLimit, to ask wantKeys for every key.
const MaxKeys = storage.MaxKeyLimit

// A read with AfterID at or past the newest entry, or on a missing
// channel, answers as any other filter does.
func TestAfterIDEdges(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	c := MustCreateChannel(t, db, "c")
	for range 3 {
		MustAppend(t, db, c.ID, "v")
	}
	for _, after := range []uint64{3, 4, 1 << 63, ^uint64(0)} {
		f := channels.EntryFilter{AfterID: after}
		if es, err := db.Entries(ctx, c.ID, f); err != nil || len(es) != 0 {
			t.Fatalf("Entries after %d: %v %v", after, ids(es), err)
		}
		span, err := db.EntrySpan(ctx, c.ID, f)
		if err != nil || span.First != 0 || span.Last != 0 {
			t.Fatalf("EntrySpan after %d: %+v %v", after, span, err)
		}
		full, err := db.EntrySpan(ctx, c.ID, channels.EntryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if page, err := db.EntryPage(ctx, c.ID, f, full, 1, 10, nil); err != nil || len(page) != 0 {
			t.Fatalf("EntryPage after %d: %v %v", after, ids(page), err)
		}
		f.Limit = 2
		if keys, err := db.EntryKeys(ctx, c.ID, f); err != nil || len(keys.Keys) != 0 {
			t.Fatalf("EntryKeys after %d: %v %v", after, keys.Keys, err)
		}
	}
	if es, err := db.Entries(ctx, c.ID, channels.EntryFilter{AfterID: 2}); err != nil || !slices.Equal(ids(es), []uint64{3}) {
		t.Fatalf("after 2: %v %v", ids(es), err)
	}
	_, err := db.Entries(ctx, c.ID+1, channels.EntryFilter{AfterID: 1})
	wantCode(t, err, channels.ENOTFOUND)
}
