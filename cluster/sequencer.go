package cluster

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Gaps reads what the sequencer missed from the shared store.
type Gaps interface {
	// FillGap returns the entries of channel with afterID < id <= upTo,
	// oldest first. An id the store no longer holds (cleared, pruned) is
	// simply absent.
	FillGap(ctx context.Context, channel, afterID, upTo uint64) ([]channels.Entry, error)
}

// Defaults of the sequencer.
const (
	// DefaultGapWait is how long a gap may stay open before the store is
	// read: long enough for another node's entry to cross NATS, short
	// enough that a lost one costs subscribers little delay.
	DefaultGapWait = 100 * time.Millisecond
	// DefaultMaxPending bounds the entries one channel holds back behind a
	// gap; past it the gap is filled at once.
	DefaultMaxPending = 10000
	// DefaultMaxFill bounds the entries one fill reads: a node that was
	// cut off for long delivers the newest of what it missed, not all.
	DefaultMaxFill = 1000
	// fillTimeout bounds one read of the store.
	fillTimeout = 10 * time.Second
)

// Sequencer delivers each channel's entries, local and remote, in entry
// id order, each once. Entry ids are gapless per channel and follow
// commit order, but NATS keeps order only per publisher: an entry may
// come before a lower one from another node, or never (NATS does not
// redeliver). A gap is held open for GapWait, then the missing range is
// read from the store, which has every committed entry.
type Sequencer struct {
	gaps       Gaps
	deliver    func(*channels.Entry)
	clock      Clock
	gapWait    time.Duration
	maxPending int
	maxFill    int
	m          *counters

	mu    sync.Mutex
	chans map[uint64]*chanSeq
}

// chanSeq is one channel's state. deliver runs under mu, so a channel's
// deliveries never overlap or reorder.
type chanSeq struct {
	mu      sync.Mutex
	last    uint64 // highest id delivered (or known to be before this node's time)
	gen     uint64 // bumped by Reset: a fill begun before it is void
	pending map[uint64]*channels.Entry
	high    uint64  // highest pending id
	timer   Stopper // the open gap's wait, nil when none
	filling bool    // a fill is reading the store
}

// SequencerOptions configures a Sequencer; zero values take the defaults.
type SequencerOptions struct {
	GapWait    time.Duration
	MaxPending int
	MaxFill    int
	Clock      Clock
}

// NewSequencer returns a sequencer delivering through deliver, which must
// not block for long (it runs with the channel's lock held) and must not
// keep the entry.
func NewSequencer(gaps Gaps, deliver func(*channels.Entry), o SequencerOptions) *Sequencer {
	return newSequencer(gaps, deliver, o, new(counters))
}

