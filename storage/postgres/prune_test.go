package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// Retention deletes from the oldest ID on: by count, by age up to the
// first younger entry, in batches, and leaves numbering alone.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	byCount := addChannel(t, db, 0, 3, 0)
	byAge := addChannel(t, db, 0, 0, time.Hour)
	keep := addChannel(t, db, 0, 0, 0)
	for i := 0; i < 10; i++ {
		for _, ch := range []uint64{byCount, keep} {
			if err := db.AppendEntry(ctx, &channels.Entry{ChannelID: ch, CreatedAt: now, Set: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Ages in minutes by id: 1..3 old, 4 young, 5 old (waits behind 4), 6 young.
	for _, age := range []int{120, 90, 61, 30, 100, 10} {
		if err := db.AppendEntry(ctx, &channels.Entry{ChannelID: byAge, CreatedAt: now.Add(-time.Duration(age) * time.Minute), Set: 1}); err != nil {
			t.Fatal(err)
		}
	}
	old := pruneBatch
	pruneBatch = 2 // several statements per channel
	t.Cleanup(func() { pruneBatch = old })
	n, err := db.Prune(ctx, now)
	if err != nil || n != 7+3 {
		t.Fatalf("Prune deleted %d, %v; want 10", n, err)
	}
	check := func(ch uint64, want []uint64) {
		t.Helper()
		got, err := db.Entries(ctx, ch, channels.EntryFilter{})
		if err != nil || !slices.Equal(ids(got), want) {
			t.Errorf("channel %d holds %v (%v), want %v", ch, ids(got), err, want)
		}
	}
	check(byCount, seq(8, 10))
	check(byAge, seq(4, 6))
	check(keep, seq(1, 10))
	e := &channels.Entry{ChannelID: byCount, Set: 1}
	if err := db.AppendEntry(ctx, e); err != nil || e.ID != 11 {
		t.Errorf("append after prune: id %d %v", e.ID, err)
	}
	// Every entry older than max_age goes when none is younger.
	if n, err := db.Prune(ctx, now.Add(24*time.Hour)); err != nil || n != 3+1 {
		t.Errorf("second Prune deleted %d, %v; want 4", n, err)
	}
	check(byAge, nil)
	check(byCount, seq(9, 11))
}

// One process prunes at a time: while another holds the prune lock,
// Prune skips its turn.
func TestPruneOneProcess(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db1, db2 := openTest(t, url, Options{}), openTest(t, url, Options{})
	ch := addChannel(t, db1, 0, 1, 0)
	for i := 0; i < 3; i++ {
		db1.AppendEntry(ctx, entry(ch, "x"))
	}
	conn, err := db1.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(pruneLock)); err != nil {
		t.Fatal(err)
	}
	if n, err := db2.Prune(ctx, time.Now()); n != 0 || err != nil {
		t.Fatalf("Prune while another process prunes: %d %v", n, err)
	}
	conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(pruneLock))
	conn.Release()
	if n, err := db2.Prune(ctx, time.Now()); n != 2 || err != nil {
		t.Fatalf("Prune after the lock is free: %d %v", n, err)
	}
}

// Retention and configuration transactions take advisory locks of their
// own: a configuration change under way (Atomically, in any process)
// must not make the pruner skip its turn, nor wait for a prune.
func TestPruneWhileAtomically(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db := openTest(t, url, Options{})
	other := openTest(t, url, Options{})
	ch := addChannel(t, db, 0, 1, 0)
	for i := 0; i < 3; i++ {
		if err := db.AppendEntry(ctx, entry(ch, "x")); err != nil {
			t.Fatal(err)
		}
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- other.Atomically(ctx, func(context.Context) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	n, err := db.Prune(ctx, time.Now())
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil || n != 2 {
		t.Fatalf("Prune during an Atomically call deleted %d, %v; want 2", n, err)
	}
}
