package broker

import (
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Reasons a publish is rejected, as counted and logged.
const (
	reasonBadTopic       = "bad_topic"
	reasonUnknownChannel = "unknown_channel"
	reasonNotAuthorized  = "not_authorized"
	reasonBadPayload     = "bad_payload"
	reasonTooLarge       = "too_large"
	reasonStore          = "store_error"
	reasonShutdown       = "shutting_down"
	reasonRateLimited    = "rate_limited"
)

var reasons = []string{reasonBadTopic, reasonUnknownChannel, reasonNotAuthorized,
	reasonBadPayload, reasonTooLarge, reasonStore, reasonShutdown, reasonRateLimited}

// Stats are counters since the server started.
type Stats struct {
	Accepted  uint64            // entries stored and fanned out
	Rejected  map[string]uint64 // publishes refused, by reason
	Delivered uint64            // fan-out publishes handed to mochi
	Dropped   uint64            // deliveries mochi dropped: a subscriber's queue was full
	// FieldsDropped counts values of fields the channel has not enabled,
	// left out of stored entries (ThingSpeak ignores them too).
	FieldsDropped uint64

	Connections map[string]ListenerStats // by running listener ID (connstats.go)
	Refused     map[string]uint64        // CONNECTs refused, by reason

	// Free topics (free.go).
	FreePublished   uint64 // publishes (and wills) on free topics accepted
	Retained        int    // retained messages held
	RetainedRefused uint64 // retained publishes not retained: over the bounds
	Queued          int    // QoS 1/2 messages held for clients (unacknowledged or waiting)
	QueueDropped    uint64 // queued messages dropped, oldest first, over the bounds
	Sessions        int    // persistent sessions whose client is away
}

type stats struct {
	accepted  atomic.Uint64
	delivered atomic.Uint64
	rejected  map[string]*atomic.Uint64 // fixed keys: read without a lock
	dropped   atomic.Uint64
	conns     connStats
	// fieldsDropped counts disabled-field values left out; droppedLog
	// is when that was last logged (unix nanoseconds), so that a sketch
	// sending eight fields to a two-field channel logs once in a while,
	// not on every publish.
	fieldsDropped atomic.Uint64
	droppedLog    atomic.Int64

	freePublished atomic.Uint64
	queueDropped  atomic.Uint64
}

func (s *stats) init() {
	s.rejected = make(map[string]*atomic.Uint64, len(reasons))
	for _, r := range reasons {
		s.rejected[r] = new(atomic.Uint64)
	}
	s.conns.init()
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	out := Stats{
		Accepted:  s.stats.accepted.Load(),
		Delivered: s.stats.delivered.Load(),
		Dropped:   s.stats.dropped.Load(),

		FieldsDropped: s.stats.fieldsDropped.Load(),
		Rejected:      make(map[string]uint64, len(reasons)),
	}
	for r, c := range s.stats.rejected {
		out.Rejected[r] = c.Load()
	}
	s.connSnapshot(&out)
	out.FreePublished = s.stats.freePublished.Load()
	out.Retained = s.retained.count()
	out.RetainedRefused = s.retained.refused.Load()
	out.QueueDropped = s.stats.queueDropped.Load()
	if s.mochi == nil {
		return out // not built by New
	}
	out.Queued, _ = s.queuedMessages()
	for _, cl := range s.mochi.Clients.GetAll() {
		if cl.Closed() && !cl.Net.Inline {
			out.Sessions++
		}
	}
	return out
}

// Subscriptions returns the number of live subscriptions.
func (s *Server) Subscriptions() int {
	return int(atomic.LoadInt64(&s.mochi.Info.Subscriptions))
}

// droppedLogEvery bounds the debug lines about dropped fields.
const droppedLogEvery = 10 * time.Second

// fieldsDropped counts the fields a publish to channel ch carried that the
// channel has not enabled, and logs them at most every droppedLogEvery.
func (s *Server) fieldsDropped(ch uint64, dropped channels.FieldSet) {
	if dropped == 0 {
		return
	}
	total := s.stats.fieldsDropped.Add(uint64(dropped.Len()))
	now := time.Now().UnixNano()
	last := s.stats.droppedLog.Load()
	if now-last < int64(droppedLogEvery) || !s.stats.droppedLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Debug("publish: fields not enabled on the channel were dropped, the rest stored",
		"channel", ch, "fields", dropped.String(), "dropped_total", total)
}
