package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/feedmq/feedmq/channels"
)

// startNATS starts n NATS servers routed to each other on 127.0.0.1 random
// ports, in this process, and waits until every route is up.
func startNATS(t *testing.T, n int) []*natsserver.Server {
	t.Helper()
	var servers []*natsserver.Server
	var routes []string
	for i := range n {
		s := startNATSServer(t, i+1, -1, -1, routes)
		servers = append(servers, s)
		routes = append(routes, "nats://"+s.ClusterAddr().String())
	}
	waitFor(t, "NATS routes", func() bool {
		for _, s := range servers {
			if s.NumRemotes() != n-1 {
				return false
			}
		}
		return true
	})
	return servers
}

// startNATSServer starts server i on the given ports (-1: any), routed
// to routes.
func startNATSServer(t *testing.T, i, port, clusterPort int, routes []string) *natsserver.Server {
	t.Helper()
	o := &natsserver.Options{
		ServerName: fmt.Sprintf("n%d", i),
		Host:       "127.0.0.1", Port: port,
		NoLog: true, NoSigs: true,
		Cluster: natsserver.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: clusterPort},
	}
	if len(routes) > 0 {
		o.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
	}
	s, err := natsserver.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("NATS server %d did not start", i)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// sharedStore is the database the nodes share: commits are serialized
// and numbered as the real store does.
type sharedStore struct {
	*fakeStore
	commitMu sync.Mutex
}

// commit stores one entry of channel and hands it to node, as the broker
// does after its commit.
func (s *sharedStore) commit(node *Cluster, channel uint64) channels.Entry {
	s.commitMu.Lock()
	e := s.add(channel, 1)[0]
	s.commitMu.Unlock()
	node.Published(&e)
	return e
}

type testNode struct {
	c    *Cluster
	logs *syncBuffer
	rec  *recorder
	mu   sync.Mutex
	took []string // client IDs takeover was called with
	held string   // the client ID takeover reports as connected here
	ats  []time.Time
	ties []bool
}

func (n *testNode) takeover(id string, at time.Time, winsTie bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.took = append(n.took, id)
	n.ats, n.ties = append(n.ats, at), append(n.ties, winsTie)
	return id == n.held
}

func (n *testNode) tookOver() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.took)
}

// startNode opens and attaches a cluster instance on the given servers.
func startNode(t *testing.T, name string, st Store, urls string, opts ...nats.Option) *testNode {
	t.Helper()
	return startNodeConfig(t, Config{URLs: urls, Name: "t1", Node: name, Store: st, NATSOptions: opts})
}

// startNodeConfig opens cfg, logging to the node's buffer, and attaches it.
func startNodeConfig(t *testing.T, cfg Config) *testNode {
	t.Helper()
	n := &testNode{rec: newRecorder(), logs: new(syncBuffer)}
	cfg.Logger = slog.New(slog.NewTextHandler(n.logs, nil))
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Attach(n.rec.deliver, n.takeover); err != nil {
		t.Fatal(err)
	}
	n.c = c
	return n
}

// waitSubscribed waits until every server knows of nodes subscribers
// of the cluster's subjects (its own client's and one per route), so that
// a publish anywhere reaches every node.
func waitSubscribed(t *testing.T, servers []*natsserver.Server, nodes int) {
	t.Helper()
	waitFor(t, "subscriptions known to every server", func() bool {
		for _, s := range servers {
			acc := s.GlobalAccount()
			if acc.Interest(entriesSubject("t1", 1)) != nodes || acc.Interest(connectSubject("t1")) != nodes {
				return false
			}
		}
		return true
	})
}

