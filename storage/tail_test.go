package storage_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// Reads see the entries that are only in the write-ahead log without
// having the writer copy them into the file: a client that reads often
// must not make appends wait for checkpoints.
func TestReadsDoNotCheckpoint(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	c1, c2 := MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b")
	for i := 1; i <= 10; i++ {
		MustAppend(t, db, c1.ID, "a"+strconv.Itoa(i))
	}
	MustAppend(t, db, c2.ID, "b1")
	check := func(stage string) {
		t.Helper()
		list, err := db.Entries(ctx, c1.ID, channels.EntryFilter{})
		if err != nil || len(list) != 10 {
			t.Fatalf("%s: %d entries, %v", stage, len(list), err)
		}
		for i, e := range list {
			if v, _ := e.Field(1); e.ID != uint64(i+1) || v != "a"+strconv.Itoa(i+1) {
				t.Fatalf("%s: entry %d is %d %q", stage, i, e.ID, v)
			}
		}
		if list, err := db.Entries(ctx, c1.ID, channels.EntryFilter{Limit: 3}); err != nil || len(list) != 3 || list[0].ID != 8 {
			t.Fatalf("%s: newest 3: %v %v", stage, list, err)
		}
		if e, err := db.FindEntry(ctx, c1.ID, 7); err != nil || e.ID != 7 {
			t.Fatalf("%s: entry 7: %v %v", stage, e, err)
		}
		if _, err := db.FindEntry(ctx, c1.ID, 11); channels.ErrorCode(err) != channels.ENOTFOUND {
			t.Fatalf("%s: entry 11: %v", stage, err)
		}
		if c, err := db.FindChannel(ctx, c1.ID); err != nil || c.LastEntryID != 10 {
			t.Fatalf("%s: FindChannel: %v %v", stage, c, err)
		}
		cs, err := db.ListChannels(ctx)
		if err != nil || len(cs) != 2 || cs[0].LastEntryID != 10 || cs[1].LastEntryID != 1 {
			t.Fatalf("%s: ListChannels: %v %v", stage, cs, err)
		}
		if _, err := db.ListDevices(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check("logged")
	if n := storage.Unapplied(db); n != 11 {
		t.Fatalf("after reads, %d entries are only in the log, want all 11: a read copied them", n)
	}
	storage.Sync(t, db)
	check("copied")
	MustAppend(t, db, c1.ID, "a11") // half in the file, half in the log
	check2, err := db.Entries(ctx, c1.ID, channels.EntryFilter{})
	if err != nil || len(check2) != 11 || check2[10].ID != 11 {
		t.Fatalf("mixed: %d entries, %v", len(check2), err)
	}
}

// While appends and checkpoints run, every read holds every entry whose
// append returned before the read began, each once and in order.
func TestReadsSeeAcknowledgedEntries(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Millisecond)
	db := MustOpenDB(t)
	ctx := context.Background()
	c := MustCreateChannel(t, db, "c")
	const n = 3000
	var acked atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			e := &channels.Entry{ChannelID: c.ID}
			e.SetValue(0, strconv.Itoa(i))
			if err := db.AppendEntry(ctx, e); err != nil {
				t.Error(err)
				return
			}
			acked.Store(e.ID)
		}
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				before := acked.Load()
				list, err := db.Entries(ctx, c.ID, channels.EntryFilter{})
				if err != nil {
					t.Error(err)
					return
				}
				if uint64(len(list)) < before {
					t.Errorf("read after %d acknowledged entries got %d", before, len(list))
					return
				}
				for i, e := range list {
					if v, _ := e.Field(1); e.ID != uint64(i+1) || v != strconv.Itoa(i+1) {
						t.Errorf("entry %d is %d %q", i, e.ID, v)
						return
					}
				}
				if ch, err := db.FindChannel(ctx, c.ID); err != nil || ch.LastEntryID < before {
					t.Errorf("LastEntryID %v after %d acknowledged (%v)", ch, before, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	<-done
}

// Reading a span page by page gives what Entries gives, whether the
// entries are in the file, only in the log, or both.
func TestEntryPages(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	c := MustCreateChannel(t, db, "c")
	add := func(from, to int) {
		for i := from; i <= to; i++ {
			e := &channels.Entry{ChannelID: c.ID, CreatedAt: now.Add(time.Duration(i) * time.Minute)}
			e.SetValue(0, strconv.Itoa(i))
			if i%3 == 0 {
				e.SetValue(1, "x")
			}
			if err := db.AppendEntry(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(1, 50)
	storage.Sync(t, db)
	add(51, 80) // only in the log
	filters := []channels.EntryFilter{
		{}, {Limit: 1}, {Limit: 7}, {Limit: 45}, {Limit: 100}, {Field: 2}, {Field: 2, Limit: 5},
		{Start: now.Add(10 * time.Minute), End: now.Add(60 * time.Minute)},
		{Start: now.Add(70 * time.Minute), Limit: 3}, {Field: 5},
	}
	for _, f := range filters {
		want, err := db.Entries(ctx, c.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		span, err := db.EntrySpan(ctx, c.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		first, last := span.First, span.Last
		if len(want) == 0 {
			if first != 0 || last != 0 {
				t.Errorf("%+v: span %d..%d of nothing", f, first, last)
			}
			continue
		}
		if first != want[0].ID || last != want[len(want)-1].ID {
			t.Errorf("%+v: span %d..%d, want %d..%d", f, first, last, want[0].ID, want[len(want)-1].ID)
		}
		for _, size := range []int{1, 4, 50, 1000} {
			var got []channels.Entry
			for from := first; ; {
				page, err := db.EntryPage(ctx, c.ID, f, span, from, size, nil)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if len(page) < size {
					break
				}
				from = page[len(page)-1].ID + 1
			}
			if len(got) != len(want) {
				t.Fatalf("%+v, pages of %d: %d entries, want %d", f, size, len(got), len(want))
			}
			for i := range got {
				if got[i].ID != want[i].ID || got[i].Values != want[i].Values || !got[i].CreatedAt.Equal(want[i].CreatedAt) {
					t.Fatalf("%+v, pages of %d: entry %d is %+v, want %+v", f, size, i, got[i], want[i])
				}
			}
		}
	}
	if _, err := db.EntrySpan(ctx, 99, channels.EntryFilter{}); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Errorf("span of a missing channel: %v", err)
	}
}