func newSequencer(gaps Gaps, deliver func(*channels.Entry), o SequencerOptions, m *counters) *Sequencer {
	if o.GapWait <= 0 {
		o.GapWait = DefaultGapWait
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxFill <= 0 {
		o.MaxFill = DefaultMaxFill
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	return &Sequencer{gaps: gaps, deliver: deliver, clock: o.Clock, gapWait: o.GapWait,
		maxPending: o.MaxPending, maxFill: o.MaxFill, m: m, chans: make(map[uint64]*chanSeq)}
}

// Seed sets where a channel's sequence starts: the last entry id it had
// when this node began following it. Without a seed a channel starts at
// 0, right for one created after this node started. A seed never moves a
// channel back.
func (s *Sequencer) Seed(channel, lastID uint64) {
	c := s.channel(channel)
	c.mu.Lock()
	defer c.mu.Unlock()
	if lastID > c.last {
		c.last = lastID
		s.m.duplicates.Add(s.dropUpTo(c, lastID))
		s.advance(c)
	}
}

// Reset forgets a channel's sequence: after a clear its ids start again
// at 1 (and after a deletion nothing more comes). A fill in progress is
// discarded.
func (s *Sequencer) Reset(channel uint64) {
	s.mu.Lock()
	c := s.chans[channel]
	delete(s.chans, channel)
	s.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.pending = nil
	// Nothing is left to wait for: a fill under way that ends now must
	// not arm a wait on this forgotten state (its own fill would read the
	// new feed and deliver it a second time).
	c.high = c.last
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

// Last returns the highest id delivered of a channel.
func (s *Sequencer) Last(channel uint64) uint64 {
	s.mu.Lock()
	c := s.chans[channel]
	s.mu.Unlock()
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (s *Sequencer) channel(id uint64) *chanSeq {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[id]
	if c == nil {
		c = &chanSeq{}
		s.chans[id] = c
	}
	return c
}

// Offer hands the sequencer a committed entry, from this node or another.
// It is delivered now if it is the next of its channel, held if a lower
// one is missing, dropped if it (or a later one) was delivered already.
// e is copied when held.
func (s *Sequencer) Offer(e *channels.Entry) {
	c := s.channel(e.ChannelID)
	c.mu.Lock()
	defer c.mu.Unlock()
	s.offer(c, e)
}

// OfferLocal is Offer for an entry this node has just committed. Its id
// is new, yet it may have been delivered already: a fill that other
// nodes' entries called for can read it from the store before a busy
// node gets to this call, and then it is a duplicate like any other.
// That is why a cleared feed is never inferred from an id at or below
// the last delivered (a fill of more entries than any bounded memory
// holds made that guess wrong, and the channel replayed its feed): a
// clear is announced, and Reset starts the channel over.
func (s *Sequencer) OfferLocal(e *channels.Entry) { s.Offer(e) }

// offer is Offer with c.mu held.
func (s *Sequencer) offer(c *chanSeq, e *channels.Entry) {
	switch {
	case e.ID <= c.last:
		s.m.duplicates.Add(1)
		return
	case e.ID == c.last+1:
		c.last = e.ID
		s.deliver(e)
		s.advance(c)
		return
	}
	if _, dup := c.pending[e.ID]; dup {
		s.m.duplicates.Add(1)
		return
	}
	c.high = max(c.high, e.ID)
	if len(c.pending) >= 2*s.maxPending {
		// A fill is under way or the store is failing: hold no more. The
		// entry is not lost, the fill reads up to the highest id seen.
		s.m.overflow.Add(1)
		return
	}
	if c.pending == nil {
		c.pending = make(map[uint64]*channels.Entry)
	}
	own := *e
	c.pending[e.ID] = &own
	switch {
	case len(c.pending) >= s.maxPending && !c.filling:
		// Too much held back: fill now rather than wait.
		if c.timer != nil && c.timer.Stop() {
			c.timer = nil
		}
		if c.timer == nil {
			c.filling = true
			go s.fill(e.ChannelID, c, c.gen)
		}
	case c.timer == nil && !c.filling:
		s.m.waits.Add(1)
		ch, gen := e.ChannelID, c.gen
		c.timer = s.clock.AfterFunc(s.gapWait, func() { s.gapTimeout(ch, c, gen) })
	}
}

// CatchUp tells the sequencer that a channel's entries up to lastID are
// committed (the store said so). Those not delivered are read from the
// store now: after NATS lost messages, nothing else would bring the
// last of them until the channel's next entry.
func (s *Sequencer) CatchUp(channel, lastID uint64) {
	c := s.channel(channel)
	c.mu.Lock()
	defer c.mu.Unlock()
	if lastID <= c.last {
		return
	}
	c.high = max(c.high, lastID)
	if c.timer != nil && c.timer.Stop() {
		c.timer = nil
	}
	if c.timer == nil && !c.filling {
		// A fill under way re-reads up to high when it is done.
		c.filling = true
		go s.fill(channel, c, c.gen)
	}
}

// advance delivers the held entries that now follow the last delivered;
// the caller holds c.mu.
func (s *Sequencer) advance(c *chanSeq) {
	for len(c.pending) > 0 {
		e, ok := c.pending[c.last+1]
		if !ok {
			return
		}
		delete(c.pending, e.ID)
		c.last = e.ID
		s.deliver(e)
	}
	if c.timer != nil && c.timer.Stop() {
		c.timer = nil // the gap closed in time
	}
}

// dropUpTo discards held entries at or below id and returns how many;
// the caller holds c.mu.
func (s *Sequencer) dropUpTo(c *chanSeq, id uint64) uint64 {
	var n uint64
	for k := range c.pending {
		if k <= id {
			delete(c.pending, k)
			n++
		}
	}
	return n
}

// gapTimeout runs when a gap stayed open for GapWait.
func (s *Sequencer) gapTimeout(channel uint64, c *chanSeq, gen uint64) {
	c.mu.Lock()
	if c.gen != gen {
		c.mu.Unlock()
		return
	}
	// No wait is armed while a fill runs, so c.timer is this one.
	c.timer = nil
	if c.filling || len(c.pending) == 0 && c.high <= c.last {
		c.mu.Unlock()
		return
	}
	c.filling = true
	c.mu.Unlock()
	s.fill(channel, c, gen)
}

// fill reads the gap from the store and delivers it with what is held.
// It reads up to the highest held id, not just below the lowest: the
// store is the truth, so a held entry it no longer has (its channel was
// cleared while the entry crossed NATS) is dropped, not delivered.
func (s *Sequencer) fill(channel uint64, c *chanSeq, gen uint64) {
	c.mu.Lock()
	from, to := c.last, c.high
	c.mu.Unlock()
	if to > from+uint64(s.maxFill) {
		// Cut off for long: deliver the newest maxFill of what was missed.
		s.m.skipped.Add(to - uint64(s.maxFill) - from)
		from = to - uint64(s.maxFill)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	got, err := s.gaps.FillGap(ctx, channel, from, to)
	cancel()
	s.m.gapFills.Add(1)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.filling = false
	if c.gen != gen {
		// Restarted while reading: what was read belongs to the old feed,
		// and a gap of the new one waited for this read to end.
		s.rearm(channel, c)
		return
	}
	if err != nil {
		s.m.fillErrors.Add(1)
		// Keep what is held and try again after another wait; the bound
		// on held entries still applies.
		s.rearm(channel, c)
		return
	}
	slices.SortFunc(got, func(a, b channels.Entry) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	if len(got) > 0 && got[len(got)-1].ID > from && from > c.last {
		c.last = from // past the fill bound: skipped
	}
	for i := range got {
		e := &got[i]
		if e.ChannelID != channel || e.ID <= c.last || e.ID > to {
			continue
		}
		delete(c.pending, e.ID)
		c.last = e.ID
		s.m.filled.Add(1)
		s.deliver(e)
	}
	// A held entry at or below to that the store did not return is gone
	// from it (cleared while it crossed NATS). last moves only as far as
	// the store confirmed: after a clear, the new feed's ids start lower.
	for k := range c.pending {
		if k <= to {
			delete(c.pending, k)
			s.m.stale.Add(1)
		}
	}
	if c.high <= to {
		c.high = c.last // every id known to be committed is settled
	}
	s.advance(c)
	s.rearm(channel, c) // entries that came while reading (or a CatchUp) may leave a gap
}

// rearm starts a wait when a gap is open and nothing will close it; the
// caller holds c.mu.
func (s *Sequencer) rearm(channel uint64, c *chanSeq) {
	if (len(c.pending) > 0 || c.high > c.last) && c.timer == nil && !c.filling {
		s.m.waits.Add(1)
		gen := c.gen
		c.timer = s.clock.AfterFunc(s.gapWait, func() { s.gapTimeout(channel, c, gen) })
	}
}

// Delivered returns every channel's highest id delivered (or seeded);
// each was committed, so a store that now reports a lower last id for a
// channel has had it cleared since.
func (s *Sequencer) Delivered() map[uint64]uint64 {
	s.mu.Lock()
	chans := make(map[uint64]*chanSeq, len(s.chans))
	for id, c := range s.chans {
		chans[id] = c
	}
	s.mu.Unlock()
	out := make(map[uint64]uint64, len(chans))
	for id, c := range chans {
		c.mu.Lock()
		out[id] = c.last
		c.mu.Unlock()
	}
	return out
}
