package broker

import "github.com/feedmq/feedmq/channels"

// What the external tests of the PUBACK line and the senders look at.

// MaxUnacked is maxUnacked.
const MaxUnacked = maxUnacked

// Unacked returns how many PUBACKs of QoS 1 feed publishes are not yet
// written.
func (s *Server) Unacked() int64 { return s.unacked.Load() }

// SendQueued returns the bytes waiting in every subscriber's sender.
func (s *Server) SendQueued() int64 { return s.queued.Load() }

// Closing reports whether Close has begun.
func (s *Server) Closing() bool { return s.closing.Load() }

// SetFanOutHook has f called with each queued entry before it is fanned
// out, and whether on the committing goroutine (inline) or fanOutLoop;
// nil removes it.
func SetFanOutHook(f func(e *channels.Entry, inline bool)) {
	if f == nil {
		fanOutHook.Store(nil)
		return
	}
	fanOutHook.Store(&f)
}

// SetBeforeEndClient has f run when a connection's reads have ended,
// before mochi ends the client; nil removes it.
func SetBeforeEndClient(f func()) {
	if f == nil {
		beforeEndClient.Store(nil)
		return
	}
	beforeEndClient.Store(&f)
}
