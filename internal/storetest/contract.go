package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// CheckAppendContract checks the promises every channels.Store makes of
// AppendEntry and of reads with AfterID, on a channel with no entries
// (channelID) and one that does not exist (missingID). stores are views
// of one store, as several processes sharing it hold them (one view for
// a store one process owns): writers append through all of them at
// once, and each entry is read back through every view the moment its
// append returns.
//
// It checks that IDs run on from 1 without gaps or repeats however the
// appends interleave, that each writer's IDs increase, that a returned
// entry is visible to every view at once (FindEntry and Entries with
// AfterID), that the batch and queued appends (when offered) number the
// same way, and that AfterID selects exactly the later entries.
func CheckAppendContract(t *testing.T, stores []channels.Store, channelID, missingID uint64) {
	t.Helper()
	ctx := t.Context()
	if len(stores) == 0 {
		t.Fatal("CheckAppendContract needs a store")
	}
	const writers, each = 4, 25
	entry := func(v string) *channels.Entry {
		e := &channels.Entry{ChannelID: channelID, CreatedAt: time.Now().UTC().Truncate(time.Second)}
		e.SetValue(0, v)
		return e
	}
	var (
		mu  sync.Mutex
		ids []uint64
		wg  sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%len(stores)]
			var last uint64
			for i := range each {
				e := entry(fmt.Sprintf("w%d-%d", w, i))
				if err := s.AppendEntry(ctx, e); err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				if e.ID <= last {
					t.Errorf("writer %d got entry %d after %d", w, e.ID, last)
				}
				last = e.ID
				for n, r := range stores {
					if err := visible(ctx, r, e); err != nil {
						t.Errorf("writer %d, entry %d through view %d: %v", w, e.ID, n, err)
					}
				}
				mu.Lock()
				ids = append(ids, e.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	next := uint64(writers*each) + 1
	wantRun(t, "concurrent appends", ids, 1)

	// A batch and queued appends, when offered, number on.
	if ba, ok := stores[len(stores)-1].(channels.BatchAppender); ok {
		es := []*channels.Entry{entry("b1"), entry("b2"), entry("b3")}
		if err := ba.AppendEntries(ctx, es); err != nil {
			t.Fatalf("AppendEntries: %v", err)
		}
		for i, e := range es {
			if e.ID != next+uint64(i) {
				t.Fatalf("batch entry %d got ID %d, want %d", i, e.ID, next+uint64(i))
			}
			for n, r := range stores {
				if err := visible(ctx, r, e); err != nil {
					t.Fatalf("batch entry %d through view %d: %v", e.ID, n, err)
				}
			}
		}
		next += uint64(len(es))
	}
	if aa, ok := stores[0].(channels.AsyncAppender); ok {
		done := make(chan *channels.Entry, 3)
		for i := range 3 {
			if err := aa.AppendEntryAsync(ctx, entry("q"+strconv.Itoa(i)), func(e *channels.Entry, err error) {
				if err != nil {
					t.Errorf("queued append: %v", err)
				}
				done <- e
			}); err != nil {
				t.Fatalf("AppendEntryAsync: %v", err)
			}
		}
		for i := range 3 {
			select {
			case e := <-done:
				if e.ID != next+uint64(i) {
					t.Fatalf("queued append %d got ID %d, want %d (queue order)", i, e.ID, next+uint64(i))
				}
				for n, r := range stores {
					if err := visible(ctx, r, e); err != nil {
						t.Fatalf("queued entry %d through view %d: %v", e.ID, n, err)
					}
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a queued append was not committed within 10 s")
			}
		}
		next += 3
	}
	last := next - 1

	for n, r := range stores {
		c, err := r.FindChannel(ctx, channelID)
		if err != nil {
			t.Fatalf("view %d: FindChannel: %v", n, err)
		}
		if c.LastEntryID != last {
			t.Fatalf("view %d: LastEntryID %d, want %d", n, c.LastEntryID, last)
		}
		all, err := r.Entries(ctx, channelID, channels.EntryFilter{})
		if err != nil {
			t.Fatalf("view %d: Entries: %v", n, err)
		}
		wantRun(t, fmt.Sprintf("view %d: the feed", n), entryIDs(all), 1)
		for _, after := range []uint64{0, 1, last / 2, last - 1, last, last + 1} {
			got, err := r.Entries(ctx, channelID, channels.EntryFilter{AfterID: after})
			if err != nil {
				t.Fatalf("view %d: Entries after %d: %v", n, after, err)
			}
			if after >= last {
				if len(got) != 0 {
					t.Fatalf("view %d: Entries after %d = %v, want none", n, after, entryIDs(got))
				}
				continue
			}
			wantRun(t, fmt.Sprintf("view %d: entries after %d", n, after), entryIDs(got), after+1)
			if len(got) != int(last-after) {
				t.Fatalf("view %d: %d entries after %d, want %d", n, len(got), after, last-after)
			}
			limited, err := r.Entries(ctx, channelID, channels.EntryFilter{AfterID: after, Limit: 2})
			if err != nil {
				t.Fatalf("view %d: Entries after %d, limit 2: %v", n, after, err)
			}
			if want := entryIDs(got)[max(len(got)-2, 0):]; !slices.Equal(entryIDs(limited), want) {
				t.Fatalf("view %d: Entries after %d, limit 2 = %v, want the newest %v", n, after, entryIDs(limited), want)
			}
		}
	}

	err := stores[0].AppendEntry(ctx, &channels.Entry{ChannelID: missingID, CreatedAt: time.Now()})
	if channels.ErrorCode(err) != channels.ENOTFOUND || !errors.Is(err, channels.ErrChannelNotFound) {
		t.Fatalf("append to a missing channel: %v, want ENOTFOUND wrapping ErrChannelNotFound", err)
	}
	if _, err := stores[0].Entries(ctx, missingID, channels.EntryFilter{AfterID: 1}); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Fatalf("read after an ID of a missing channel: %v, want ENOTFOUND", err)
	}
}

// visible checks that r holds e as appended: by its ID, and in a read
// after the ID before it (whose newest entry is e or a later one).
func visible(ctx context.Context, r channels.Store, e *channels.Entry) error {
	got, err := r.FindEntry(ctx, e.ChannelID, e.ID)
	if err != nil {
		return fmt.Errorf("FindEntry: %w", err)
	}
	if got.Values != e.Values || got.Set != e.Set || !got.CreatedAt.Equal(e.CreatedAt) {
		return fmt.Errorf("FindEntry = %+v, want %+v", got, e)
	}
	list, err := r.Entries(ctx, e.ChannelID, channels.EntryFilter{AfterID: e.ID - 1, Limit: 1})
	if err != nil {
		return fmt.Errorf("Entries after %d: %w", e.ID-1, err)
	}
	if len(list) != 1 || list[0].ID < e.ID {
		return fmt.Errorf("Entries after %d = %v, want it to reach %d", e.ID-1, entryIDs(list), e.ID)
	}
	return nil
}

// wantRun fails unless ids, sorted, are from, from+1, ... without gaps
// or repeats.
func wantRun(t *testing.T, what string, ids []uint64, from uint64) {
	t.Helper()
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	for i, id := range sorted {
		if id != from+uint64(i) {
			t.Fatalf("%s: IDs %v are not %d.. without gaps or repeats (at %d: %d)", what, sorted, from, i, id)
		}
	}
}

func entryIDs(es []channels.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i := range es {
		out[i] = es[i].ID
	}
	return out
}
