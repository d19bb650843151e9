package storage_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// wantKeys is what EntryKeys must answer, worked out the slow way: every
// entry of the channel, filtered, sorted by time then ID, the newest
// limit of them.
func wantKeys(t *testing.T, db *storage.DB, ch uint64, f channels.EntryFilter) []channels.EntryKey {
	t.Helper()
	all, err := db.Entries(context.Background(), ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []channels.EntryKey
	for _, e := range all {
		if (!f.Start.IsZero() && e.CreatedAt.Before(f.Start)) || (!f.End.IsZero() && e.CreatedAt.After(f.End)) {
			continue
		}
		if f.Field > 0 {
			if _, ok := e.Field(f.Field); !ok {
				continue
			}
		}
		keys = append(keys, channels.EntryKey{Created: e.CreatedAt.Unix(), ID: e.ID})
	}
	slices.SortFunc(keys, func(a, b channels.EntryKey) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.ID, b.ID))
	})
	return keys[max(len(keys)-f.Limit, 0):]
}

// EntryKeys selects the newest entries by created_at, not by entry_id,
// whatever order the entries were written in: in time order, with one
// back-dated entry, with many, across log checkpoints (entries in the
// log and in bbolt), across a clear that refills the feed out of order
// (what is known of a feed's order must not outlive it), with and
// without start, end and field.
func TestEntryKeysTimeOrder(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	ch := MustCreateChannel(t, db, "c")
	rng := rand.New(rand.NewPCG(1, 2))
	base := now.Add(-48 * time.Hour)
	clock := base
	appendAt := func(at time.Time, withField2 bool) {
		e := &channels.Entry{ChannelID: ch.ID, CreatedAt: at}
		e.SetValue(0, "v")
		if withField2 {
			e.SetValue(1, "w")
		}
		if err := db.AppendEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	check := func(stage string) {
		t.Helper()
		for range 40 {
			f := channels.EntryFilter{Limit: 1 + rng.IntN(60)}
			if rng.IntN(3) == 0 {
				f.Start = base.Add(time.Duration(rng.IntN(48*60)) * time.Minute)
			}
			if rng.IntN(3) == 0 {
				f.End = base.Add(time.Duration(rng.IntN(48*60)) * time.Minute)
			}
			if rng.IntN(4) == 0 {
				f.Field = 2
			}
			got, err := db.EntryKeys(ctx, ch.ID, f)
			if err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			if want := wantKeys(t, db, ch.ID, f); !slices.Equal(got.Keys, want) {
				t.Fatalf("%s: EntryKeys(%+v) = %v, want %v", stage, f, got.Keys, want)
			}
			// The entries come back in the keys' order.
			es, err := db.EntriesByKey(ctx, ch.ID, got.Version, got.Keys, nil)
			if err != nil || len(es) != len(got.Keys) {
				t.Fatalf("%s: EntriesByKey: %d entries, %v", stage, len(es), err)
			}
			for i, e := range es {
				if e.ID != got.Keys[i].ID || e.CreatedAt.Unix() != got.Keys[i].Created {
					t.Fatalf("%s: entry %d is %d at %v, key %+v", stage, i, e.ID, e.CreatedAt, got.Keys[i])
				}
			}
		}
	}
	grow := func(n int, backDated int) {
		for range n {
			clock = clock.Add(time.Duration(1+rng.IntN(120)) * time.Second)
			at := clock
			if rng.IntN(n) < backDated {
				at = base.Add(time.Duration(rng.IntN(int(clock.Sub(base)/time.Second))) * time.Second)
			}
			appendAt(at, rng.IntN(2) == 0)
		}
	}
	check("empty")
	grow(150, 0)
	check("in time order, in the log")
	storage.Sync(t, db)
	check("in time order, in bbolt")
	grow(1, 1)
	check("one back-dated entry")
	grow(200, 0)
	check("in time order since")
	storage.Sync(t, db)
	grow(100, 30)
	check("many back-dated, part in the log")
	storage.Sync(t, db)
	check("many back-dated, in bbolt")

	if err := db.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	clock = base
	grow(50, 0)
	check("cleared, in time order")
	for i := range 20 {
		appendAt(base.Add(time.Duration(40-i)*time.Minute), true) // running backwards
	}
	check("cleared, then back-dated")
	storage.Sync(t, db)
	db = MustReopen(t, db)
	check("reopened")

	// A feed known to be in time order is cleared and refilled, with
	// fewer IDs, running backwards.
	ch = MustCreateChannel(t, db, "d")
	clock = base
	grow(100, 0)
	check("in time order before a clear")
	if err := db.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		appendAt(base.Add(time.Duration(60-i)*time.Minute), i%2 == 0)
	}
	check("refilled backwards")
}

