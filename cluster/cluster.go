// Package cluster links feedmq nodes that share one database: each node
// publishes the entries it commits on NATS, takes the other nodes'
// entries from there, and delivers every channel's entries to its own
// subscribers in entry id order (Sequencer), reading from the database
// what NATS lost. It also carries client-ID takeover notices between
// nodes and watches that the node can still confirm its state (Monitor).
//
// NATS is used without persistence: the database is the only log, and a
// lost message costs a short wait and a read, never an entry.
package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/feedmq/feedmq/channels"
)

// Config configures a Cluster.
type Config struct {
	// URLs are the NATS servers, comma-separated (nats://host:4222,...).
	URLs string
	// Name is the cluster's name, the subject prefix: clusters sharing
	// NATS servers must differ in it. Letters, digits, '-' and '_'.
	Name string
	// Node identifies this node, unique in the cluster (same alphabet).
	Node string
	// Database identifies the shared database. Every message carries it
	// (a NATS header), and messages of another database are dropped:
	// clusters that share NATS servers and, by oversight, the cluster
	// name would otherwise mix their channels, whose ids overlap. Empty:
	// messages carry none and none is checked.
	Database string
	// Store is the shared database: where each channel's sequence
	// starts, and the gaps.
	Store Store
	// NATSOptions are passed to nats.Connect after feedmq's own: TLS,
	// credentials.
	NATSOptions []nats.Option
	// Sequencer tunes the gap handling; zero values take the defaults.
	Sequencer SequencerOptions
	// ConnectTimeout bounds the first connection. Default 5s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Cluster is one node's link to the others.
type Cluster struct {
	cfg  Config
	nc   *nats.Conn
	log  *slog.Logger
	m    *counters
	seq  *Sequencer
	subs []*nats.Subscription
	// freeSub receives free-topic messages (free.go); nil before
	// AttachFree.
	freeSub *nats.Subscription

	deliver  func(*channels.Entry)
	takeover Takeover
	attached atomic.Bool
	closed   atomic.Bool
	catching atomic.Int32 // catchUp running (1) and asked for again (>1)
	mu       sync.Mutex   // serializes Attach and Close
	monitor  atomic.Pointer[Monitor]
	known    atomic.Pointer[func(channel uint64) bool]
}

// Open checks cfg and connects to NATS. Nothing is received before
// Attach.
func Open(cfg Config) (*Cluster, error) {
	if err := ValidName(cfg.Name); err != nil {
		return nil, fmt.Errorf("cluster: name %q: %w", cut(cfg.Name), err)
	}
	if err := ValidName(cfg.Node); err != nil {
		return nil, fmt.Errorf("cluster: node %q: %w", cut(cfg.Node), err)
	}
	if strings.TrimSpace(cfg.URLs) == "" {
		return nil, errors.New("cluster: no NATS server given")
	}
	if cfg.Store == nil {
		return nil, errors.New("cluster: a shared store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, m: new(counters)}
	c.seq = newSequencer(cfg.Store, c.deliverEntry, cfg.Sequencer, c.m)
	opts := []nats.Option{
		nats.Name("feedmq " + cfg.Node),
		// A node's own entries reach its sequencer directly.
		nats.NoEcho(),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// By default the client gives up on a server that refused the
		// credentials twice in a row, and with it the link for good: a
		// server restarted with incomplete accounts must cost an outage,
		// not the node's share of the cluster until it restarts.
		nats.IgnoreAuthErrorAbort(),
		nats.ClosedHandler(func(*nats.Conn) {
			if !c.closed.Load() {
				c.log.Error("cluster: NATS connection closed; entries of other nodes no longer arrive here")
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("cluster: NATS disconnected", "error", err.Error())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("cluster: NATS reconnected", "server", nc.ConnectedUrlRedacted())
			go c.catchUp() // what was sent meanwhile is lost for this node
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			c.log.Warn("cluster: NATS error", "error", err.Error())
			// Entries dropped are read from the store; free-topic
			// messages dropped are lost (at most once), and the store
			// has nothing to catch up on for them.
			if errors.Is(err, nats.ErrSlowConsumer) && (sub == nil || sub.Subject != freeSubject(cfg.Name)) {
				go c.catchUp()
			}
		}),
	}
	nc, err := nats.Connect(cfg.URLs, append(opts, cfg.NATSOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to NATS: %w", err)
	}
	if cfg.Database != "" && !nc.HeadersSupported() {
		c.closed.Store(true) // not a lost link: no error logged
		nc.Close()
		return nil, errors.New("cluster: the NATS server does not support message headers, which carry the database's identity; remove no_header_support from its configuration")
	}
	c.nc = nc
	return c, nil
}

// cut bounds a name quoted in an error.
func cut(s string) string {
	if len(s) > MaxNameLen {
		return s[:MaxNameLen] + "..."
	}
	return s
}

// Takeover closes this node's connection with clientID if it is older than
// another node's, which connected at at (zero: closes it whatever its
// age); winsTie says whether the other node's wins when both times are
// equal. It reports whether it closed one. Two nodes told of each other's
// connection then agree on which one stays, however late a notice
// arrives, as long as their clocks agree to within the time between the
// two connects.
type Takeover func(clientID string, at time.Time, winsTie bool) bool

// Attach starts receiving: remote entries go through the sequencer to
// deliver, and another node's takeover notice calls takeover with the
// client ID, when it connected there (zero if that node did not say), and
// whether that node wins a tie of equal times (takeover reports whether
// it closed a local connection). Each channel's sequence starts at its
// last entry id now; entries that arrive meanwhile wait.
func (c *Cluster) Attach(deliver func(*channels.Entry), takeover func(clientID string, at time.Time, winsTie bool) bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return errors.New("cluster: closed")
	}
	if c.attached.Load() {
		return errors.New("cluster: already attached")
	}
	c.deliver, c.takeover = deliver, takeover
	// Subscribe before reading the starting points, so that nothing
	// committed after them is missed; the handlers wait for the seeds.
	ready := make(chan struct{})
	entries, err := c.nc.Subscribe(entriesWildcard(c.cfg.Name), func(msg *nats.Msg) {
		if <-ready; c.attached.Load() {
			c.onEntry(msg)
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	notices, err := c.nc.Subscribe(connectSubject(c.cfg.Name), func(msg *nats.Msg) {
		if <-ready; c.attached.Load() {
			c.onNotice(msg)
		}
	})
	if err != nil {
		_ = entries.Unsubscribe()
		close(ready)
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	// A burst beyond these is dropped by the client library, and then
	// filled in from the store.
	_ = entries.SetPendingLimits(1<<16, 64<<20)
	c.subs = []*nats.Subscription{entries, notices}
	if err := c.nc.Flush(); err != nil {
		c.unsubscribe()
		close(ready) // the handlers of what arrived return without a look
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	ctx, cancel := contextTimeout(fillTimeout)
	last, err := c.cfg.Store.LastIDs(ctx)
	cancel()
	if err != nil {
		c.unsubscribe()
		close(ready)
		return fmt.Errorf("cluster: read the channels' last entry ids: %w", err)
	}
	for ch, id := range last {
		c.seq.Seed(ch, id)
	}
	c.attached.Store(true)
	close(ready)
	return nil
}

// catchUp reads every channel's last entry id and has the sequencer fill
// in what this node has not delivered. One runs at a time; a request
// while one runs is folded into it.
func (c *Cluster) catchUp() {
	if !c.attached.Load() || c.closed.Load() {
		return
	}
	if c.catching.Add(1) > 1 {
		return // the running one goes round again
	}
	for {
		c.m.catchUps.Add(1)
		ctx, cancel := contextTimeout(fillTimeout)
		last, err := c.cfg.Store.LastIDs(ctx)
		cancel()
		if err != nil {
			c.m.fillErrors.Add(1)
			c.log.Warn("cluster: catching up after lost NATS messages", "error", err.Error())
		}
		for ch, id := range last {
			c.seq.CatchUp(ch, id)
		}
		if c.catching.Add(-1) == 0 {
			return
		}
		c.catching.Store(1) // requests meanwhile: one more round covers them all
	}
}

func (c *Cluster) unsubscribe() {
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
	c.subs = nil
	if c.freeSub != nil {
		_ = c.freeSub.Unsubscribe()
		c.freeSub = nil
	}
}

func (c *Cluster) deliverEntry(e *channels.Entry) {
	if c.closed.Load() || c.deliver == nil {
		return
	}
	c.deliver(e)
}

// databaseHeader is the NATS header naming the sender's database.
const databaseHeader = "Feedmq-Database"

// foreign reports (and counts, and logs) a message of another database.
func (c *Cluster) foreign(msg *nats.Msg) bool {
	if c.cfg.Database == "" || msg.Header.Get(databaseHeader) == c.cfg.Database {
		return false
	}
	c.m.foreign.Add(1)
	c.log.Warn("cluster: message of another feedmq database dropped: clusters that share NATS servers need a cluster_name each",
		"subject", cutSubject(msg.Subject))
	return true
}

// cutSubject bounds a subject quoted in a log line.
func cutSubject(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// message is a NATS message on subject, with this node's database.
func (c *Cluster) message(subject string, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: data}
	if c.cfg.Database != "" {
		m.Header = nats.Header{databaseHeader: []string{c.cfg.Database}}
	}
	return m
}

func (c *Cluster) onEntry(msg *nats.Msg) {
	if c.foreign(msg) {
		return
	}
	e, err := DecodeEntry(msg.Data)
	if err == nil {
		var ch uint64
		if ch, err = channelFromSubject(msg.Subject); err == nil && ch != e.ChannelID {
			err = errors.New("entry message: channel_id differs from the subject's")
		}
	}
	if err != nil {
		c.m.malformed.Add(1)
		c.log.Warn("cluster: malformed entry message dropped", "bytes", len(msg.Data), "error", cutErr(err))
		return
	}
	if known := c.known.Load(); known != nil && !(*known)(e.ChannelID) {
		// No subscriber here can follow a channel this node does not
		// know, and holding its sequence would let whoever may publish
		// on the subjects grow memory one forged channel at a time. A
		// channel created elsewhere a moment ago is filled in from the
		// store once a later entry comes.
		c.m.unknown.Add(1)
		return
	}
	c.m.received.Add(1)
	c.seq.Offer(&e)
}

// SetKnown makes the node drop the other nodes' entries of channels for
// which known reports false (it must be quick: it runs for each entry).
// Without it every channel is taken.
func (c *Cluster) SetKnown(known func(channel uint64) bool) { c.known.Store(&known) }

func (c *Cluster) onNotice(msg *nats.Msg) {
	if c.foreign(msg) {
		return
	}
	n, err := DecodeNotice(msg.Data)
	if err != nil {
		c.m.malformed.Add(1)
		c.log.Warn("cluster: malformed connect notice dropped", "bytes", len(msg.Data), "error", cutErr(err))
		return
	}
	c.m.notices.Add(1)
	if n.Node == c.cfg.Node || c.takeover == nil {
		return
	}
	if c.takeover(n.ClientID, n.At, n.Node > c.cfg.Node) {
		c.m.takeovers.Add(1)
	}
}

// cutErr bounds an error quoting outside input in a log line.
func cutErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Published hands the cluster an entry this node committed: it is
// delivered here through the sequencer and sent to the other nodes. The
// send does not wait for NATS; a failed one is counted, and the other
// nodes fill the entry in from the store.
func (c *Cluster) Published(e *channels.Entry) {
	if c.closed.Load() {
		return
	}
	c.seq.OfferLocal(e)
	if err := c.nc.PublishMsg(c.message(entriesSubject(c.cfg.Name, e.ChannelID), e.AppendJSON(make([]byte, 0, 384)))); err != nil {
		c.m.publishErrors.Add(1)
		return
	}
	c.m.published.Add(1)
}

// Connected tells the other nodes that a client connected here at at, so
// that they close an older connection with the same client ID (MQTT
// allows one).
func (c *Cluster) Connected(clientID string, at time.Time) {
	if c.closed.Load() {
		return
	}
	n := Notice{ClientID: clientID, Node: c.cfg.Node, At: at.UTC().Round(0)}
	if err := c.nc.PublishMsg(c.message(connectSubject(c.cfg.Name), encodeNotice(n))); err != nil {
		c.m.publishErrors.Add(1)
	}
}

// Reset restarts a channel's sequence: call it when the channel is
// cleared or deleted. The clear's notice comes from the database, the new
// feed's entries over NATS: entries that came first were dropped as
// delivered (the old feed had their ids), so the store is read for them.
func (c *Cluster) Reset(channel uint64) {
	c.seq.Reset(channel)
	go c.catchUp()
}

// Delivered returns every channel's highest entry id delivered here (see
// Sequencer.Delivered).
func (c *Cluster) Delivered() map[uint64]uint64 { return c.seq.Delivered() }

// SetMonitor makes m's state part of Metrics.
func (c *Cluster) SetMonitor(m *Monitor) { c.monitor.Store(m) }

// Metrics returns the cluster layer's counters and state.
func (c *Cluster) Metrics() Metrics {
	s := c.m.snapshot()
	s.NATSConnected = c.nc.IsConnected()
	if m := c.monitor.Load(); m != nil {
		s.FailClosed = m.FailClosed()
		s.NodesSeen = len(m.Nodes())
	}
	return s
}

// Close stops receiving and closes the NATS connection; what was
// published is flushed first (bounded).
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	c.unsubscribe()
	_ = c.nc.FlushTimeout(time.Second)
	c.nc.Close()
	return nil
}
