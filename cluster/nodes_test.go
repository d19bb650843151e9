package cluster

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memBeats is a heartbeat table in memory, on the test's clock.
type memBeats struct {
	clk  *fakeClock
	mu   sync.Mutex
	rows map[string]NodeStatus
	down bool // every call fails
}

func (b *memBeats) setDown(down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = down
}

func (b *memBeats) Beat(_ context.Context, node, status string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return errDown
	}
	b.rows[node] = NodeStatus{Node: node, Status: status, Seen: b.clk.Now()}
	return nil
}

func (b *memBeats) Live(_ context.Context, window time.Duration) ([]NodeStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return nil, errDown
	}
	var live []NodeStatus
	for _, r := range b.rows {
		if b.clk.Now().Sub(r.Seen) <= window {
			live = append(live, r)
		}
	}
	slices.SortFunc(live, func(a, b NodeStatus) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	return live, nil
}

type monitorProbe struct {
	failed, recovered atomic.Int32
}

func startProbe(node string, beats Heartbeats, clk Clock, check func(context.Context) error) (*Monitor, *monitorProbe) {
	p := new(monitorProbe)
	m := StartMonitor(MonitorOptions{Node: node, Beats: beats, Clock: clk, Check: check,
		OnFailClosed: func() { p.failed.Add(1) }, OnRecovered: func() { p.recovered.Add(1) }})
	return m, p
}

func names(ns []NodeStatus) []string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Node+":"+n.Status)
	}
	return s
}

func TestMonitorHealthyNodesSeeEachOther(t *testing.T) {
	clk := newFakeClock()
	beats := &memBeats{clk: clk, rows: make(map[string]NodeStatus)}
	m1, p1 := startProbe("n1", beats, clk, nil)
	defer m1.Stop()
	m2, _ := startProbe("n2", beats, clk, nil)
	for range 60 { // five minutes
		clk.Advance(5 * time.Second)
	}
	if m1.FailClosed() || p1.failed.Load() != 0 {
		t.Fatal("a node that confirms every round failed closed")
	}
	if got := names(m1.Nodes()); !slices.Equal(got, []string{"n1:ok", "n2:ok"}) {
		t.Errorf("nodes seen %v", got)
	}
	// A node that stops beating drops out of the live list after the
	// window.
	m2.Stop()
	for range 4 {
		clk.Advance(5 * time.Second)
	}
	if got := names(m1.Nodes()); !slices.Equal(got, []string{"n1:ok"}) {
		t.Errorf("nodes seen after n2 stopped: %v", got)
	}
}

func TestMonitorFailsClosedAfter30sWithoutConfirmation(t *testing.T) {
	clk := newFakeClock()
	beats := &memBeats{clk: clk, rows: make(map[string]NodeStatus)}
	m, p := startProbe("n1", beats, clk, nil)
	defer m.Stop()
	clk.Advance(12 * time.Second) // confirmed at 10 s
	beats.setDown(true)
	clk.Advance(27 * time.Second) // 39 s: 29 s since the last confirmation
	if m.FailClosed() || p.failed.Load() != 0 {
		t.Fatal("failed closed before 30 s without confirmation")
	}
	clk.Advance(time.Second)
	if !m.FailClosed() || p.failed.Load() != 1 {
		t.Fatalf("not failed closed 30 s after the last confirmation (callbacks %d)", p.failed.Load())
	}
	clk.Advance(time.Hour)
	if p.failed.Load() != 1 || p.recovered.Load() != 0 {
		t.Errorf("callbacks: %d fail, %d recover; want one fail while down", p.failed.Load(), p.recovered.Load())
	}
	// The database is back: the next round opens the node again, and its
	// row said fail-closed never (it could not be written while down).
	beats.setDown(false)
	clk.Advance(5 * time.Second)
	if m.FailClosed() || p.recovered.Load() != 1 {
		t.Fatalf("not recovered after a confirmation (recover callbacks %d)", p.recovered.Load())
	}
	clk.Advance(5 * time.Second)
	if got := names(m.Nodes()); !slices.Equal(got, []string{"n1:ok"}) {
		t.Errorf("nodes %v", got)
	}
	// And the countdown starts again from that confirmation.
	beats.setDown(true)
	clk.Advance(25 * time.Second)
	if m.FailClosed() {
		t.Error("failed closed before 30 s")
	}
	clk.Advance(10 * time.Second)
	if !m.FailClosed() || p.failed.Load() != 2 {
		t.Error("did not fail closed a second time")
	}
}

