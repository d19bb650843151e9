package cluster

import (
	"context"
	"sync"
	"time"
)

// NodeStatus is what a node last reported about itself.
type NodeStatus struct {
	Node   string
	Status string // StatusOK, StatusFailClosed, or why it is misconfigured
	Seen   time.Time
}

// Node states a Monitor reports.
const (
	StatusOK         = "ok"
	StatusFailClosed = "fail-closed"
)

// Heartbeats is the shared record of live nodes (a table in the shared
// database). Times are the database's, so nodes' clocks need not agree.
type Heartbeats interface {
	// Beat records that node is alive now with status.
	Beat(ctx context.Context, node, status string) error
	// Live returns the nodes that beat within the last window.
	Live(ctx context.Context, window time.Duration) ([]NodeStatus, error)
}

// Defaults of the Monitor.
const (
	DefaultBeatInterval = 5 * time.Second
	// DefaultFailAfter: a node that cannot confirm its state for this
	// long closes its connections, so that a credential revoked during a
	// partition does not stay usable, and the balancer moves devices to
	// nodes that can.
	DefaultFailAfter = 30 * time.Second
)

// MonitorOptions configures a Monitor; zero values take the defaults.
type MonitorOptions struct {
	Node      string
	Beats     Heartbeats
	Interval  time.Duration
	FailAfter time.Duration
	// Window is how recent a beat must be to count a node live. Default
	// three intervals.
	Window time.Duration
	Clock  Clock
	// Check is a further confirmation each round (the admin state's
	// version); nil: the beat alone.
	Check func(context.Context) error
	// OnFailClosed runs (in its own goroutine) when nothing was confirmed
	// for FailAfter; OnRecovered when a confirmation comes after that.
	OnFailClosed, OnRecovered func()
}

// Monitor beats for this node and watches that it can still confirm its
// state: it fails closed after FailAfter without a confirmation, and
// opens again at the next one.
type Monitor struct {
	o MonitorOptions

	mu       sync.Mutex
	gen      uint64  // bumped by every confirmation: an older deadline is void
	deadline Stopper // fires FailAfter after the last confirmation
	next     Stopper // the next round
	failed   bool
	stopped  bool
	nodes    []NodeStatus

	// report serialises the callbacks; reported is the state they were
	// last told. Each caller tells the state as it is when its turn
	// comes, so a callback delayed behind a newer change cannot undo it.
	report   sync.Mutex
	reported bool
}

// tell calls OnFailClosed or OnRecovered if the state differs from what
// they were last told.
func (m *Monitor) tell() {
	m.report.Lock()
	defer m.report.Unlock()
	m.mu.Lock()
	failed, stopped := m.failed, m.stopped
	m.mu.Unlock()
	if stopped || failed == m.reported {
		return
	}
	m.reported = failed
	if f := map[bool]func(){true: m.o.OnFailClosed, false: m.o.OnRecovered}[failed]; f != nil {
		f()
	}
}

// StartMonitor makes the first round before it returns (bounded by the
// interval), then one every interval. The countdown starts now: the
// caller has just reached the database to get this far.
func StartMonitor(o MonitorOptions) *Monitor {
	if o.Interval <= 0 {
		o.Interval = DefaultBeatInterval
	}
	if o.FailAfter <= 0 {
		o.FailAfter = DefaultFailAfter
	}
	if o.Window <= 0 {
		o.Window = 3 * o.Interval
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	m := &Monitor{o: o}
	m.mu.Lock()
	m.armDeadline()
	m.mu.Unlock()
	m.round()
	return m
}

// armDeadline restarts the fail-closed countdown; the caller holds mu.
func (m *Monitor) armDeadline() {
	m.gen++
	if m.deadline != nil {
		m.deadline.Stop()
	}
	gen := m.gen
	m.deadline = m.o.Clock.AfterFunc(m.o.FailAfter, func() { m.expire(gen) })
}

func (m *Monitor) expire(gen uint64) {
	m.mu.Lock()
	if m.gen != gen || m.failed || m.stopped {
		m.mu.Unlock()
		return
	}
	m.failed = true
	m.mu.Unlock()
	m.tell()
}

// round beats, checks, counts the live nodes and schedules the next
// round. A beat is bounded by the interval so a hung database cannot
// stop the rounds; the deadline runs on its own timer anyway.
func (m *Monitor) round() {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	status := StatusOK
	if m.failed {
		status = StatusFailClosed
	}
	m.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), m.o.Interval)
	err := m.o.Beats.Beat(ctx, m.o.Node, status)
	if err == nil && m.o.Check != nil {
		err = m.o.Check(ctx)
	}
	var live []NodeStatus
	if err == nil {
		live, err = m.o.Beats.Live(ctx, m.o.Window)
	}
	cancel()

	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	if err == nil {
		m.nodes = live
		m.armDeadline()
		m.failed = false
	}
	m.next = m.o.Clock.AfterFunc(m.o.Interval, m.round)
	m.mu.Unlock()
	m.tell()
}

// FailClosed reports whether the node is failed closed now.
func (m *Monitor) FailClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// Nodes returns the live nodes of the last successful round.
func (m *Monitor) Nodes() []NodeStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]NodeStatus(nil), m.nodes...)
}

// Stop ends the rounds and the countdown.
func (m *Monitor) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	for _, t := range []Stopper{m.deadline, m.next} {
		if t != nil {
			t.Stop()
		}
	}
}
