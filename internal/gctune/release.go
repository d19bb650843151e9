package gctune

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After a burst of connections (every device reconnecting after a
// restart), a broker whose connections then sit idle allocates little, so
// no collection runs for a long while. But the collector is what shrinks
// goroutine stacks: each connection's reader grows its stack to 16 KiB
// while it handles the CONNECT, and keeps it until a collection finds it
// mostly unused and halves it, once per collection: an idle connection
// waits under few enough frames for two halvings, to 4 KiB. And what a
// collection frees, the garbage of the CONNECTs and the halved stacks,
// goes back to the system only slowly.
//
// Release watches the number of goroutines (one per idle connection)
// and, once it has grown by at least releaseGrowth since the last release
// and stopped growing, collects twice (for the two halvings) and returns
// the free memory to the system (debug.FreeOSMemory, the second
// collection). That costs tens of milliseconds of CPU at 10,000
// connections, at most once per releaseGap; a broker whose
// connections come and go at a steady count never triggers it.
//
// A burst of other work does the same: a flood of large feed reads leaves
// tens of megabytes of garbage, and a broker that then goes quiet
// allocates too little to reach its next collection, so that memory stays
// taken for minutes. So Release also collects once the heap holds at
// least releaseGarbage bytes beyond what was live at the last collection
// and less than quietAlloc was allocated in the last interval.
const (
	releaseGrowth  = 1000
	releaseGap     = 30 * time.Second
	releaseGarbage = 16 << 20
	quietAlloc     = 256 << 10
)

// releaser decides when to release, from what it is shown.
type releaser struct {
	base  int64     // goroutines after the last release (or the fewest since)
	prev  int64     // goroutines at the previous observation
	alloc uint64    // bytes allocated in total at the previous observation
	last  time.Time // when it last released
}

// sample is what observe is shown.
type sample struct {
	goroutines int64
	alloc      uint64 // bytes allocated since the start, in total
	heap       uint64 // bytes of heap objects, live or not yet collected
	live       uint64 // bytes of heap live at the last collection
}

// observe takes a sample at now and reports whether to release, at most
// once per releaseGap: when the goroutine count has grown by
// releaseGrowth since the base and settled (grown by less than a tenth
// of that since the previous observation), or when the heap holds
// releaseGarbage beyond the live heap and allocation has gone quiet.
func (r *releaser) observe(x sample, now time.Time) bool {
	prev, prevAlloc := r.prev, r.alloc
	r.prev, r.alloc = x.goroutines, x.alloc
	if x.goroutines < r.base {
		r.base = x.goroutines // connections ended: growth counts from here
	}
	if now.Sub(r.last) < releaseGap {
		return false
	}
	burst := x.goroutines-r.base >= releaseGrowth && x.goroutines-prev < releaseGrowth/10
	garbage := x.heap >= x.live+releaseGarbage && x.alloc-prevAlloc < quietAlloc
	if !burst && !garbage {
		return false
	}
	r.base, r.last = x.goroutines, now
	return true
}

// Release samples the runtime every interval until ctx ends, and
// releases memory once a burst has settled (see releaser). It logs each
// release at debug level.
func Release(ctx context.Context, interval time.Duration, log *slog.Logger) {
	samples := []metrics.Sample{{Name: "/sched/goroutines:goroutines"}, {Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() sample {
		metrics.Read(samples)
		var v [4]uint64
		for i := range samples {
			if samples[i].Value.Kind() == metrics.KindUint64 {
				v[i] = samples[i].Value.Uint64()
			}
		}
		return sample{goroutines: int64(v[0]), alloc: v[1], heap: v[2], live: v[3]}
	}
	x := read()
	r := releaser{base: x.goroutines, prev: x.goroutines, alloc: x.alloc}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			x := read()
			if !r.observe(x, now) {
				continue
			}
			start := time.Now()
			runtime.GC() // the first halving of the stacks; FreeOSMemory collects again
			debug.FreeOSMemory()
			log.Debug("released memory after a burst", "goroutines", x.goroutines,
				"heap_mib", x.heap>>20, "live_mib", x.live>>20, "took", time.Since(start))
		}
	}
}
