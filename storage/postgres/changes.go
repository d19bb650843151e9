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

// changesDropped counts changes dropped for a full buffer, for tests.
var changesDropped atomic.Uint64

// Changes listens on a connection of its own (taken out of the pool; not
// through a transaction-pooling proxy, which cannot keep a LISTEN) and
// sends every configuration change any process commits, in commit order.
// The channel is closed when ctx ends or the connection is lost.
func (db *DB) Changes(ctx context.Context) (<-chan channels.Change, error) {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap("listen for config changes", err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, wrap("listen for config changes", err)
	}
	out := make(chan channels.Change, changesBuffer)
	go func() {
		defer close(out)
		defer conn.Close(context.WithoutCancel(ctx))
		resync := false
		for {
			wait := ctx
			cancel := context.CancelFunc(func() {})
			if resync {
				wait, cancel = context.WithTimeout(ctx, resyncRetry)
			}
			n, err := conn.WaitForNotification(wait)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil && !(resync && errors.Is(err, context.DeadlineExceeded)) {
				return // the connection is gone: the receiver compares versions
			}
			if resync {
				select {
				case out <- channels.Change{Kind: channels.ChangeResync}:
					resync = false
				default:
				}
			}
			if n == nil || resync {
				continue // a change while a resync is pending is part of it
			}
			c, err := decodeNotice(n.Payload)
			if err != nil {
				c = channels.Change{Kind: channels.ChangeResync}
			}
			select {
			case out <- c:
			default:
				resync = true // never block: PostgreSQL's queue would fill
				changesDropped.Add(1)
			}
		}
	}()
	return out, nil
}
