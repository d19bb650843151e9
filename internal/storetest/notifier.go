package storetest

import (
	"context"
	"errors"
	"sync"

	"github.com/feedmq/feedmq/channels"
)

// Notifier is an in-memory channels.ChangeNotifier: what a database
// shared by several processes tells each of them, driven by the test.
// Commit plays a committed change; Disconnect a lost connection; SetDown
// an unreachable database. The zero value is ready to use.
type Notifier struct {
	mu      sync.Mutex
	version uint64
	down    error
	subs    map[*subscription]struct{}
	// Backlog is how many undelivered changes a subscriber may have
	// before they are replaced by one ChangeResync; 0 means 64. Set it
	// before the first Changes call.
	Backlog int
}

// subscription is one Changes call: changes wait in queue until its
// goroutine hands them to out.
type subscription struct {
	out   chan channels.Change
	wake  chan struct{} // a change was queued, or the subscription ended
	queue []channels.Change
	ended bool
}

// ErrDown is what Notifier's methods return while it is down (SetDown).
var ErrDown = errors.New("storetest: the database is unreachable")

var _ channels.ChangeNotifier = (*Notifier)(nil)

// Changes returns the changes committed from now on; see
// channels.ChangeNotifier.
func (n *Notifier) Changes(ctx context.Context) (<-chan channels.Change, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down != nil {
		return nil, n.down
	}
	s := &subscription{out: make(chan channels.Change), wake: make(chan struct{}, 1)}
	if n.subs == nil {
		n.subs = make(map[*subscription]struct{})
	}
	n.subs[s] = struct{}{}
	go n.deliver(ctx, s)
	return s.out, nil
}

// deliver hands s's queued changes over in order until ctx ends or s is
// ended, then closes s.out.
func (n *Notifier) deliver(ctx context.Context, s *subscription) {
	defer close(s.out)
	defer n.drop(s)
	for {
		n.mu.Lock()
		ended := s.ended
		var next channels.Change
		have := len(s.queue) > 0
		if have && !ended {
			next = s.queue[0]
		}
		n.mu.Unlock()
		switch {
		case ended:
			return
		case !have:
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		select {
		case s.out <- next:
			n.mu.Lock()
			if len(s.queue) > 0 && s.queue[0] == next {
				s.queue = s.queue[1:]
			}
			n.mu.Unlock()
		case <-s.wake:
			// More queued, or ended: look again (the head may have
			// been replaced by a resync).
		case <-ctx.Done():
			return
		}
	}
}

func (n *Notifier) drop(s *subscription) {
	n.mu.Lock()
	delete(n.subs, s)
	n.mu.Unlock()
}

// ConfigVersion returns the version of the last committed change.
func (n *Notifier) ConfigVersion(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down != nil {
		return 0, n.down
	}
	return n.version, nil
}

// Commit records c as committed: it gets the next version (returned) and
// goes to every subscriber. While the notifier is down the version still
// moves (another process committed) but nobody hears of it.
func (n *Notifier) Commit(c channels.Change) channels.Change {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.version++
	c.Version = n.version
	if n.down != nil {
		return c
	}
	backlog := n.Backlog
	if backlog <= 0 {
		backlog = 64
	}
	for s := range n.subs {
		if len(s.queue) >= backlog {
			// Fallen behind: one resync says it all.
			s.queue = append(s.queue[:0], channels.Change{Version: c.Version, Kind: channels.ChangeResync})
		} else if len(s.queue) == 1 && s.queue[0].Kind == channels.ChangeResync {
			s.queue[0].Version = c.Version
		} else {
			s.queue = append(s.queue, c)
		}
		poke(s.wake)
	}
	return c
}

// Disconnect ends every open Changes stream, as a lost connection does:
// their channels close, and changes committed before the subscribers call
// Changes again are never sent to them.
func (n *Notifier) Disconnect() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for s := range n.subs {
		s.ended = true
		poke(s.wake)
		delete(n.subs, s)
	}
}

// SetDown makes the notifier unreachable (err, ErrDown when nil) or, with
// down false, reachable again. Going down disconnects every stream.
func (n *Notifier) SetDown(down bool, err error) {
	if down {
		n.Disconnect()
		if err == nil {
			err = ErrDown
		}
	} else {
		err = nil
	}
	n.mu.Lock()
	n.down = err
	n.mu.Unlock()
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
