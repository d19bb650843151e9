package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// seqStep is one step of a sequencer scenario on channel 1.
type seqStep struct {
	commit  int           // entries committed to the store first
	clear   bool          // the store's feed is cleared, the sequencer reset
	cleared bool          // the store's feed is cleared, the sequencer not told
	reset   bool          // the sequencer is reset (a clear's notice comes)
	seed    uint64        // Seed(1, seed) when > 0
	offer   []uint64      // committed entries (by id, as committed so far) offered in this order
	local   []uint64      // the same, offered as this node's own (after offer)
	stale   []uint64      // entries of the feed before the last clear offered
	fail    bool          // FillGap fails from now on
	heal    bool          // FillGap works again
	advance time.Duration // the clock moves on
	want    []uint64      // everything delivered so far, in order
	fills   int           // store reads so far (-1: not checked)
}

func TestSequencer(t *testing.T) {
	const w = DefaultGapWait
	cases := []struct {
		name  string
		opts  SequencerOptions
		steps []seqStep
		check func(t *testing.T, m Metrics)
	}{
		{name: "in order", steps: []seqStep{
			{commit: 5, offer: []uint64{1, 2, 3, 4, 5}, want: seq(1, 5), fills: 0},
			{advance: time.Hour, want: seq(1, 5), fills: 0},
		}, check: func(t *testing.T, m Metrics) {
			if m.SequencerWaits != 0 || m.Duplicates != 0 {
				t.Errorf("metrics %+v: want no waits or duplicates", m)
			}
		}},
		{name: "reorder closed within the wait", steps: []seqStep{
			{commit: 4, offer: []uint64{1, 3}, want: []uint64{1}},
			{advance: w - time.Millisecond, offer: []uint64{4, 2}, want: seq(1, 4), fills: 0},
			{advance: time.Hour, want: seq(1, 4), fills: 0},
		}, check: func(t *testing.T, m Metrics) {
			if m.SequencerWaits != 1 || m.GapFills != 0 {
				t.Errorf("metrics %+v: want one wait, no fill", m)
			}
		}},
		{name: "gap filled from the store after the wait", steps: []seqStep{
			{commit: 5, offer: []uint64{1, 2, 4, 5}, want: []uint64{1, 2}},
			{advance: w - time.Millisecond, want: []uint64{1, 2}, fills: 0},
			{advance: time.Millisecond, want: seq(1, 5), fills: 1},
		}, check: func(t *testing.T, m Metrics) {
			if m.GapFills != 1 || m.Filled != 3 || m.SequencerWaits != 1 {
				t.Errorf("metrics %+v: want 1 fill of 3 entries after 1 wait", m)
			}
		}},
		{name: "duplicates dropped", steps: []seqStep{
			{commit: 3, offer: []uint64{1, 2, 2, 1, 3, 3}, want: seq(1, 3)},
			{commit: 2, offer: []uint64{5, 5}, want: seq(1, 3)},
			{offer: []uint64{4}, want: seq(1, 5), fills: 0},
		}, check: func(t *testing.T, m Metrics) {
			if m.Duplicates != 4 {
				t.Errorf("duplicates %d, want 4", m.Duplicates)
			}
		}},
		{name: "lower id arriving after its fill", steps: []seqStep{
			{commit: 3, offer: []uint64{1, 3}, want: []uint64{1}},
			{advance: w, want: seq(1, 3), fills: 1},
			{offer: []uint64{2}, want: seq(1, 3), fills: 1},
		}},
		{name: "NATS lost messages, repaired by the next entry", steps: []seqStep{
			{commit: 6, offer: []uint64{1, 2}, want: []uint64{1, 2}},
			{commit: 1, offer: []uint64{7}, want: []uint64{1, 2}},
			{advance: w, want: seq(1, 7), fills: 1},
		}},
		{name: "seeded channel starts after its seed", steps: []seqStep{
			{commit: 12, seed: 10, offer: []uint64{5, 10, 11, 12}, want: []uint64{11, 12}},
			{advance: time.Hour, want: []uint64{11, 12}, fills: 0},
		}},
		{name: "seed releases held entries", steps: []seqStep{
			{commit: 12, offer: []uint64{12, 11, 3}, want: nil},
			{seed: 10, want: []uint64{11, 12}},
			{advance: time.Hour, want: []uint64{11, 12}, fills: 0},
		}},
		{name: "cleared channel starts again at 1", steps: []seqStep{
			{commit: 3, offer: []uint64{1, 2, 3}, want: seq(1, 3)},
			{clear: true, commit: 2, offer: []uint64{1, 2}, want: []uint64{1, 2, 3, 1, 2}, fills: 0},
		}},
		{name: "held entry of the feed before a clear is dropped", steps: []seqStep{
			{commit: 3, offer: []uint64{1}, want: []uint64{1}},
			{clear: true, stale: []uint64{3}, want: []uint64{1}},
			{advance: w, want: []uint64{1}, fills: 1},
			{commit: 4, offer: []uint64{4}, want: []uint64{1}, fills: 1},
			{advance: w, want: []uint64{1, 1, 2, 3, 4}, fills: 2},
		}, check: func(t *testing.T, m Metrics) {
			if m.Stale != 1 {
				t.Errorf("stale %d, want 1", m.Stale)
			}
		}},
		{name: "a cleared feed's own entries wait for the reset", steps: []seqStep{
			{commit: 3, offer: []uint64{1, 3}, want: []uint64{1}},
			{advance: w, want: seq(1, 3), fills: 1},
			// Cleared on another node, its notice not here yet: the new
			// feed's 2 and 1, this node's own, look like duplicates.
			{cleared: true, commit: 2, local: []uint64{2, 1}, want: seq(1, 3), fills: 1},
			// The notice resets the channel; its next entry shows the gap
			// and the fill delivers the new feed in order.
			{reset: true, commit: 1, local: []uint64{3}, want: seq(1, 3), fills: 1},
			{advance: w, want: []uint64{1, 2, 3, 1, 2, 3}, fills: 2},
			{advance: time.Hour, want: []uint64{1, 2, 3, 1, 2, 3}, fills: 2},
		}, check: func(t *testing.T, m Metrics) {
			if m.Duplicates != 2 {
				t.Errorf("metrics %+v: want two duplicates", m)
			}
		}},
		{name: "own entry filled in before it is offered is a duplicate", steps: []seqStep{
			// 2 is this node's: committed, but its OfferLocal comes after
			// a fill (a wait, or a catch-up) has read it from the store.
			{commit: 3, offer: []uint64{1, 3}, want: []uint64{1}},
			{advance: w, want: seq(1, 3), fills: 1},
			{local: []uint64{2}, want: seq(1, 3), fills: 1},
			{advance: time.Hour, want: seq(1, 3), fills: 1},
			{commit: 1, local: []uint64{4}, want: seq(1, 4), fills: 1},
		}, check: func(t *testing.T, m Metrics) {
			if m.Duplicates != 1 {
				t.Errorf("metrics %+v: want one duplicate", m)
			}
		}},
		{name: "own entry filled in by a long fill before it is offered is a duplicate", steps: []seqStep{
			// 1 is this node's; before its OfferLocal comes (a busy node),
			// the other nodes' 2..200 arrive and a fill delivers 1..200.
			{commit: 200, offer: seq(2, 200), want: nil},
			{advance: w, want: seq(1, 200), fills: 1},
			{local: []uint64{1}, want: seq(1, 200), fills: 1},
			{commit: 1, local: []uint64{201}, want: seq(1, 201), fills: 1},
			{advance: time.Hour, want: seq(1, 201), fills: 1},
		}, check: func(t *testing.T, m Metrics) {
			if m.Duplicates != 1 {
				t.Errorf("metrics %+v: want one duplicate", m)
			}
		}},
		{name: "local entries in order", steps: []seqStep{
			{commit: 3, local: []uint64{1, 2, 3}, want: seq(1, 3)},
		}, check: func(t *testing.T, m Metrics) {
			if m.Duplicates != 0 || m.SequencerWaits != 0 {
				t.Errorf("metrics %+v: want no duplicate, no wait", m)
			}
		}},
		{name: "reset discards a gap being waited on", steps: []seqStep{
			{commit: 3, offer: []uint64{1, 3}, want: []uint64{1}},
			{clear: true, commit: 1, offer: []uint64{1}, want: []uint64{1, 1}},
			{advance: time.Hour, want: []uint64{1, 1}, fills: 0},
		}},
		{name: "failed fill is tried again", steps: []seqStep{
			{commit: 3, fail: true, offer: []uint64{1, 3}, want: []uint64{1}},
			{advance: w, want: []uint64{1}, fills: 1},
			{advance: w, want: []uint64{1}, fills: 2},
			{heal: true, advance: w, want: seq(1, 3), fills: 3},
			{advance: time.Hour, want: seq(1, 3), fills: 3},
		}, check: func(t *testing.T, m Metrics) {
			if m.FillErrors != 2 {
				t.Errorf("fill errors %d, want 2", m.FillErrors)
			}
		}},
		{name: "fill reads at most MaxFill", opts: SequencerOptions{MaxFill: 5}, steps: []seqStep{
			{commit: 20, offer: []uint64{20}, want: nil},
			{advance: w, want: seq(16, 20), fills: 1},
			{offer: []uint64{3}, want: seq(16, 20), fills: 1},
		}, check: func(t *testing.T, m Metrics) {
			if m.Skipped != 15 {
				t.Errorf("skipped %d, want 15", m.Skipped)
			}
		}},
		{name: "gap after a fill waits again", steps: []seqStep{
			{commit: 6, offer: []uint64{1, 3}, want: []uint64{1}},
			{advance: w, want: seq(1, 3), fills: 1},
			{offer: []uint64{6}, want: seq(1, 3), fills: 1},
			{offer: []uint64{4}, want: seq(1, 4), fills: 1},
			{advance: w, want: seq(1, 6), fills: 2},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, rec, clk := newFakeStore(), newRecorder(), newFakeClock()
			tc.opts.Clock = clk
			s := NewSequencer(st, rec.deliver, tc.opts)
			var feed, old []channels.Entry // committed entries of channel 1, and before the clear
			for i, step := range tc.steps {
				if step.clear || step.cleared {
					st.clear(1)
					old, feed = feed, nil
				}
				if step.clear || step.reset {
					s.Reset(1)
				}
				if step.commit > 0 {
					feed = append(feed, st.add(1, step.commit)...)
				}
				st.mu.Lock()
				if step.fail {
					st.fail = errDown
				}
				if step.heal {
					st.fail = nil
				}
				st.mu.Unlock()
				if step.seed > 0 {
					s.Seed(1, step.seed)
				}
				for _, id := range step.offer {
					e := feed[id-1]
					s.Offer(&e)
				}
				for _, id := range step.local {
					e := feed[id-1]
					s.OfferLocal(&e)
				}
				for _, id := range step.stale {
					e := old[id-1]
					s.Offer(&e)
				}
				if step.advance > 0 {
					clk.Advance(step.advance)
				}
				if got := rec.ids(1); !slices.Equal(got, step.want) {
					t.Fatalf("step %d: delivered %v, want %v", i, got, step.want)
				}
				if step.fills >= 0 && st.fillCount() != step.fills {
					t.Fatalf("step %d: %d fills, want %d (%v)", i, st.fillCount(), step.fills, st.fills)
				}
			}
			// What was delivered is what the store holds for those ids.
			for _, e := range rec.got[1] {
				if v, _ := e.Field(1); v != "v"+itoa(e.ID) {
					t.Errorf("entry %d delivered with field1 %q", e.ID, v)
				}
			}
			if tc.check != nil {
				tc.check(t, s.Metrics())
			}
		})
	}
}