// A beat that works does not confirm the node when its own check (the
// admin state's version) fails; a failed-closed node reports so in its
// row while it can still write it.
func TestMonitorCheckMustPassToo(t *testing.T) {
	clk := newFakeClock()
	beats := &memBeats{clk: clk, rows: make(map[string]NodeStatus)}
	var bad atomic.Bool
	m, p := startProbe("n1", beats, clk, func(context.Context) error {
		if bad.Load() {
			return errDown
		}
		return nil
	})
	defer m.Stop()
	bad.Store(true)
	clk.Advance(30 * time.Second)
	if !m.FailClosed() || p.failed.Load() != 1 {
		t.Fatal("not failed closed while the check fails")
	}
	clk.Advance(5 * time.Second)
	beats.mu.Lock()
	row := beats.rows["n1"]
	beats.mu.Unlock()
	if row.Status != StatusFailClosed {
		t.Errorf("row status %q, want %q", row.Status, StatusFailClosed)
	}
	bad.Store(false)
	clk.Advance(5 * time.Second)
	if m.FailClosed() || p.recovered.Load() != 1 {
		t.Error("not recovered once the check passes")
	}
}

func TestMonitorStop(t *testing.T) {
	clk := newFakeClock()
	beats := &memBeats{clk: clk, rows: make(map[string]NodeStatus)}
	m, p := startProbe("n1", beats, clk, nil)
	m.Stop()
	beats.setDown(true)
	clk.Advance(time.Hour)
	if p.failed.Load() != 0 || clk.pending() != 0 {
		t.Errorf("a stopped monitor still runs: %d fail callbacks, %d timers", p.failed.Load(), clk.pending())
	}
}

// A confirmation racing with the fail-closed deadline: whatever order
// the callbacks' goroutines run in, the last one called tells the state
// the monitor ends in, or the node stays closed while it reports open.
func TestMonitorRecoveryRacingFailClosed(t *testing.T) {
	clk := newFakeClock()
	beats := &memBeats{clk: clk, rows: make(map[string]NodeStatus), down: true}
	var (
		mu     sync.Mutex
		events []string
	)
	entered, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	m := StartMonitor(MonitorOptions{Node: "a", Beats: beats, Clock: clk,
		OnFailClosed: func() {
			// The closing goroutine is slow to act.
			once.Do(func() { close(entered); <-hold })
			mu.Lock()
			events = append(events, "closed")
			mu.Unlock()
		},
		OnRecovered: func() {
			mu.Lock()
			events = append(events, "open")
			mu.Unlock()
		}})
	defer m.Stop()
	advanced := make(chan struct{})
	go func() { clk.Advance(DefaultFailAfter); close(advanced) }()
	<-entered
	beats.setDown(false)
	rounded := make(chan struct{})
	go func() { m.round(); close(rounded) }()
	select {
	case <-rounded:
	case <-time.After(time.Second): // blocked behind the closing callback: fine
	}
	close(hold)
	<-rounded
	<-advanced
	mu.Lock()
	defer mu.Unlock()
	if m.FailClosed() || len(events) == 0 || events[len(events)-1] != "open" {
		t.Fatalf("monitor fail-closed %v, callbacks %v: the last must be open", m.FailClosed(), events)
	}
}
