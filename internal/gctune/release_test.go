package gctune

import (
	"testing"
	"time"
)

func TestReleaserObserve(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	sec := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	type step struct {
		n    int64
		at   int
		want bool
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"steady count never releases", []step{{100, 1, false}, {120, 2, false}, {90, 3, false}, {110, 4, false}}},
		{"burst releases once settled", []step{{5000, 1, false}, {20000, 2, false}, {20010, 3, true}, {20010, 4, false}}},
		{"still growing: waits", []step{{3000, 1, false}, {6000, 2, false}, {9000, 3, false}, {9050, 4, true}}},
		{"growth below the threshold", []step{{1099, 1, false}, {1099, 2, false}}},
		{"second burst waits for the gap", []step{{2000, 1, false}, {2000, 2, true}, {4000, 3, false}, {4000, 4, false},
			{4000, 31, false}, {4000, 32, true}}},
		{"growth counts from the fewest since", []step{{2000, 1, false}, {2000, 2, true}, {0, 40, false}, {1000, 41, false},
			{1000, 42, true}}},
	} {
		r := releaser{base: 100, prev: 100}
		for i, s := range c.steps {
			if got := r.observe(sample{goroutines: s.n}, sec(s.at)); got != s.want {
				t.Errorf("%s: step %d (%d goroutines at %ds): release %v, want %v", c.name, i, s.n, s.at, got, s.want)
			}
		}
	}
}

// TestReleaserGarbage: garbage left by a burst of allocation is released
// once allocation goes quiet, not while it goes on, and not when there is
// little of it.
func TestReleaserGarbage(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	const mib = 1 << 20
	for _, c := range []struct {
		name string
		// per step: total allocated, heap objects, live heap, seconds
		steps [][4]uint64
		want  []bool
	}{
		{"flood then quiet", [][4]uint64{{10 * mib, 20 * mib, 8 * mib, 1}, {40 * mib, 40 * mib, 8 * mib, 2}, {40 * mib, 40 * mib, 8 * mib, 3}},
			[]bool{false, false, true}},
		{"still allocating", [][4]uint64{{40 * mib, 40 * mib, 8 * mib, 1}, {60 * mib, 44 * mib, 8 * mib, 2}, {80 * mib, 48 * mib, 8 * mib, 3}},
			[]bool{false, false, false}},
		{"little garbage", [][4]uint64{{20 * mib, 20 * mib, 8 * mib, 1}, {20 * mib, 20 * mib, 8 * mib, 2}},
			[]bool{false, false}},
		{"once per gap", [][4]uint64{{40 * mib, 40 * mib, 8 * mib, 1}, {40 * mib, 40 * mib, 8 * mib, 2}, {40 * mib, 40 * mib, 8 * mib, 3},
			{40 * mib, 40 * mib, 8 * mib, 32}}, []bool{false, true, false, true}},
	} {
		r := releaser{}
		for i, s := range c.steps {
			x := sample{alloc: s[0], heap: s[1], live: s[2]}
			if got := r.observe(x, t0.Add(time.Duration(s[3])*time.Second)); got != c.want[i] {
				t.Errorf("%s: step %d: release %v, want %v", c.name, i, got, c.want[i])
			}
		}
	}
}