func TestClusterExchangesEntries(t *testing.T) {
	servers := startNATS(t, 3)
	st := &sharedStore{fakeStore: newFakeStore()}
	st.add(2, 7) // a channel with entries before the nodes start
	var nodes []*testNode
	for i, s := range servers {
		nodes = append(nodes, startNode(t, fmt.Sprintf("node%d", i+1), st, s.ClientURL()))
	}
	waitSubscribed(t, servers, 3)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, n := range nodes {
			for _, ch := range []uint64{1, 2} {
				c := n.c.seq.channel(ch)
				c.mu.Lock()
				t.Logf("node %d channel %d: last %d, %d held up to %d, timer %v, filling %v; %+v",
					i+1, ch, c.last, len(c.pending), c.high, c.timer != nil, c.filling, n.c.Metrics())
				c.mu.Unlock()
			}
		}
	})

	// Three nodes write to one channel at once, and to channel 2, which
	// every node follows from its last id at start (7).
	const per = 300
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				ch := uint64(1)
				if i%10 == 0 {
					ch = 2
				}
				st.commit(n.c, ch)
			}
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		waitFor(t, fmt.Sprintf("node %d got every entry", i+1), func() bool {
			return len(n.rec.ids(1)) >= 3*per*9/10 && len(n.rec.ids(2)) >= 3*per/10
		})
		if got := n.rec.ids(1); !slices.Equal(got, seq(1, 3*per*9/10)) {
			t.Errorf("node %d: channel 1 delivered %d entries, not 1..%d in order: %v", i+1, len(got), 3*per*9/10, got)
		}
		if got := n.rec.ids(2); !slices.Equal(got, seq(8, 7+3*per/10)) {
			t.Errorf("node %d: channel 2 delivered %v, want 8..%d", i+1, got, 7+3*per/10)
		}
		m := n.c.Metrics()
		if !m.NATSConnected || m.Published != 3*per/3 || m.Received == 0 || m.Malformed != 0 {
			t.Errorf("node %d metrics %+v: want connected, %d published, some received", i+1, m, per)
		}
		// The entry content crossed intact.
		for _, e := range n.rec.got[1] {
			if v, _ := e.Field(1); v != "v"+itoa(e.ID) || e.CreatedAt.Unix() != 1_700_000_000 {
				t.Fatalf("node %d: entry %d arrived as %+v", i+1, e.ID, e)
			}
		}
	}
}

func TestClusterNATSServerStoppedMidStream(t *testing.T) {
	servers := startNATS(t, 3)
	st := &sharedStore{fakeStore: newFakeStore()}
	n1 := startNode(t, "node1", st, servers[0].ClientURL())
	n2 := startNode(t, "node2", st, servers[1].ClientURL())
	// Node 3 knows server 3 only: while it is down, nothing reaches node 3.
	n3 := startNode(t, "node3", st, servers[2].ClientURL(), nats.IgnoreDiscoveredServers())
	waitSubscribed(t, servers, 3)

	for range 20 {
		st.commit(n1.c, 1)
	}
	waitFor(t, "node 3 got the first entries", func() bool { return len(n3.rec.ids(1)) == 20 })

	clientPort, clusterPort := servers[2].Addr().(*net.TCPAddr).Port, servers[2].ClusterAddr().Port
	servers[2].Shutdown()
	waitFor(t, "node 3 to notice", func() bool { return !n3.c.Metrics().NATSConnected })
	for range 30 { // lost for node 3: nobody carries them to it
		st.commit(n1.c, 1)
	}
	// Server 3 comes back on its address; node 3 reconnects and
	// subscribes again.
	servers[2] = startNATSServer(t, 3, clientPort, clusterPort,
		[]string{"nats://" + servers[0].ClusterAddr().String(), "nats://" + servers[1].ClusterAddr().String()})
	waitFor(t, "node 3 to reconnect", func() bool { return n3.c.Metrics().NATSConnected })
	// No entry follows yet: node 3 catches up by itself on reconnecting.
	waitFor(t, "node 3 caught up", func() bool { return len(n3.rec.ids(1)) >= 50 })
	if got := n3.rec.ids(1); !slices.Equal(got, seq(1, 50)) {
		t.Errorf("node 3 delivered %v, want 1..50 in order", got)
	}
	waitFor(t, "NATS routes", func() bool { return servers[2].NumRemotes() == 2 })
	waitSubscribed(t, servers, 3)
	for range 5 {
		st.commit(n2.c, 1)
	}
	for i, n := range []*testNode{n1, n2, n3} {
		waitFor(t, fmt.Sprintf("node %d got all 55 entries", i+1), func() bool { return len(n.rec.ids(1)) >= 55 })
		if got := n.rec.ids(1); !slices.Equal(got, seq(1, 55)) {
			t.Errorf("node %d delivered %v, want 1..55 in order", i+1, got)
		}
	}
	m := n3.c.Metrics()
	if m.CatchUps == 0 || m.GapFills == 0 || m.Filled < 30 {
		t.Errorf("node 3 metrics %+v: want the 30 lost entries filled from the store after a catch-up", m)
	}
}

