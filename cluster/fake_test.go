package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// fakeClock runs timers only when a test advances it, in the advancing
// goroutine, so that what a wait does is decided by the test.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// pending counts timers not yet fired or stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

// Advance moves the clock by d and fires every timer due, in time order,
// including timers set by the ones fired.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.done && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = end
			c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.done })
			c.mu.Unlock()
			return
		}
		next.done = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// fakeStore is a shared feed store in memory.
type fakeStore struct {
	mu    sync.Mutex
	feeds map[uint64][]channels.Entry // by channel, in id order
	fills [][3]uint64                 // channel, afterID, upTo of each FillGap
	fail  error                       // returned by FillGap while set
	block chan struct{}               // FillGap waits on it while set
	// clears counts clears: a feed's entries are written after the clear
	// of the feed before, so they are dated later than its entries.
	clears int64
}

func newFakeStore() *fakeStore { return &fakeStore{feeds: make(map[uint64][]channels.Entry)} }

// add commits entries 1..n of a channel (after those it has) and returns
// them.
func (s *fakeStore) add(channel uint64, n int) []channels.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []channels.Entry
	for range n {
		e := channels.Entry{ChannelID: channel, ID: uint64(len(s.feeds[channel]) + 1),
			CreatedAt: time.Unix(1_700_000_000+s.clears, 0).UTC()}
		e.SetValue(0, "v"+itoa(e.ID))
		s.feeds[channel] = append(s.feeds[channel], e)
		out = append(out, e)
	}
	return out
}

func (s *fakeStore) clear(channel uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.feeds, channel)
	s.clears++
}

func (s *fakeStore) FillGap(ctx context.Context, channel, after, upTo uint64) ([]channels.Entry, error) {
	s.mu.Lock()
	s.fills = append(s.fills, [3]uint64{channel, after, upTo})
	fail, block := s.fail, s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []channels.Entry
	for _, e := range s.feeds[channel] {
		if e.ID > after && e.ID <= upTo {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *fakeStore) LastIDs(context.Context) (map[uint64]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[uint64]uint64)
	for ch, f := range s.feeds {
		m[ch] = uint64(len(f))
	}
	return m, nil
}

func (s *fakeStore) fillCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fills)
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// recorder collects deliveries per channel.
type recorder struct {
	mu  sync.Mutex
	got map[uint64][]channels.Entry
}

func newRecorder() *recorder { return &recorder{got: make(map[uint64][]channels.Entry)} }

func (r *recorder) deliver(e *channels.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[e.ChannelID] = append(r.got[e.ChannelID], *e)
}

func (r *recorder) ids(channel uint64) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []uint64
	for _, e := range r.got[channel] {
		ids = append(ids, e.ID)
	}
	return ids
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errDown = errors.New("database down")

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}
