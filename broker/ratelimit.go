package broker

import (
	"sync"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// rateLimiter remembers when each channel last accepted an entry, by the
// server's clock (a device's created_at must not let it skip the limit).
type rateLimiter struct {
	mu   sync.Mutex
	last map[uint64]time.Time
}

// allow reports whether channel ch may take an entry at now, given its
// minimum interval, and if so reserves now as its last write.
func (r *rateLimiter) allow(ch uint64, interval time.Duration, now time.Time) error {
	if interval <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.last[ch]; ok && now.Sub(last) < interval {
		return channels.RateLimited(ch, interval, interval-now.Sub(last))
	}
	if r.last == nil {
		r.last = make(map[uint64]time.Time)
	}
	r.last[ch] = now
	return nil
}

// rateLimit returns the minimum interval between entries of channel ch.
func (s *Server) rateLimit(ch uint64) time.Duration {
	if c, ok := s.registry.Channel(ch); ok && c.RateLimit > 0 {
		return c.RateLimit
	}
	return s.opts.RateLimit
}
