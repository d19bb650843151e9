// Package storetest helps test stores and the code that uses them:
// CheckAppendContract checks a store keeps AppendEntry's promises; Failing
// is a store whose appends fail as a shared database's can (a rate
// refusal by the database's clock, a commit whose outcome is unknown);
// Notifier and Transactor are in-memory fakes of the optional
// ChangeNotifier and Transactor.
package storetest

import (
	"context"
	"sync"

	"github.com/feedmq/feedmq/channels"
)

// Failing wraps a store and makes its appends fail on demand; everything
// else goes to the wrapped store. It always offers AppendEntries and
// AppendEntryAsync, so that callers take the paths they take with the
// real store; the wrapped store must implement them for them to succeed.
type Failing struct {
	channels.Store

	mu      sync.Mutex
	err     error
	stored  bool // the failing appends store their entries first
	refused int  // appends failed so far
}

// Fail makes every append fail with err, storing nothing, until Fail(nil).
func (f *Failing) Fail(err error) {
	f.mu.Lock()
	f.err, f.stored = err, false
	f.mu.Unlock()
}

// FailAfterStoring makes every append store its entries and then return
// err, until Fail(nil): what a caller sees when the database committed
// but the connection broke before it said so (channels.ErrCommitUnknown).
func (f *Failing) FailAfterStoring(err error) {
	f.mu.Lock()
	f.err, f.stored = err, true
	f.mu.Unlock()
}

// Refused returns how many appends have failed.
func (f *Failing) Refused() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

// failure returns the error the next append ends with, and whether it
// stores its entries first.
func (f *Failing) failure() (error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		f.refused++
	}
	return f.err, f.stored
}

// AppendEntry appends e, or fails as told.
func (f *Failing) AppendEntry(ctx context.Context, e *channels.Entry) error {
	err, stored := f.failure()
	if err == nil || stored {
		if serr := f.Store.AppendEntry(ctx, e); serr != nil {
			return serr
		}
	}
	return err
}

// AppendEntries appends a batch, or fails as told.
func (f *Failing) AppendEntries(ctx context.Context, es []*channels.Entry) error {
	ba, ok := f.Store.(channels.BatchAppender)
	if !ok {
		return channels.Errorf(channels.EINTERNAL, "the wrapped store cannot append a batch")
	}
	err, stored := f.failure()
	if err == nil || stored {
		if serr := ba.AppendEntries(ctx, es); serr != nil {
			return serr
		}
	}
	return err
}

// AppendEntryAsync queues e, or fails as told: the failure reaches then,
// as a failed commit does.
func (f *Failing) AppendEntryAsync(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	aa, ok := f.Store.(channels.AsyncAppender)
	if !ok {
		return channels.Errorf(channels.EINTERNAL, "the wrapped store cannot queue an append")
	}
	err, stored := f.failure()
	switch {
	case err == nil:
		return aa.AppendEntryAsync(ctx, e, then)
	case stored:
		return aa.AppendEntryAsync(ctx, e, func(e *channels.Entry, serr error) {
			if serr == nil {
				serr = err
			}
			then(e, serr)
		})
	}
	// Nothing is queued ahead of it that could answer later: answer
	// now, which keeps then calls in queue order.
	then(e, err)
	return nil
}

// AppendEntryThen appends e, or fails as told: then gets the outcome
// AppendEntryThen returns.
func (f *Failing) AppendEntryThen(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	oa, ok := f.Store.(channels.OrderedAppender)
	if !ok {
		// A wrapped store without it is given the same
		// calls as the broker gives it unwrapped, and then the outcome
		// after: in the order answers come, not in commit order.
		err := f.AppendEntry(ctx, e)
		then(e, err)
		return err
	}
	err, stored := f.failure()
	switch {
	case err == nil:
		return oa.AppendEntryThen(ctx, e, then)
	case stored:
		serr := oa.AppendEntryThen(ctx, e, func(e *channels.Entry, serr error) {
			if serr == nil {
				serr = err
			}
			then(e, serr)
		})
		if serr == nil {
			serr = err
		}
		return serr
	}
	// Refused before it is queued: then is not called.
	return err
}

// AppendEntriesThen appends a batch, or fails as told: then gets the
// outcome AppendEntriesThen returns.
func (f *Failing) AppendEntriesThen(ctx context.Context, es []*channels.Entry, then func(error)) error {
	oa, ok := f.Store.(channels.OrderedBatchAppender)
	if !ok {
		err := f.AppendEntries(ctx, es) // as AppendEntryThen above
		then(err)
		return err
	}
	err, stored := f.failure()
	switch {
	case err == nil:
		return oa.AppendEntriesThen(ctx, es, then)
	case stored:
		serr := oa.AppendEntriesThen(ctx, es, func(serr error) {
			if serr == nil {
				serr = err
			}
			then(serr)
		})
		if serr == nil {
			serr = err
		}
		return serr
	}
	// Refused before it is queued: then is not called.
	return err
}

var (
	_ channels.Store                = (*Failing)(nil)
	_ channels.BatchAppender        = (*Failing)(nil)
	_ channels.AsyncAppender        = (*Failing)(nil)
	_ channels.OrderedAppender      = (*Failing)(nil)
	_ channels.OrderedBatchAppender = (*Failing)(nil)
)
