package gctune

import "testing"

func TestPercent(t *testing.T) {
	const M = 1 << 20
	for _, c := range []struct {
		name                  string
		base                  int
		live, stacks, globals uint64
		want                  int
	}{
		{"large heap, no stacks: Go's default", 100, 200 * M, 0, 0, 100},
		{"small stacks barely matter", 100, 200 * M, 2 * M, 0, 99},
		{"10k idle connections", 100, 45 * M, 75 * M, 0, 38},
		{"stacks and globals count", 100, 40 * M, 40 * M, 20 * M, 40},
		{"small heap gets minHeadroom", 100, 8 * M, 0, 0, 400},
		{"small heap with stacks", 100, 8 * M, 8 * M, 0, 200},
		{"tiny heap: ceiling", 100, 1 * M, 0, 0, maxPercent},
		{"empty: ceiling", 100, 0, 0, 0, maxPercent},
		{"floor", 100, 40 * M, 1000 * M, 0, minPercent},
		{"lower GOGC scales", 50, 100 * M, 100 * M, 0, 25},
	} {
		if got := Percent(c.base, c.live, c.stacks, c.globals); got != c.want {
			t.Errorf("%s: Percent(%d, %d, %d, %d) = %d, want %d", c.name, c.base, c.live, c.stacks, c.globals, got, c.want)
		}
	}
}
