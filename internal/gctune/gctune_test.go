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
		{"no stacks: Go's default", 100, 100 * M, 0, 0, 100},
		{"small stacks barely matter", 100, 100 * M, 1 * M, 0, 99},
		{"10k idle connections", 100, 45 * M, 75 * M, 0, 38},
		{"stacks and globals count", 100, 40 * M, 40 * M, 20 * M, 40},
		{"tiny heap counts as minHeap", 100, 1 * M, 4 * M, 0, 50},
		{"floor", 100, 4 * M, 1000 * M, 0, minPercent},
		{"lower GOGC scales", 50, 50 * M, 50 * M, 0, 25},
		{"never above the base", 20, 100 * M, 0, 0, 20},
	} {
		if got := Percent(c.base, c.live, c.stacks, c.globals); got != c.want {
			t.Errorf("%s: Percent(%d, %d, %d, %d) = %d, want %d", c.name, c.base, c.live, c.stacks, c.globals, got, c.want)
		}
	}
}
