//go:build race

package broker_test

// raceEnabled: the race detector's instrumentation enlarges frames and the
// stack guard, so goroutine stacks measured under it are larger.
const raceEnabled = true
