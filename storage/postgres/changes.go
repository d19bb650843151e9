package postgres

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/channels"
)

var _ channels.ChangeNotifier = (*DB)(nil)

// changesBuffer is how many changes wait for a slow receiver before it is
// sent ChangeResync instead of each of them.
const changesBuffer = 256

// resyncRetry is how often a pending resync is offered to a receiver
// whose buffer was full while no notification arrives.
const resyncRetry = 100 * time.Millisecond

// changesDropped counts notices dropped for a full buffer (a resync
// follows), for tests.
var changesDropped atomic.Uint64

// Changes listens on a connection of its own (taken out of the pool; not
// through a transaction-pooling proxy, which cannot keep a LISTEN) and
// sends every configuration change any process commits, in commit order.
// The channel is closed when ctx ends or the connection is lost.
func (db *DB) Changes(ctx context.Context) (<-chan channels.Change, error) {
	return listenNotices(ctx, db, NotifyChannel, "listen for config changes", decodeNotice,
		channels.Change{Kind: channels.ChangeResync})
}

// listenNotices LISTENs on channel over a connection of its own and sends each
// notification, decoded, in commit order. It never blocks on the
// receiver (PostgreSQL's notification queue would fill): a receiver
// whose buffer is full, or a notice that does not decode, gets resync
// instead, offered until taken; notices meanwhile are part of it. The
// channel is closed when ctx ends or the connection is lost, and the
// receiver then reloads everything.
func listenNotices[T any](ctx context.Context, db *DB, channel, what string, decode func(string) (T, error), resync T) (<-chan T, error) {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap(what, err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, wrap(what, err)
	}
	out := make(chan T, changesBuffer)
	go func() {
		defer close(out)
		defer conn.Close(context.WithoutCancel(ctx))
		pending := false
		for {
			wait := ctx
			cancel := context.CancelFunc(func() {})
			if pending {
				wait, cancel = context.WithTimeout(ctx, resyncRetry)
			}
			n, err := conn.WaitForNotification(wait)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil && !(pending && errors.Is(err, context.DeadlineExceeded)) {
				return // the connection is gone
			}
			if pending {
				select {
				case out <- resync:
					pending = false
				default:
				}
			}
			if n == nil || pending {
				continue // a change while a resync is pending is part of it
			}
			c, err := decode(n.Payload)
			if err != nil {
				c = resync
			}
			select {
			case out <- c:
			default:
				pending = true
				changesDropped.Add(1)
			}
		}
	}()
	return out, nil
}
