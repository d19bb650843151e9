package storage_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

func TestAppendEntry_IDsAndTime(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	for want := uint64(1); want <= 3; want++ {
		e := MustAppend(t, db, c.ID, "v")
		if e.ID != want {
			t.Fatalf("entry ID = %d, want %d", e.ID, want)
		}
		if !e.CreatedAt.Equal(now) || e.CreatedAt.Location() != time.UTC {
			t.Fatalf("CreatedAt = %v, want %v", e.CreatedAt, now)
		}
	}
	if got, _ := db.FindChannel(ctx, c.ID); got.LastEntryID != 3 {
		t.Fatalf("LastEntryID = %d, want 3", got.LastEntryID)
	}

	// A given created_at is kept, at second precision, in UTC.
	given := time.Date(2020, 1, 2, 3, 4, 5, 999, time.FixedZone("X", 3600))
	e := &channels.Entry{ChannelID: c.ID, CreatedAt: given}
	e.SetValue(channels.Status, "ok")
	if err := db.AppendEntry(ctx, e); err != nil {
		t.Fatal(err)
	}
	if want := given.Truncate(time.Second).UTC(); !e.CreatedAt.Equal(want) || e.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v, want %v", e.CreatedAt, want)
	}
	got, err := db.FindEntry(ctx, c.ID, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("FindEntry =\n%+v\nwant\n%+v", got, e)
	}
}

func TestAppendEntry_UnknownValues(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	err := db.AppendEntry(context.Background(), &channels.Entry{ChannelID: c.ID, Set: 1 << channels.NumValues})
	wantCode(t, err, channels.EINVALID)
}

func TestFindEntry(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	MustAppend(t, db, c.ID, "a")
	MustAppend(t, db, c.ID, "b")
	e, err := db.FindEntry(ctx, c.ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Field(1); v != "b" || e.ID != 2 || e.ChannelID != c.ID {
		t.Fatalf("FindEntry = %+v", e)
	}
	_, err = db.FindEntry(ctx, c.ID, 3)
	wantCode(t, err, channels.ENOTFOUND)
}

// seedFeed stores entries 1..6, one minute apart from now; entries with an
// even ID set field2, every entry sets field1.
func seedFeed(t *testing.T, db *storage.DB) uint64 {
	t.Helper()
	c := MustCreateChannel(t, db, "x")
	for i := 1; i <= 6; i++ {
		e := &channels.Entry{ChannelID: c.ID, CreatedAt: now.Add(time.Duration(i) * time.Minute)}
		e.SetValue(0, "f1")
		if i%2 == 0 {
			e.SetValue(1, "f2")
		}
		if err := db.AppendEntry(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return c.ID
}

func TestEntries_Filter(t *testing.T) {
	db := MustOpenDB(t)
	id := seedFeed(t, db)
	minute := func(i int) time.Time { return now.Add(time.Duration(i) * time.Minute) }
	tests := []struct {
		name string
		f    channels.EntryFilter
		want []uint64
	}{
		{"all", channels.EntryFilter{}, []uint64{1, 2, 3, 4, 5, 6}},
		{"limit keeps newest", channels.EntryFilter{Limit: 2}, []uint64{5, 6}},
		{"limit over count", channels.EntryFilter{Limit: 100}, []uint64{1, 2, 3, 4, 5, 6}},
		{"start inclusive", channels.EntryFilter{Start: minute(4)}, []uint64{4, 5, 6}},
		{"end inclusive", channels.EntryFilter{End: minute(2)}, []uint64{1, 2}},
		{"start and end", channels.EntryFilter{Start: minute(2), End: minute(4)}, []uint64{2, 3, 4}},
		{"sub-second start", channels.EntryFilter{Start: minute(2).Add(time.Millisecond)}, []uint64{3, 4, 5, 6}},
		{"field", channels.EntryFilter{Field: 2}, []uint64{2, 4, 6}},
		{"field and limit", channels.EntryFilter{Field: 2, Limit: 2}, []uint64{4, 6}},
		{"field unset everywhere", channels.EntryFilter{Field: 8}, nil},
		{"all filters", channels.EntryFilter{Field: 2, Start: minute(1), End: minute(5), Limit: 1}, []uint64{4}},
		{"empty range", channels.EntryFilter{Start: minute(7)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := db.Entries(context.Background(), id, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, e := range list {
				got = append(got, e.ID)
				if e.ChannelID != id || !e.CreatedAt.Equal(minute(int(e.ID))) {
					t.Errorf("entry %d = %+v", e.ID, e)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("IDs = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEntryCount checks that the count is the number of entries held, not
// the last entry_id: retention, gaps left by an import that kept IDs, a
// clear, and a missing channel.
func TestEntryCount(t *testing.T) {
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
	c := MustCreateChannel(t, db, "capped")
	if n := count(c.ID); n != 0 {
		t.Fatalf("empty channel counts %d", n)
	}
	for range 35 {
		MustAppend(t, db, c.ID, "v")
	}
	if n := count(c.ID); n != 35 {
		t.Fatalf("count %d, want 35", n)
	}
	withRetention(t, db, c, 5, 0)
	if _, err := db.Prune(ctx, now); err != nil {
		t.Fatal(err)
	}
	if n := count(c.ID); n != 5 {
		t.Fatalf("after retention: count %d, want 5 (last entry_id 35)", n)
	}
	if err := db.ClearChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(c.ID); n != 0 {
		t.Fatalf("after clear: count %d", n)
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

	_, err := db.EntryCount(ctx, 999)
	wantCode(t, err, channels.ENOTFOUND)
}
