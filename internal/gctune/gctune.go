// Package gctune keeps the Go heap of a broker with many connections from
// growing far beyond what it holds.
//
// Since Go 1.18 the collector lets the heap grow by GOGC percent of the
// live heap plus the scanned goroutine stacks and globals. A broker pays
// two goroutines per connection (mochi's reader and writer): with 10,000
// idle connections about 75 MB of stack is scanned against about 45 MB of
// live heap, so at GOGC=100 the heap may reach ~170 MB, most of it garbage
// (mochi copies its client table twice a second), before a collection
// runs. That garbage is resident memory, measured per connection.
//
// Tuner sets the GC percentage so that the heap may grow by GOGC percent
// of the live heap alone, as before Go 1.18: the goal becomes about twice
// the live heap instead of twice the live heap plus the stacks. With few
// connections the stacks are small and the percentage stays near 100. A
// collection costs little here, since most of what it scans are idle
// stacks and the garbage accumulates slowly.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Bounds of the percentage Tuner sets. The floor keeps a collection from
// running for every few kilobytes when stacks are enormous next to the
// heap; the ceiling is Go's default.
const (
	minPercent = 10
	maxPercent = 100
	// minHeap is the smallest live heap the percentage is computed for:
	// a tiny heap is better left room to grow than collected constantly.
	minHeap = 4 << 20
)

// Percent returns the GC percentage that lets the heap grow by base percent
// of live (the live heap) when the collector also counts stacks and
// globals (scanned stack and global bytes).
func Percent(base int, live, stacks, globals uint64) int {
	live = max(live, minHeap)
	total := live + stacks + globals
	p := int((uint64(base)*live + total/2) / total)
	return min(max(p, minPercent), maxPercent, base)
}

var samples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/gc/scan/stack:bytes"},
	{Name: "/gc/scan/globals:bytes"},
}

// Run retunes the GC percentage every interval until ctx ends, then puts
// back the percentage it found. It does nothing when the GOGC environment
// variable is set: an operator's choice stands.
func Run(ctx context.Context, interval time.Duration) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	base := debug.SetGCPercent(maxPercent)
	debug.SetGCPercent(base)
	if base <= 0 {
		return // collection is off
	}
	cur := base
	defer func() { debug.SetGCPercent(base) }()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := make([]metrics.Sample, len(samples))
		copy(s, samples)
		metrics.Read(s)
		var v [3]uint64
		for i := range s {
			if s[i].Value.Kind() == metrics.KindUint64 {
				v[i] = s[i].Value.Uint64()
			}
		}
		// Retune only on a real change: SetGCPercent costs a stop of
		// the world.
		if p := Percent(base, v[0], v[1], v[2]); p != cur && (p > cur+cur/10 || p < cur-cur/10) {
			debug.SetGCPercent(p)
			cur = p
		}
	}
}
