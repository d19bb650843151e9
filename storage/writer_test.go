package storage_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// TestAppendEntry_Concurrent checks that group commit numbers entries
// without gaps or repeats and loses none, across a reopen.
func TestAppendEntry_Concurrent(t *testing.T) {
	const writers, perWriter, numChannels = 100, 50, 4
	ctx := context.Background()
	db := MustOpenDB(t)
	for i := 0; i < numChannels; i++ {
		MustCreateChannel(t, db, fmt.Sprint("c", i))
	}

	ids := make([][]uint64, numChannels) // per channel, as returned
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			ch := uint64(w%numChannels + 1)
			for i := 0; i < perWriter; i++ {
				e := &channels.Entry{ChannelID: ch}
				e.SetValue(0, fmt.Sprintf("%d/%d", w, i))
				if err := db.AppendEntry(ctx, e); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[ch-1] = append(ids[ch-1], e.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	db = MustReopen(t, db)
	for ch := uint64(1); ch <= numChannels; ch++ {
		want := writers / numChannels * perWriter
		checkContiguous(t, ch, ids[ch-1], want)
		checkFeed(t, db, ch, want)
	}
}

// checkContiguous fails unless ids are exactly 1..n in some order.
func checkContiguous(t *testing.T, ch uint64, ids []uint64, n int) {
	t.Helper()
	seen := make([]bool, n+1)
	for _, id := range ids {
		if id < 1 || id > uint64(n) || seen[id] {
			t.Fatalf("channel %d: entry ID %d out of range or repeated", ch, id)
		}
		seen[id] = true
	}
	if len(ids) != n {
		t.Fatalf("channel %d: %d IDs, want %d", ch, len(ids), n)
	}
}

// checkFeed fails unless the stored feed holds n entries numbered 1..n,
// each writer's entries in the order it wrote them.
func checkFeed(t *testing.T, db *storage.DB, ch uint64, n int) {
	t.Helper()
	list, err := db.Entries(context.Background(), ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("channel %d: %d entries after reopen, want %d", ch, len(list), n)
	}
	next := map[string]int{} // writer -> next expected index
	for i, e := range list {
		if e.ID != uint64(i+1) {
			t.Fatalf("channel %d: entry %d has ID %d", ch, i, e.ID)
		}
		v, _ := e.Field(1)
		var w, idx int
		if _, err := fmt.Sscanf(v, "%d/%d", &w, &idx); err != nil || idx != next[strconv.Itoa(w)] {
			t.Fatalf("channel %d: entry %d holds %q out of order", ch, e.ID, v)
		}
		next[strconv.Itoa(w)]++
	}
}

// TestClose_FlushesQueue races appends with Close: every append must
// either be stored or fail with ErrClosed, never hang or vanish.
func TestClose_FlushesQueue(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	var stored atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Go(func() {
			<-start
			for {
				err := db.AppendEntry(ctx, &channels.Entry{ChannelID: c.ID, Set: 1})
				if errors.Is(err, storage.ErrClosed) {
					return
				} else if err != nil {
					t.Error(err)
					return
				}
				stored.Add(1)
			}
		})
	}
	close(start)
	for stored.Load() < 100 { // close under load, not before it
		time.Sleep(time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	db = MustOpenPath(t, db.Path())
	got, err := db.FindChannel(ctx, c.ID)
	if err != nil || got.LastEntryID != uint64(stored.Load()) {
		t.Fatalf("after close: LastEntryID %d, %v; %d appends succeeded", got.LastEntryID, err, stored.Load())
	}
}

func TestAppendEntry_AfterCloseOrCancel(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.AppendEntry(ctx, &channels.Entry{ChannelID: c.ID, Set: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendEntry with canceled ctx: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.AppendEntry(context.Background(), &channels.Entry{ChannelID: c.ID, Set: 1}); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("AppendEntry after Close: %v, want ErrClosed", err)
	}
}

// BenchmarkAppendEntry measures durable appends: Serial pays one fsync per
// entry, Parallel shows what group commit makes of many publishers.
func BenchmarkAppendEntry(b *testing.B) {
	b.Run("Serial", func(b *testing.B) {
		db, id := benchDB(b)
		e := benchEntry(id)
		b.ReportAllocs()
		for b.Loop() {
			if err := db.AppendEntry(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("Parallel", func(b *testing.B) {
		db, id := benchDB(b)
		b.ReportAllocs()
		b.SetParallelism(64) // many publishers per CPU, as a broker has
		b.RunParallel(func(pb *testing.PB) {
			e := benchEntry(id)
			for pb.Next() {
				if err := db.AppendEntry(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
	})
}

// BenchmarkEntries reads from a feed of 10,000 entries.
func BenchmarkEntries(b *testing.B) {
	const n = 10000
	db, id := benchDB(b)
	var wg sync.WaitGroup
	for w := 0; w < 100; w++ { // concurrent, so seeding takes few fsyncs
		wg.Go(func() {
			for i := 0; i < n/100; i++ {
				e := benchEntry(id)
				if i%10 == 0 {
					e.SetValue(7, "rare")
				}
				if err := db.AppendEntry(context.Background(), e); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, bb := range []struct {
		name string
		f    channels.EntryFilter
		want int
	}{
		{"Last100", channels.EntryFilter{Limit: 100}, 100},
		{"All", channels.EntryFilter{}, n},
		{"Field8Last100", channels.EntryFilter{Field: 8, Limit: 100}, 100},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				list, err := db.Entries(context.Background(), id, bb.f)
				if err != nil || len(list) != bb.want {
					b.Fatalf("%d entries, %v", len(list), err)
				}
			}
			b.ReportMetric(float64(bb.want*b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

func benchDB(b *testing.B) (*storage.DB, uint64) {
	db := MustOpenDB(b)
	return db, MustCreateChannel(b, db, "bench").ID
}

// benchEntry is a typical sensor reading: two fields and a status.
func benchEntry(channelID uint64) *channels.Entry {
	e := &channels.Entry{ChannelID: channelID, CreatedAt: now}
	e.SetValue(0, "23.5")
	e.SetValue(1, "61")
	e.SetValue(channels.Status, "ok")
	return e
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkCommitLeader measures synchronous appends where the commit
// leader matters: Serial is one publisher at a time (every append leads
// its own commit), Parallel4 a few publishers whose commits overlap, and
// Parallel64 many, where leaders hand the queue on. entries/commit shows
// how well commits are shared; allocs/op should be 0 once warm.
// Checkpoints come only every megabyte of log (not every second), so
// that the figures are of the append path; bbolt's transaction in a
// checkpoint allocates on its own goroutine.
func BenchmarkCommitLeader(b *testing.B) {
	storage.SetCheckpointDelay(b, time.Hour)
	run := func(b *testing.B, par int) {
		var commits atomic.Int64
		db, err := storage.Open(filepath.Join(b.TempDir(), "feedmq.db"), storage.Options{
			Now:      func() time.Time { return now },
			OnCommit: func(int, time.Duration) { commits.Add(1) },
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		id := MustCreateChannel(b, db, "bench").ID
		warm := benchEntry(id)
		for range 100 { // the pools, buffers and maps of the write path
			if err := db.AppendEntry(context.Background(), warm); err != nil {
				b.Fatal(err)
			}
		}
		commits.Store(0)
		b.ReportAllocs()
		cpu0 := cpuTime()
		b.ResetTimer()
		switch {
		case par == 0: // asynchronous, one at a time: a lone QoS 0 entry
			e := benchEntry(id)
			done := make(chan error, 1)
			then := func(_ *channels.Entry, err error) { done <- err }
			for b.Loop() {
				if err := db.AppendEntryAsync(context.Background(), e, then); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		case par == 1:
			e := benchEntry(id)
			for b.Loop() {
				if err := db.AppendEntry(context.Background(), e); err != nil {
					b.Fatal(err)
				}
			}
		default:
			b.SetParallelism(max(1, par/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				e := benchEntry(id)
				for pb.Next() {
					if err := db.AppendEntry(context.Background(), e); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		b.StopTimer()
		// The process's CPU time, fdatasync's included: wall time at
		// light load is mostly the disk's.
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		if c := commits.Load(); c > 0 {
			b.ReportMetric(float64(b.N)/float64(c), "entries/commit")
		}
		reportRate(b)
	}
	b.Run("Async", func(b *testing.B) { run(b, 0) })
	b.Run("Serial", func(b *testing.B) { run(b, 1) })
	b.Run("Parallel4", func(b *testing.B) { run(b, 4) })
	b.Run("Parallel64", func(b *testing.B) { run(b, 64) })
}