// Keyed reads running while entries, some back-dated, are appended and
// checkpointed each see keys in time order, and once the writes stop
// they select what the slow way does (run with -race: the order cache
// is shared).
func TestEntryKeysWhileWriting(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Millisecond)
	db := MustOpenDB(t)
	ctx := context.Background()
	ch := MustCreateChannel(t, db, "c")
	base := now.Add(-time.Hour)
	done := make(chan struct{})
	errs := make(chan error, 4)
	for r := range 3 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				keys, err := db.EntryKeys(ctx, ch.ID, channels.EntryFilter{Limit: 5 + r*20})
				if err != nil {
					errs <- err
					return
				}
				if !slices.IsSortedFunc(keys.Keys, func(a, b channels.EntryKey) int {
					return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.ID, b.ID))
				}) {
					errs <- fmt.Errorf("keys out of order: %v", keys.Keys)
					return
				}
			}
		}()
	}
	for i := range 300 {
		at := base.Add(time.Duration(i) * time.Second)
		if i%17 == 0 {
			at = base.Add(-time.Duration(i) * time.Second) // back-dated
		}
		e := &channels.Entry{ChannelID: ch.ID, CreatedAt: at}
		e.SetValue(0, strconv.Itoa(i))
		if err := db.AppendEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{1, 10, 50, 400} {
		f := channels.EntryFilter{Limit: n}
		got, err := db.EntryKeys(ctx, ch.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantKeys(t, db, ch.ID, f); !slices.Equal(got.Keys, want) {
			t.Fatalf("limit %d: %v, want %v", n, got.Keys, want)
		}
	}
}

// Clearing or deleting one channel leaves the pages of a keyed read of
// another channel alone: only the cleared feed's IDs start again.
func TestEntriesByKeyOtherChannelCleared(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	a, b, c := MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b"), MustCreateChannel(t, db, "c")
	for i := range 5 {
		MustAppend(t, db, a.ID, strconv.Itoa(i))
		MustAppend(t, db, b.ID, strconv.Itoa(i))
	}
	keys, err := db.EntryKeys(ctx, a.ID, channels.EntryFilter{Limit: 10})
	if err != nil || len(keys.Keys) != 5 {
		t.Fatalf("%+v, %v", keys, err)
	}
	if err := db.ClearChannel(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	es, err := db.EntriesByKey(ctx, a.ID, keys.Version, keys.Keys, nil)
	if err != nil || len(es) != 5 {
		t.Fatalf("after another channel's clear: %d entries, %v", len(es), err)
	}
	// The cleared channel's own read is still refused.
	if err := db.ClearChannel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	_, err = db.EntriesByKey(ctx, a.ID, keys.Version, keys.Keys, nil)
	wantCode(t, err, channels.ECONFLICT)
}

// What is known of a feed's order outlives other channels' clears and
// deletions: after one, a read of a long feed does not walk it again.
// (Any user can clear a channel of theirs as often as they like; each
// clear made the next read of every feed on the server walk all of it.)
func TestEntryKeysOrderKeptOverOtherClears(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	a, b := MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b")
	es := make([]*channels.Entry, 500)
	for i := range es {
		es[i] = &channels.Entry{ChannelID: a.ID, CreatedAt: now.Add(time.Duration(i) * time.Second)}
		es[i].SetValue(0, "v")
	}
	es[100].CreatedAt = now.Add(-time.Hour) // back-dated
	if err := db.AppendEntries(ctx, es); err != nil {
		t.Fatal(err)
	}
	MustAppend(t, db, b.ID, "b")
	read := func() {
		t.Helper()
		f := channels.EntryFilter{Limit: 450}
		got, err := db.EntryKeys(ctx, a.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantKeys(t, db, a.ID, f); !slices.Equal(got.Keys, want) {
			t.Fatalf("EntryKeys = %v, want %v", got.Keys, want)
		}
	}
	read()
	before := storage.OrderScanned()
	read()
	if n := storage.OrderScanned() - before; n != 0 {
		t.Fatalf("a second read walked %d entries to learn the order", n)
	}
	if err := db.ClearChannel(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	c := MustCreateChannel(t, db, "c")
	if err := db.DeleteChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	before = storage.OrderScanned()
	read()
	if n := storage.OrderScanned() - before; n != 0 {
		t.Fatalf("after another channel's clear, a read walked %d entries to learn the order", n)
	}
	// Its own clear is another matter: the refilled feed is walked.
	if err := db.ClearChannel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e := &channels.Entry{ChannelID: a.ID, CreatedAt: now.Add(-time.Duration(i) * time.Minute)}
		e.SetValue(0, "w")
		if err := db.AppendEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	before = storage.OrderScanned()
	read()
	if n := storage.OrderScanned() - before; n != 3 {
		t.Fatalf("after its own clear, a read walked %d entries, want the 3 of the new feed", n)
	}
}

// A read whose transaction began before retention deleted the oldest
// entries must not take what a later read learnt of the shorter feed: in
// the later one's feed an entry may be in time order that in the earlier
// one's is back-dated (behind the deleted entries).
func TestEntryKeysOrderLearntAfterPrune(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	ch := MustCreateChannel(t, db, "c")
	// Entry 1 is dated ahead of all the others, so every one of them is
	// back-dated behind it.
	es := make([]*channels.Entry, 50)
	for i := range es {
		es[i] = &channels.Entry{ChannelID: ch.ID, CreatedAt: now.Add(time.Duration(i) * time.Second)}
		es[i].SetValue(0, strconv.Itoa(i+1))
	}
	es[0].CreatedAt = now.Add(100 * time.Hour)
	if err := db.AppendEntries(ctx, es); err != nil {
		t.Fatal(err)
	}
	// Free pages, so that the writes below need not grow the file (a
	// bbolt remap waits for the held read).
	pad := MustCreateChannel(t, db, "pad")
	for range 20 {
		ps := make([]*channels.Entry, 500)
		for i := range ps {
			ps[i] = &channels.Entry{ChannelID: pad.ID}
			ps[i].SetValue(0, strings.Repeat("p", 200))
		}
		if err := db.AppendEntries(ctx, ps); err != nil {
			t.Fatal(err)
		}
	}
	storage.Sync(t, db)
	if err := db.ClearChannel(ctx, pad.ID); err != nil {
		t.Fatal(err)
	}
	f := channels.EntryFilter{Limit: 10}
	want := wantKeys(t, db, ch.ID, f)

	held, release := storage.HoldNextRead(t)
	type result struct {
		keys channels.EntryKeys
		err  error
	}
	early := make(chan result, 1)
	go func() {
		k, err := db.EntryKeys(ctx, ch.ID, f)
		early <- result{k, err}
	}()
	<-held // its transaction holds entry 1
	ch.MaxEntries = 49
	if err := db.UpdateChannel(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Prune(ctx, now); err != nil || n != 1 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	later, err := db.EntryKeys(ctx, ch.ID, f)
	if err != nil {
		t.Fatal(err)
	}
	if w := wantKeys(t, db, ch.ID, f); !slices.Equal(later.Keys, w) {
		t.Fatalf("after the prune: %v, want %v", later.Keys, w)
	}
	release()
	r := <-early
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !slices.Equal(r.keys.Keys, want) {
		t.Fatalf("the read begun before the prune: %v, want %v", r.keys.Keys, want)
	}
}
