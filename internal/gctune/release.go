package gctune

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After a burst of connections (every device reconnecting after a
// restart), a broker whose connections then sit idle allocates little, so
// no collection runs for a long while. But the collector is what shrinks
// goroutine stacks: each connection's reader grows its stack to 16 KiB
// while it handles the CONNECT, and keeps it until a collection finds it
// mostly unused and halves it (8 KiB per idle connection). And what a
// collection frees, the garbage of the CONNECTs and the halved stacks,
// goes back to the system only slowly.
//
// Release watches the number of goroutines (two per connection in mochi)
// and, once it has grown by at least releaseGrowth since the last release
// and stopped growing, collects and returns the free memory to the system
// (debug.FreeOSMemory). That costs one collection (tens of milliseconds of
// CPU at 10,000 connections), at most once per releaseGap; a broker whose
// connections come and go at a steady count never triggers it.
const (
	releaseGrowth = 1000
	releaseGap    = 30 * time.Second
)

// releaser decides when to release, from the goroutine counts it is shown.
type releaser struct {
	base int64     // goroutines after the last release (or the fewest since)
	prev int64     // goroutines at the previous observation
	last time.Time // when it last released
}

// observe takes the goroutine count n at now and reports whether to
// release. The count must have grown by releaseGrowth since the base, and
// have settled: grown by less than a tenth of that since the previous
// observation.
func (r *releaser) observe(n int64, now time.Time) bool {
	prev := r.prev
	r.prev = n
	if n < r.base {
		r.base = n // connections ended: growth counts from here
	}
	if n-r.base < releaseGrowth || n-prev >= releaseGrowth/10 || now.Sub(r.last) < releaseGap {
		return false
	}
	r.base, r.last = n, now
	return true
}

// Release checks the goroutine count every interval until ctx ends, and
// releases memory once a burst has settled (see releaser). It logs each
// release at debug level.
func Release(ctx context.Context, interval time.Duration, log *slog.Logger) {
	sample := []metrics.Sample{{Name: "/sched/goroutines:goroutines"}}
	read := func() int64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(sample[0].Value.Uint64())
	}
	n := read()
	r := releaser{base: n, prev: n}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if !r.observe(read(), now) {
				continue
			}
			start := time.Now()
			debug.FreeOSMemory()
			log.Debug("released memory after a burst of connections", "goroutines", r.base, "took", time.Since(start))
		}
	}
}
