//go:build race

package broker

// raceBuild: sync.Pool drops a share of what is put back under the race
// detector, so allocation counts do not hold there.
const raceBuild = true
