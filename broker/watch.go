package broker

import (
	"sync"
	"sync/atomic"

	"github.com/feedmq/feedmq/channels"
)

// watchers are in-process subscribers to a channel's entries (the
// dashboard's live updates). fanOut hands each committed entry's JSON to
// them without blocking: a watcher whose buffer is full misses the entry,
// and the miss is counted, so a slow browser never slows a publisher.
type watchers struct {
	mu      sync.RWMutex
	by      map[uint64]map[*watcher]struct{} // channel ID -> watchers
	count   atomic.Int64
	dropped atomic.Uint64
}

type watcher struct {
	ch     chan []byte
	closed bool // guarded by watchers.mu
}

// WatchEntries subscribes to the entries committed to channel channelID
// from now on. Each value received is the entry's JSON exactly as
// channels/<id>/subscribe delivers it (channels.Entry.AppendJSON); it is
// shared and must not be modified. buffer (at least 1) is how many entries
// may wait unread; when the buffer is full, further entries are dropped for
// this watcher and counted in WatchStats. stop ends the subscription and
// closes the channel; it may be called more than once. WatchEntries does
// not check access: the caller decides who may read the channel.
func (s *Server) WatchEntries(channelID uint64, buffer int) (entries <-chan []byte, stop func()) {
	w := &watcher{ch: make(chan []byte, max(buffer, 1))}
	ws := &s.watch
	ws.mu.Lock()
	if ws.by == nil {
		ws.by = make(map[uint64]map[*watcher]struct{})
	}
	set := ws.by[channelID]
	if set == nil {
		set = make(map[*watcher]struct{})
		ws.by[channelID] = set
	}
	set[w] = struct{}{}
	ws.mu.Unlock()
	ws.count.Add(1)
	return w.ch, func() {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		if w.closed {
			return
		}
		w.closed = true
		delete(ws.by[channelID], w)
		if len(ws.by[channelID]) == 0 {
			delete(ws.by, channelID)
		}
		ws.count.Add(-1)
		close(w.ch)
	}
}

// WatchStats returns the number of live watchers and how many entries
// were dropped for watchers that did not keep up.
func (s *Server) WatchStats() (watchers int, dropped uint64) {
	return int(s.watch.count.Load()), s.watch.dropped.Load()
}

// notifyWatchers offers a committed entry's JSON to the channel's
// watchers; it never blocks. It reports whether a watcher took feed,
// which then must not be reused.
func (s *Server) notifyWatchers(e *channels.Entry, feed []byte) (taken bool) {
	ws := &s.watch
	if ws.count.Load() == 0 {
		return false
	}
	ws.mu.RLock()
	defer ws.mu.RUnlock()
	for w := range ws.by[e.ChannelID] {
		select {
		case w.ch <- feed:
			taken = true
		default:
			ws.dropped.Add(1)
		}
	}
	return taken
}
