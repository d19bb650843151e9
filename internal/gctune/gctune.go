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
// Run sets the GC percentage so that the heap may grow by GOGC percent of
// the live heap alone, as before Go 1.18: the goal becomes about twice the
// live heap instead of twice the live heap plus the stacks. It also gives
// a small heap at least minHeadroom to grow into: a broker relaying tens
// of thousands of messages a second over a few megabytes of live heap
// would otherwise collect ten times a second (GOGC=400 measured 4% fewer
// CPU-seconds per million QoS 1 entries than 100, feedmq bench fanin
// --qos 1, three runs each). A collection costs little when most of what
// it scans are idle stacks and the garbage accumulates slowly.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Bounds of the percentage Run sets. The floor keeps a collection from
// running for every few kilobytes when stacks are enormous next to the
// heap; the ceiling bounds the goal of a tiny heap. The percentage is
// set from the live heap of the last tick: when a burst grows the live
// heap before the next one, the goal grows by the ceiling times it (at
// 1000, 10 MiB of queued deliveries let the heap reach 110 MiB before a
// collection), so the ceiling is the one GOGC measured best, not more.
const (
	minPercent = 10
	maxPercent = 400
	// minHeadroom is the least the heap may grow by between collections:
	// the memory traded for fewer collections of a small heap.
	minHeadroom = 32 << 20
)

// Percent returns the GC percentage that lets the heap grow by base percent
// of live (the live heap), or by minHeadroom if that is more, when the
// collector also counts stacks and globals (scanned stack and global
// bytes).
func Percent(base int, live, stacks, globals uint64) int {
	headroom := max(live*uint64(base)/100, minHeadroom)
	total := max(live+stacks+globals, 1)
	p := int((100*headroom + total/2) / total)
	return min(max(p, minPercent), maxPercent)
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
	base := debug.SetGCPercent(100)
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
