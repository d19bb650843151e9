package broker

import (
	"net"
	"sync"
	"time"
)

// AuthBackoff throttles failed CONNECTs per source address: after
// AfterFailures consecutive failures, connections from that address are
// refused without looking at their credentials for Initial, doubling with
// each further failure up to Max. A success clears the address. Other
// addresses are never slowed down.
type AuthBackoff struct {
	AfterFailures int           // default 5; negative disables throttling
	Initial       time.Duration // default 1s
	Max           time.Duration // default 5m
}

func (b *AuthBackoff) ensureDefaults() {
	if b.AfterFailures == 0 {
		b.AfterFailures = 5
	}
	if b.Initial <= 0 {
		b.Initial = time.Second
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Minute
	}
}

// maxTracked bounds the memory the throttle can take under a flood from
// many addresses; past it, stale entries are swept, then the oldest go.
const maxTracked = 100_000

type failure struct {
	count int
	last  time.Time
	until time.Time // refuse before this time
}

type throttle struct {
	cfg AuthBackoff
	mu  sync.Mutex
	by  map[string]*failure
	now func() time.Time
}

func newThrottle(cfg AuthBackoff) *throttle {
	cfg.ensureDefaults()
	return &throttle{cfg: cfg, by: make(map[string]*failure), now: time.Now}
}

// hostOf returns the IP of a remote address string ("1.2.3.4:5678").
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// blocked reports until when addr is refused, if it is now.
func (t *throttle) blocked(addr string) (time.Time, bool) {
	if t.cfg.AfterFailures < 0 {
		return time.Time{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.by[hostOf(addr)]
	if !ok || !t.now().Before(f.until) {
		return time.Time{}, false
	}
	return f.until, true
}

// fail records a failed CONNECT and extends the back-off.
func (t *throttle) fail(addr string) {
	if t.cfg.AfterFailures < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	host, now := hostOf(addr), t.now()
	f, ok := t.by[host]
	if !ok {
		if len(t.by) >= maxTracked {
			t.sweep(now)
		}
		f = &failure{}
		t.by[host] = f
	}
	// Failures long after the back-off ran out start afresh.
	if now.Sub(f.last) > 2*t.cfg.Max {
		f.count = 0
	}
	f.count++
	f.last = now
	if over := f.count - t.cfg.AfterFailures; over >= 0 {
		d := t.cfg.Initial << min(over, 30)
		if d <= 0 || d > t.cfg.Max {
			d = t.cfg.Max
		}
		f.until = now.Add(d)
	}
}

// succeed clears an address after a good CONNECT.
func (t *throttle) succeed(addr string) {
	t.mu.Lock()
	delete(t.by, hostOf(addr))
	t.mu.Unlock()
}

// sweep drops entries whose back-off is over, or, if none is, the oldest
// one; the caller holds t.mu.
func (t *throttle) sweep(now time.Time) {
	var oldest string
	for h, f := range t.by {
		if now.After(f.until) && now.Sub(f.last) > t.cfg.Max {
			delete(t.by, h)
		} else if oldest == "" || f.last.Before(t.by[oldest].last) {
			oldest = h
		}
	}
	if len(t.by) >= maxTracked && oldest != "" {
		delete(t.by, oldest)
	}
}
