//go:build race

package broker_test

// raceEnabled: the race detector's instrumentation enlarges frames and the
// stack guard, so stack sizes measured under it are not the product's.
const raceEnabled = true