// A gap holding MaxPending entries is filled at once, without waiting.
func TestSequencerFillsWhenTooMuchIsHeld(t *testing.T) {
	st, rec, clk := newFakeStore(), newRecorder(), newFakeClock()
	s := NewSequencer(st, rec.deliver, SequencerOptions{Clock: clk, MaxPending: 3})
	feed := st.add(1, 4)
	for _, id := range []uint64{2, 3, 4} {
		s.Offer(&feed[id-1])
	}
	waitFor(t, "entries 1..4 delivered without advancing the clock", func() bool {
		return slices.Equal(rec.ids(1), seq(1, 4))
	})
	if n := st.fillCount(); n != 1 {
		t.Errorf("%d fills, want 1", n)
	}
}

// Entries offered from many goroutines in any order (as NATS and local
// commits interleave) come out once each, in id order, per channel.
func TestSequencerConcurrentOffers(t *testing.T) {
	st, rec := newFakeStore(), newRecorder()
	const n = 2000
	// A goroutine may run far ahead of another: no gap is past the fill
	// bound here.
	s := NewSequencer(st, rec.deliver, SequencerOptions{GapWait: time.Millisecond, MaxFill: n})
	feeds := map[uint64][]channels.Entry{1: st.add(1, n), 2: st.add(2, n)}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			// Each goroutine offers its share of both channels, some twice
			// and some not at all (lost on NATS).
			for i := g; i < n; i += 4 {
				for _, ch := range []uint64{1, 2} {
					e := feeds[ch][i]
					if i%97 == 5 {
						continue
					}
					s.Offer(&e)
					if i%13 == 0 {
						s.Offer(&e)
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	for _, ch := range []uint64{1, 2} {
		waitFor(t, "every entry delivered", func() bool { return len(rec.ids(ch)) >= n })
		if got := rec.ids(ch); !slices.Equal(got, seq(1, n)) {
			t.Fatalf("channel %d: delivered %d entries, not 1..%d in order", ch, len(got), n)
		}
	}
	if m := s.Metrics(); m.Skipped != 0 || m.Stale != 0 {
		t.Errorf("metrics %+v: nothing should be skipped or stale", m)
	}
}

// CatchUp reads the entries NATS lost at the end of a stream, which no
// later entry would reveal as a gap.
func TestSequencerCatchUp(t *testing.T) {
	st, rec, clk := newFakeStore(), newRecorder(), newFakeClock()
	s := NewSequencer(st, rec.deliver, SequencerOptions{Clock: clk})
	feed := st.add(1, 5)
	s.Offer(&feed[0])
	s.Offer(&feed[1])
	s.CatchUp(1, 2) // nothing missing: no read
	s.CatchUp(1, 1)
	if n := st.fillCount(); n != 0 {
		t.Fatalf("%d fills for a channel that misses nothing", n)
	}
	s.CatchUp(1, 5)
	waitFor(t, "the lost tail delivered", func() bool { return slices.Equal(rec.ids(1), seq(1, 5)) })
	// The late NATS copies are duplicates.
	s.Offer(&feed[4])
	if got := rec.ids(1); !slices.Equal(got, seq(1, 5)) {
		t.Fatalf("delivered %v", got)
	}

	// A catch-up whose read fails is tried again after the gap wait.
	st.mu.Lock()
	st.fail = errDown
	st.mu.Unlock()
	feed = append(feed, st.add(1, 2)...)
	s.CatchUp(1, 7)
	waitFor(t, "the failed read", func() bool { return s.Metrics().FillErrors == 1 })
	st.mu.Lock()
	st.fail = nil
	st.mu.Unlock()
	waitFor(t, "the retry armed", func() bool { return clk.pending() == 1 })
	clk.Advance(DefaultGapWait)
	if got := rec.ids(1); !slices.Equal(got, seq(1, 7)) {
		t.Fatalf("after the retry: delivered %v, want 1..7", got)
	}
	// Settled: no more reads, no timer.
	clk.Advance(time.Hour)
	if n, p := st.fillCount(), clk.pending(); n != 3 || p != 0 {
		t.Errorf("%d fills, %d timers; want 3 and none", n, p)
	}

	// A catch-up for a channel cleared since (the store has less) settles
	// without delivering anything.
	st.clear(1)
	s.CatchUp(1, 9)
	waitFor(t, "the read", func() bool { return st.fillCount() == 4 })
	clk.Advance(time.Hour)
	if got, n := rec.ids(1), st.fillCount(); !slices.Equal(got, seq(1, 7)) || n != 4 {
		t.Errorf("delivered %v after %d fills", got, n)
	}
}

// A channel reset while a fill of its old feed reads the store gets its
// new gap filled once that read ends.
func TestSequencerRestartDuringFill(t *testing.T) {
	st, rec, clk := newFakeStore(), newRecorder(), newFakeClock()
	s := NewSequencer(st, rec.deliver, SequencerOptions{Clock: clk})
	feed := st.add(1, 5)
	for i := range 3 {
		s.Offer(&feed[i])
	}
	block := make(chan struct{})
	st.mu.Lock()
	st.block = block
	st.mu.Unlock()
	s.CatchUp(1, 5) // 4 and 5 were lost
	waitFor(t, "the fill reading", func() bool { return st.fillCount() == 1 })
	st.clear(1)
	s.Reset(1) // the clear's notice
	st.mu.Lock()
	st.block = nil
	st.mu.Unlock()
	close(block)
	// The old fill ends with nothing to do: no wait is armed for it.
	waitFor(t, "the old fill's end", func() bool { return s.Metrics().GapFills == 1 })
	feed = st.add(1, 2)
	s.OfferLocal(&feed[1]) // the new feed's 2 before its 1
	waitFor(t, "the new gap's wait armed", func() bool { return clk.pending() >= 1 })
	if n := clk.pending(); n != 1 {
		t.Fatalf("%d waits armed, want the new gap's only", n)
	}
	st.add(1, 3) // the new feed goes on to 5 in the store
	clk.Advance(DefaultGapWait)
	if got := rec.ids(1); !slices.Equal(got, []uint64{1, 2, 3, 1, 2}) {
		t.Fatalf("delivered %v, want 1..3 then the new feed's 1, 2 (and nothing read for the old state)", got)
	}
}

// Delivered reports each channel's highest id delivered or seeded, and
// forgets a channel once Reset.
func TestSequencerDelivered(t *testing.T) {
	st, rec, clk := newFakeStore(), newRecorder(), newFakeClock()
	s := NewSequencer(st, rec.deliver, SequencerOptions{Clock: clk})
	feed := st.add(1, 3)
	s.Seed(2, 40)
	for i := range feed {
		s.Offer(&feed[i])
	}
	s.Offer(&st.add(1, 2)[1]) // id 5: held behind 4, not delivered
	if got := s.Delivered(); len(got) != 2 || got[1] != 3 || got[2] != 40 {
		t.Fatalf("Delivered = %v, want map[1:3 2:40]", got)
	}
	s.Reset(2)
	if got := s.Delivered(); len(got) != 1 || got[1] != 3 {
		t.Fatalf("Delivered after Reset(2) = %v, want map[1:3]", got)
	}
}
