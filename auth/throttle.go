package auth

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Backoff configures a Throttle: after AfterFailures consecutive failed
// logins or API key guesses from one source address, that address is
// refused without looking at its credentials for Initial, doubling with
// each further failure up to Max. Other addresses are never slowed down.
type Backoff struct {
	AfterFailures int           // default 5; negative disables throttling
	Initial       time.Duration // default 1s
	Max           time.Duration // default 5m
}

func (b *Backoff) ensureDefaults() {
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

// Throttle tracks failed attempts per source address (see Backoff). The
// broker keeps one for MQTT logins and the HTTP API one for API keys.
type Throttle struct {
	cfg Backoff
	mu  sync.Mutex
	by  map[string]*failure
	now func() time.Time
}

// NewThrottle returns a Throttle with cfg's zero values defaulted.
func NewThrottle(cfg Backoff) *Throttle {
	cfg.ensureDefaults()
	return &Throttle{cfg: cfg, by: make(map[string]*failure), now: time.Now}
}

// ThrottleKey is what a Throttle counts a remote address ("1.2.3.4:5678",
// "[2001:db8::1]:5678" or a bare host) under: its IPv4 address, or the
// /64 network of an IPv6 one, since one IPv6 host is routinely given a
// whole /64 and could otherwise guess from each of its addresses.
func ThrottleKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Unmap().Is4() {
		if err == nil {
			return ip.Unmap().String()
		}
		return host
	}
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return host
	}
	return p.String()
}

// Blocked reports until when addr ("host:port" or a host) is refused, if
// it is now.
func (t *Throttle) Blocked(addr string) (time.Time, bool) {
	if t.cfg.AfterFailures < 0 {
		return time.Time{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.by[ThrottleKey(addr)]
	if !ok || !t.now().Before(f.until) {
		return time.Time{}, false
	}
	return f.until, true
}

// Fail records a failed attempt from addr and extends the back-off.
func (t *Throttle) Fail(addr string) {
	if t.cfg.AfterFailures < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	host, now := ThrottleKey(addr), t.now()
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

// Succeed clears addr after a good login.
func (t *Throttle) Succeed(addr string) {
	t.mu.Lock()
	delete(t.by, ThrottleKey(addr))
	t.mu.Unlock()
}

// sweep drops entries whose back-off is over and, if that leaves the
// table full, the oldest eighth of it: a flood from ever new addresses
// then costs one scan per maxTracked/8 addresses, not one per address
// under the lock that every check takes. The caller holds t.mu.
func (t *Throttle) sweep(now time.Time) {
	for h, f := range t.by {
		if now.After(f.until) && now.Sub(f.last) > t.cfg.Max {
			delete(t.by, h)
		}
	}
	if len(t.by) < maxTracked {
		return
	}
	type seen struct {
		host string
		last time.Time
	}
	all := make([]seen, 0, len(t.by))
	for h, f := range t.by {
		all = append(all, seen{h, f.last})
	}
	slices.SortFunc(all, func(a, b seen) int { return a.last.Compare(b.last) })
	for _, s := range all[:len(all)/8] {
		delete(t.by, s.host)
	}
}
