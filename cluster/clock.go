package cluster

import "time"

// Clock is the time source of the sequencer's gap waits and of the
// fail-closed monitor; tests replace it to decide when a wait is over.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f in its own goroutine once d has passed, unless
	// stopped first.
	AfterFunc(d time.Duration, f func()) Stopper
}

// Stopper cancels a pending AfterFunc; Stop reports whether it did.
type Stopper interface {
	Stop() bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Stopper { return time.AfterFunc(d, f) }