func TestClusterTakeoverNotices(t *testing.T) {
	servers := startNATS(t, 3)
	st := &sharedStore{fakeStore: newFakeStore()}
	var nodes []*testNode
	for i, s := range servers {
		nodes = append(nodes, startNode(t, fmt.Sprintf("node%d", i+1), st, s.ClientURL()))
	}
	nodes[1].held = "sensor-7"
	waitSubscribed(t, servers, 3)

	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	nodes[0].c.Connected("sensor-7", at)
	for _, i := range []int{1, 2} {
		waitFor(t, fmt.Sprintf("node %d told of the connect", i+1), func() bool {
			return slices.Equal(nodes[i].tookOver(), []string{"sensor-7"})
		})
		// The time crosses to the nanosecond; node1 sorts before both
		// names, so it loses a tie.
		nodes[i].mu.Lock()
		if !nodes[i].ats[0].Equal(at) || nodes[i].ties[0] {
			t.Errorf("node %d told connected at %v, wins tie %v; want %v, false", i+1, nodes[i].ats[0], nodes[i].ties[0], at)
		}
		nodes[i].mu.Unlock()
	}
	if m := nodes[1].c.Metrics(); m.Takeovers != 1 || m.Notices != 1 {
		t.Errorf("node 2 metrics %+v: want one notice that took a connection over", m)
	}
	if m := nodes[2].c.Metrics(); m.Takeovers != 0 || m.Notices != 1 {
		t.Errorf("node 3 metrics %+v: want one notice and no takeover", m)
	}
	// The node the client connected to does not close its own connection:
	// a later notice from node 3 reaches node 1 but node 1 never saw its own.
	nodes[2].c.Connected("other", time.Now())
	waitFor(t, "node 1 told of node 3's connect", func() bool {
		return slices.Equal(nodes[0].tookOver(), []string{"other"})
	})
}

