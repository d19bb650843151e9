package postgres

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage"
)

// benchAppenders and benchChannels shape the load like QoS 1 publishes
// from many devices: every appender waits for its commit before its next
// entry, and the store groups what waits into shared commits.
const benchAppenders, benchChannels = 100, 10

// BenchmarkAppendEntry compares PostgreSQL (its server syncing to disk as
// in production: pgtest turns fsync on when benchmarking) with bbolt in
// the same run, under the same concurrent load.
func BenchmarkAppendEntry(b *testing.B) {
	ctx := context.Background()
	b.Run("bbolt", func(b *testing.B) {
		db, err := storage.Open(filepath.Join(b.TempDir(), "feedmq.db"), storage.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		var chs []uint64
		for i := 0; i < benchChannels; i++ {
			c := &channels.Channel{Name: "bench", Fields: [channels.NumFields]string{"t"},
				WriteKey: fmt.Sprintf("WRITEKEY%08d", i), ReadKey: fmt.Sprintf("READKEY0%08d", i)}
			if err := db.CreateChannel(ctx, c); err != nil {
				b.Fatal(err)
			}
			chs = append(chs, c.ID)
		}
		benchAppend(b, db, chs)
	})
	b.Run("postgres", func(b *testing.B) {
		var commits atomic.Int64
		db := openTest(b, pgtest.New(b), Options{OnCommit: func(int, time.Duration) { commits.Add(1) }})
		var chs []uint64
		for i := 0; i < benchChannels; i++ {
			chs = append(chs, addChannel(b, db, 0, 0, 0))
		}
		commits.Store(0)
		benchAppend(b, db, chs)
		b.ReportMetric(float64(b.N)/float64(max(commits.Load(), 1)), "entries/commit")
	})
}

// appender is what benchAppend needs of a store.
type appender interface {
	AppendEntry(ctx context.Context, e *channels.Entry) error
}

func benchAppend(b *testing.B, s appender, chs []uint64) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for w := 0; w < benchAppenders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				e := &channels.Entry{ChannelID: chs[w%len(chs)]}
				e.SetValue(0, "21.5")
				if err := s.AppendEntry(ctx, e); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
