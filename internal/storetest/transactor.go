package storetest

import (
	"context"
	"sync"

	"github.com/feedmq/feedmq/channels"
)

// Transactor is a channels.Transactor for tests of its callers: it
// serialises Atomically calls, marks the context it gives fn so that a
// store wrapper can check calls are made inside (InTx), and can fail a
// commit after fn succeeded. It cannot roll back what fn wrote: tests
// check what callers do around the call (nothing outside the store
// before it returns nil), not the store's atomicity.
type Transactor struct {
	mu      sync.Mutex // held for the whole of an Atomically call
	state   sync.Mutex // guards the fields below
	calls   int
	failing error
}

var _ channels.Transactor = (*Transactor)(nil)

type txKey struct{}

// InTx reports whether ctx is, or derives from, the context a
// Transactor gave fn.
func InTx(ctx context.Context) bool {
	_, ok := ctx.Value(txKey{}).(*Transactor)
	return ok
}

// FailCommits makes every Atomically call whose fn succeeds return err
// (nil: commit again), as a commit refused or cut off after fn ran.
func (t *Transactor) FailCommits(err error) {
	t.state.Lock()
	t.failing = err
	t.state.Unlock()
}

// Calls returns how many Atomically calls have run.
func (t *Transactor) Calls() int {
	t.state.Lock()
	defer t.state.Unlock()
	return t.calls
}

// Atomically runs fn with a marked context, one call at a time. A call
// made inside another's fn (a caller that nests transactions) would wait
// for itself: it panics instead, as such a caller is wrong.
func (t *Transactor) Atomically(ctx context.Context, fn func(ctx context.Context) error) error {
	if InTx(ctx) {
		panic("storetest: Atomically called inside Atomically")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.state.Lock()
	t.calls++
	failing := t.failing
	t.state.Unlock()
	if err := fn(context.WithValue(ctx, txKey{}, t)); err != nil {
		return err
	}
	return failing
}