// Messages on the cluster's subjects that are not what a node sends are
// counted and dropped; they deliver nothing and close nothing.
func TestClusterHostileMessages(t *testing.T) {
	servers := startNATS(t, 1)
	st := &sharedStore{fakeStore: newFakeStore()}
	n := startNode(t, "node1", st, servers[0].ClientURL())
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	good := `{"channel_id":1,"created_at":"2024-01-02T03:04:05Z","entry_id":1,"field1":"1"}`
	bad := []struct{ subject, msg string }{
		{"feedmq.t1.entries.1", ""},
		{"feedmq.t1.entries.1", "{"},
		{"feedmq.t1.entries.1", `{"channel_id":1,"created_at":"2024-01-02T03:04:05Z","entry_id":0}`},
		{"feedmq.t1.entries.1", `{"channel_id":0,"created_at":"2024-01-02T03:04:05Z","entry_id":1}`},
		{"feedmq.t1.entries.1", `{"channel_id":1,"created_at":"yesterday","entry_id":1}`},
		{"feedmq.t1.entries.1", `{"channel_id":1,"created_at":"2024-01-02T03:04:05Z","entry_id":1,"field1":5}`},
		{"feedmq.t1.entries.2", good}, // subject and body disagree
		{"feedmq.t1.entries.x", good},
		{"feedmq.t1.entries.1", `{"channel_id":1,"created_at":"2024-01-02T03:04:05Z","entry_id":1,"field1":"` + strings.Repeat("a", MaxMessage) + `"}`},
		{"feedmq.t1.connect", `{"client_id":"","node":"x"}`},
		{"feedmq.t1.connect", `{"client_id":"a","node":"bad.node"}`},
		{"feedmq.t1.connect", `[1,2]`},
	}
	for _, b := range bad {
		if err := nc.Publish(b.subject, []byte(b.msg)); err != nil {
			t.Fatal(err)
		}
	}
	// A good message after them shows they were all processed.
	if err := nc.Publish("feedmq.t1.entries.1", []byte(good)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good entry", func() bool { return len(n.rec.ids(1)) == 1 })
	// The notices have a subscription of their own: the good entry does
	// not show that they were processed.
	waitFor(t, "every bad message counted", func() bool { return n.c.Metrics().Malformed >= uint64(len(bad)) })
	m := n.c.Metrics()
	if m.Malformed != uint64(len(bad)) || m.Received != 1 || len(n.tookOver()) != 0 {
		t.Errorf("metrics %+v, takeovers %v: want %d malformed, 1 received, no takeover", m, n.tookOver(), len(bad))
	}
	if v, _ := n.rec.got[1][0].Field(1); v != "1" {
		t.Errorf("field1 %q, want 1", v)
	}
	// Each is logged, briefly: the oversized one is not copied in.
	lines := strings.Split(strings.TrimSpace(n.logs.String()), "\n")
	if len(lines) != len(bad) {
		t.Errorf("%d log lines, want %d:\n%s", len(lines), len(bad), n.logs.String())
	}
	for _, l := range lines {
		if len(l) > 500 {
			t.Errorf("log line of %d bytes: %.200s...", len(l), l)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestOpenRefusesBadConfig(t *testing.T) {
	st := newFakeStore()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{URLs: "nats://127.0.0.1:1", Name: "", Node: "a", Store: st}, "cluster: name"},
		{Config{URLs: "nats://127.0.0.1:1", Name: "a.b", Node: "a", Store: st}, "cluster: name"},
		{Config{URLs: "nats://127.0.0.1:1", Name: "a>", Node: "a", Store: st}, "cluster: name"},
		{Config{URLs: "nats://127.0.0.1:1", Name: strings.Repeat("a", 65), Node: "a", Store: st}, "longer than"},
		{Config{URLs: "nats://127.0.0.1:1", Name: "a", Node: "n *", Store: st}, "cluster: node"},
		{Config{URLs: " ", Name: "a", Node: "a", Store: st}, "no NATS server"},
		{Config{URLs: "nats://127.0.0.1:1", Name: "a", Node: "a"}, "shared store"},
		{Config{URLs: "nats://127.0.0.1:1", Name: "a", Node: "a", Store: st, ConnectTimeout: time.Second}, "connect to NATS"},
	} {
		_, err := Open(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q, %q): %v, want an error with %q", cut(tc.cfg.Name), tc.cfg.Node, err, tc.want)
		}
	}
}

// A node's metrics show its monitor's state: nodes seen, fail-closed.
func TestClusterMetricsShowMonitor(t *testing.T) {
	servers := startNATS(t, 1)
	n := startNode(t, "node1", &sharedStore{fakeStore: newFakeStore()}, servers[0].ClientURL())
	if m := n.c.Metrics(); !m.NATSConnected || m.NodesSeen != 0 || m.FailClosed {
		t.Fatalf("metrics without a monitor: %+v", m)
	}
	clk := newFakeClock()
	beats := &memBeats{clk: clk, rows: map[string]NodeStatus{}}
	beats.rows["node2"] = NodeStatus{Node: "node2", Status: StatusOK, Seen: clk.Now()}
	mon := StartMonitor(MonitorOptions{Node: "node1", Beats: beats, Clock: clk})
	defer mon.Stop()
	n.c.SetMonitor(mon)
	if m := n.c.Metrics(); m.NodesSeen != 2 || m.FailClosed {
		t.Fatalf("metrics %+v: want 2 nodes seen, open", m)
	}
	beats.setDown(true)
	clk.Advance(DefaultFailAfter)
	if m := n.c.Metrics(); !m.FailClosed {
		t.Fatalf("metrics %+v: want failed closed", m)
	}
	servers[0].Shutdown()
	waitFor(t, "NATS down in the metrics", func() bool { return !n.c.Metrics().NATSConnected })
}
