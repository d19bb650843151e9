package cluster

import "sync/atomic"

// counters are the cluster layer's running totals.
type counters struct {
	published     atomic.Uint64 // local entries sent on NATS
	publishErrors atomic.Uint64 // local entries NATS refused (subscribers elsewhere get them by gap fill)
	received      atomic.Uint64 // remote entries taken from NATS
	malformed     atomic.Uint64 // NATS messages that were not entries or notices
	unknown       atomic.Uint64 // remote entries of channels this node does not know
	foreign       atomic.Uint64 // messages of another database
	duplicates    atomic.Uint64 // entries at or below what was delivered
	waits         atomic.Uint64 // gaps held open
	gapFills      atomic.Uint64 // reads of the store for a gap
	filled        atomic.Uint64 // entries delivered from those reads
	fillErrors    atomic.Uint64 // failed reads
	stale         atomic.Uint64 // held entries the store no longer had
	skipped       atomic.Uint64 // ids past the fill bound, never delivered
	overflow      atomic.Uint64 // entries not held because too many were
	catchUps      atomic.Uint64 // reads of every channel's last id after NATS lost messages
	takeovers     atomic.Uint64 // takeover notices that named a local client ID
	notices       atomic.Uint64 // takeover notices received
	freeForwarded atomic.Uint64 // free-topic messages sent on NATS
	freeErrors    atomic.Uint64 // free-topic messages NATS refused (lost)
	freeReceived  atomic.Uint64 // free-topic messages taken from NATS and delivered
	freeDropped   atomic.Uint64 // free-topic messages from NATS dropped as malformed
}

// Metrics is a snapshot of the cluster layer's state for /metrics and
// /healthz.
type Metrics struct {
	// NATSConnected reports whether the NATS connection is up now.
	NATSConnected bool
	// FailClosed reports whether the node refuses connections because it
	// could not confirm its state with the database in time.
	FailClosed bool
	// NodesSeen counts live nodes in the last heartbeat read, this one
	// included.
	NodesSeen int

	Published, PublishErrors, Received, Malformed uint64
	// Unknown are remote entries dropped because this node does not know
	// their channel.
	Unknown uint64
	// Foreign are messages of another database's nodes, dropped.
	Foreign uint64
	// Duplicates are entries dropped as already delivered.
	Duplicates uint64
	// SequencerWaits counts gaps held open for a lower entry; GapFills
	// the store reads that closed them (FillErrors failed), Filled the
	// entries those reads delivered.
	SequencerWaits, GapFills, Filled, FillErrors uint64
	// Stale entries were dropped because the store no longer had them;
	// Skipped ids lay past the fill bound; Overflow entries were not
	// held (the store filled them in).
	Stale, Skipped, Overflow uint64
	// CatchUps counts reads of every channel's last id after NATS
	// reconnected or dropped messages.
	CatchUps uint64
	// Notices are takeover notices received; Takeovers those that closed
	// a local connection.
	Notices, Takeovers uint64
	// FreeForwarded are free-topic messages this node sent to the
	// others, FreeForwardErrors those NATS refused (lost);
	// FreeReceived the other nodes' messages delivered here,
	// FreeDropped those dropped as malformed or oversized.
	FreeForwarded, FreeForwardErrors, FreeReceived, FreeDropped uint64
}

func (c *counters) snapshot() Metrics {
	return Metrics{
		Published: c.published.Load(), PublishErrors: c.publishErrors.Load(),
		Received: c.received.Load(), Malformed: c.malformed.Load(), Unknown: c.unknown.Load(), Foreign: c.foreign.Load(),
		Duplicates: c.duplicates.Load(), SequencerWaits: c.waits.Load(),
		GapFills: c.gapFills.Load(), Filled: c.filled.Load(), FillErrors: c.fillErrors.Load(),
		Stale: c.stale.Load(), Skipped: c.skipped.Load(), Overflow: c.overflow.Load(), CatchUps: c.catchUps.Load(),
		Notices: c.notices.Load(), Takeovers: c.takeovers.Load(),
		FreeForwarded: c.freeForwarded.Load(), FreeForwardErrors: c.freeErrors.Load(),
		FreeReceived: c.freeReceived.Load(), FreeDropped: c.freeDropped.Load(),
	}
}

// Metrics returns the sequencer's counters.
func (s *Sequencer) Metrics() Metrics { return s.m.snapshot() }
