package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// clusterScenariosEnv turns on the long cluster scenarios (make
// test-cluster sets it); without it only the quick cross-node smoke test
// runs.
const clusterScenariosEnv = "FEEDMQ_CLUSTER_SCENARIOS"

func longClusterScenario(t *testing.T) {
	t.Helper()
	if os.Getenv(clusterScenariosEnv) == "" {
		t.Skipf("long cluster scenario: `make test-cluster` runs it (%s=1)", clusterScenariosEnv)
	}
}

// requireTool skips a test when an outside client is missing, except
// where FEEDMQ_REQUIRE_CLIENTS says the machine must have it.
func requireTool(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("FEEDMQ_REQUIRE_CLIENTS") != "" {
				t.Fatalf("%s not installed (make test-deps installs it)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

// natsServer is one in-process NATS server on fixed ports, so that a
// stopped one comes back where the nodes and its routes look for it.
type natsServer struct {
	opts *natsserver.Options
	srv  *natsserver.Server
}

// natsCluster is n NATS servers routed to each other on 127.0.0.1.
type natsCluster struct {
	servers []*natsServer
}

// startNATSCluster starts n routed NATS servers in this process and waits
// until every route is up. Every server names every other as a route:
// a restarted one is found again whichever it is.
func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{}
	ports := make([][2]int, n)
	for i := range ports {
		ports[i] = [2]int{clusterFreePort(t), clusterFreePort(t)}
	}
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[j][1]))
			}
		}
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("nats%d", i+1),
			Host:       "127.0.0.1", Port: ports[i][0],
			NoLog: true, NoSigs: true,
			// NoAdvertise: a client knows the servers its URLs name, and
			// does not learn the others from the one it is connected to
			// (a node given one server is cut off while it is down).
			Cluster: natsserver.ClusterOpts{Name: "feedmq-e2e", Host: "127.0.0.1", Port: ports[i][1], NoAdvertise: true},
			Routes:  natsserver.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.servers = append(c.servers, &natsServer{opts: o})
		c.start(t, i)
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s.srv != nil {
				s.srv.Shutdown()
			}
		}
	})
	c.waitRoutes(t)
	return c
}

// clusterFreePort returns a loopback port free a moment ago.
func clusterFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start starts (or starts again) server i on its ports.
func (c *natsCluster) start(t *testing.T, i int) {
	t.Helper()
	s := c.servers[i]
	srv, err := natsserver.NewServer(s.opts.Clone())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("NATS server %d did not start", i+1)
	}
	s.srv = srv
}

// stop shuts server i down; its clients reconnect to the others.
func (c *natsCluster) stop(i int) {
	c.servers[i].srv.Shutdown()
	c.servers[i].srv.WaitForShutdown()
	c.servers[i].srv = nil
}

// waitRoutes waits until every running server is routed to every other
// running one.
func (c *natsCluster) waitRoutes(t *testing.T) {
	t.Helper()
	up := 0
	for _, s := range c.servers {
		if s.srv != nil {
			up++
		}
	}
	waitUntil(t, 20*time.Second, "NATS routes", func() bool {
		for _, s := range c.servers {
			if s.srv != nil && s.srv.NumRemotes() != up-1 {
				return false
			}
		}
		return true
	})
}

// urls is the value of a node's cluster key: servers i... (none: every
// server).
func (c *natsCluster) urls(i ...int) string {
	if len(i) == 0 {
		for j := range c.servers {
			i = append(i, j)
		}
	}
	var u []string
	for _, j := range i {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", c.servers[j].opts.Port))
	}
	return strings.Join(u, ",")
}

// clusterNode is one `feedmq serve` of the cluster.
type clusterNode struct {
	name string
	dir  string // data_dir: the admin socket
	conf string // the node's configuration file
	b    *build

	mu  sync.Mutex
	srv *server // nil while the node is down
	all []*server
}

// clusterHarness is three feedmq nodes on one PostgreSQL database and
// three routed NATS servers, each node with its own data directory and
// loopback listeners on port 0.
type clusterHarness struct {
	db    string // the database's URL
	nats  *natsCluster
	nodes []*clusterNode
	b     *build
}

// newClusterHarness starts the database, the NATS servers and three
// nodes n1..n3 of build b, each given every NATS server.
func newClusterHarness(t *testing.T, b *build) *clusterHarness {
	t.Helper()
	return newClusterHarnessWith(t, b, false)
}

// newClusterHarnessWith is newClusterHarness; with natsPerNode, node i
// is given NATS server i only, as with a NATS server beside each node.
func newClusterHarnessWith(t *testing.T, b *build, natsPerNode bool) *clusterHarness {
	t.Helper()
	b.binary(t) // build before any server starts
	h := &clusterHarness{db: pgtest.New(t), b: b}
	h.nats = startNATSCluster(t, 3)
	for i := range 3 {
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(), b: b}
		n.conf = filepath.Join(n.dir, "feedmq.yaml")
		urls := h.nats.urls()
		if natsPerNode {
			urls = h.nats.urls(i)
		}
		// The subscribers of these tests read every entry as it comes;
		// the send queues are raised so that a moment without CPU on a
		// loaded machine does not drop deliveries, which is a property
		// of one node's queues (tested elsewhere), not of the cluster.
		conf := fmt.Sprintf(`data_dir: %q
storage: %q
cluster: %q
cluster_name: e2e
node_name: %s
send_queue_bytes: 33554432
send_queue_total: 134217728
`, n.dir, h.db, urls, n.name)
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		h.nodes = append(h.nodes, n)
		n.start(t)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range h.nodes {
			if m := n.clusterMetrics(); m != "" {
				t.Logf("node %s, cluster metrics:\n%s", n.name, m)
			}
			n.mu.Lock()
			for i, s := range n.all {
				t.Logf("node %s, run %d, log tail:\n%s", n.name, i+1, logTail(s.logs.String(), 6000))
			}
			n.mu.Unlock()
		}
	})
	return h
}

func logTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// start starts the node's serve process and waits for its listeners.
func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	s := startServeWith(t, n.b, n.dir, "--config", n.conf, "--mqtt", "127.0.0.1:0", "--ws", "off",
		"--http", "127.0.0.1:0", "--log-level", "info")
	n.mu.Lock()
	n.srv = s
	n.all = append(n.all, s)
	n.mu.Unlock()
}

// kill ends the node with SIGKILL, as a power cut would.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = s.wait()
}

// mqtt is the node's MQTT address, "" while it is down.
func (n *clusterNode) mqtt() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return ""
	}
	return n.srv.addr
}

// http is the node's HTTP address, "" while it is down.
func (n *clusterNode) http() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return ""
	}
	return n.srv.addrs["http"]
}

// clusterMetrics returns the node's feedmq_cluster_* lines of /metrics,
// for a failure's report; "" when the node is down or does not answer.
func (n *clusterNode) clusterMetrics() string {
	addr := n.http()
	if addr == "" {
		return ""
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "feedmq_cluster_") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// metric returns the value of one of the node's cluster metrics (a line
// "name value" of /metrics), and whether it was there.
func (n *clusterNode) metric(name string) (uint64, bool) {
	for _, l := range strings.Split(n.clusterMetrics(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var x uint64
			if _, err := fmt.Sscan(v, &x); err == nil {
				return x, true
			}
		}
	}
	return 0, false
}

// healthz returns the status code and body of the node's /healthz.
func (n *clusterNode) healthz() (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + n.http() + "/healthz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body), nil
}

// logs is everything every run of the node has logged.
func (n *clusterNode) logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for _, s := range n.all {
		b.WriteString(s.logs.String())
	}
	return b.String()
}

// targets returns the MQTT addresses of the running nodes, node first,
// then the others in turn, as a client behind a balancer that prefers
// one node would reach them.
func (h *clusterHarness) targets(first int) func() []string {
	return func() []string {
		var a []string
		for i := range h.nodes {
			if addr := h.nodes[(first+i)%len(h.nodes)].mqtt(); addr != "" {
				a = append(a, addr)
			}
		}
		return a
	}
}

// subscribeEveryNode subscribes readers[i] to channel ch on node i.
func (h *clusterHarness) subscribeEveryNode(t *testing.T, readers []auth.DeviceJSON, ch uint64) []*feedSubscriber {
	t.Helper()
	subs := make([]*feedSubscriber, len(readers))
	for i := range subs {
		subs[i] = subscribeFeed(t, "on "+h.nodes[i].name, h.nodes[i].mqtt(), readers[i], ch)
	}
	return subs
}

// publishUntilStopped starts one publisher per device, pubs[i] preferring
// node i and moving on to the others when it fails (8 in flight, values
// "p1-…", "p2-…"). stop ends them and waits for them; it may be called
// more than once, and runs at cleanup if the test ends first.
func (h *clusterHarness) publishUntilStopped(t *testing.T, pubs []auth.DeviceJSON, topic string, log *ackLog) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range pubs {
		p := &publisher{dev: pubs[i], topic: topic, prefix: fmt.Sprintf("p%d", i+1), window: 8, targets: h.targets(i), log: log}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(done, 0)
		}()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// publishOnEachNode has pubs[i] publish count values on node i alone
// (values prefix+"1-…" and so on, window in flight). wait returns when
// every publisher has sent and seen answered all of its values.
func (h *clusterHarness) publishOnEachNode(pubs []auth.DeviceJSON, topic, prefix string, window, count int, log *ackLog) (ps []*publisher, wait func()) {
	var wg sync.WaitGroup
	ps = make([]*publisher, len(pubs))
	for i := range ps {
		addr := h.nodes[i].mqtt()
		ps[i] = &publisher{dev: pubs[i], topic: topic, prefix: fmt.Sprintf("%s%d", prefix, i+1), window: window,
			targets: func() []string { return []string{addr} }, log: log}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps[i].run(nil, count)
		}()
	}
	return ps, wg.Wait
}

// cli runs an admin command through node i's admin socket (its data
// directory holds nothing else) and decodes its --json output into v.
// It returns when the command has.
func (h *clusterHarness) cli(t *testing.T, i int, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(h.b.binary(t), append([]string{"--data", h.nodes[i].dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("feedmq %s (node %s): %v\n%s", strings.Join(args, " "), h.nodes[i].name, err, stderr.String())
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("feedmq %s: bad JSON %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

type clusterChannel struct {
	ID       uint64 `json:"id"`
	WriteKey string `json:"write_api_key"`
	ReadKey  string `json:"read_api_key"`
}

// channel creates a channel through node i.
func (h *clusterHarness) channel(t *testing.T, i int, name string) clusterChannel {
	t.Helper()
	var ch clusterChannel
	h.cli(t, i, &ch, "channel", "create", "--name", name, "--json")
	return ch
}

// device creates a device through node i with a publish and subscribe
// grant on ch.
func (h *clusterHarness) device(t *testing.T, i int, name string, ch uint64) auth.DeviceJSON {
	t.Helper()
	var d auth.DeviceJSON
	h.cli(t, i, &d, "device", "create", "--name", name, "--channel", fmt.Sprint(ch), "--json")
	return d
}

// devices creates n devices named prefix1..prefixN through node 0.
func (h *clusterHarness) devices(t *testing.T, prefix string, n int, ch uint64) []auth.DeviceJSON {
	t.Helper()
	ds := make([]auth.DeviceJSON, n)
	for i := range ds {
		ds[i] = h.device(t, 0, fmt.Sprintf("%s%d", prefix, i+1), ch)
	}
	return ds
}

// connectDevice connects dev to addr with MQTT 3.1.1, keepalive 0 (the
// test client sends no pings). A device created through another node is
// known here once that node's change has reached this one, so a refused
// CONNECT is retried until the deadline.
func connectDevice(t *testing.T, addr string, dev auth.DeviceJSON, within time.Duration) *mqtttest.Conn {
	t.Helper()
	var last string
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		c, code, err := tryConnect(addr, dev.ClientID, dev.Username, dev.Password)
		if err == nil && code == 0 {
			return c
		}
		last = fmt.Sprintf("code %d, error %v", code, err)
		if time.Now().After(deadline) {
			t.Fatalf("device %s not accepted on %s within %v: %s", dev.Name, addr, within, last)
		}
	}
}

// tryConnect dials addr and sends one CONNECT; the connection is returned
// only when it was accepted.
func tryConnect(addr, clientID, user, pass string) (*mqtttest.Conn, byte, error) {
	c, err := mqtttest.Dial(addr)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	code, err := c.Connect(mqtttest.Connect{ClientID: clientID, Username: user, Password: pass, Clean: true})
	if err != nil || code != 0 {
		c.Close()
		return nil, code, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, 0, nil
}

// clusterEntry is the part of an entry's JSON the scenarios check.
type clusterEntry struct {
	EntryID uint64 `json:"entry_id"`
	Field1  string `json:"field1"`
}

// feedSubscriber reads a channel's subscribe topic on one connection and
// keeps every entry in the order it came.
type feedSubscriber struct {
	name string
	conn *mqtttest.Conn
	mu   sync.Mutex
	got  []clusterEntry
	err  error // why reading ended
	done chan struct{}
}

// subscribeFeed connects dev to addr and subscribes to channel ch's JSON
// entries; entries are read in the background until the test ends.
func subscribeFeed(t *testing.T, name, addr string, dev auth.DeviceJSON, ch uint64) *feedSubscriber {
	t.Helper()
	c := connectDevice(t, addr, dev, 10*time.Second)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if code, err := c.Subscribe(1, fmt.Sprintf("channels/%d/subscribe", ch)); err != nil || code != 0 {
		c.Close()
		t.Fatalf("subscriber %s: SUBACK code %d, %v", name, code, err)
	}
	_ = c.SetDeadline(time.Time{})
	s := &feedSubscriber{name: name, conn: c, done: make(chan struct{})}
	go s.read()
	t.Cleanup(func() {
		c.Close()
		<-s.done
	})
	return s
}

func (s *feedSubscriber) read() {
	defer close(s.done)
	for {
		_, payload, err := s.conn.ReadPublish()
		if err == nil {
			var e clusterEntry
			if err = json.Unmarshal(payload, &e); err != nil {
				err = fmt.Errorf("payload %.200q: %w", payload, err)
			} else {
				s.mu.Lock()
				s.got = append(s.got, e)
				s.mu.Unlock()
				continue
			}
		}
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		return
	}
}

func (s *feedSubscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// entries returns what has arrived so far and why reading ended, if it
// has.
func (s *feedSubscriber) entries() ([]clusterEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]clusterEntry(nil), s.got...), s.err
}

// waitInOrder waits until the subscriber has n entries and checks that
// they are entry ids 1..n in that order with the stored values of want
// (by id).
func (s *feedSubscriber) waitInOrder(t *testing.T, want map[uint64]string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.count() < n && time.Now().Before(deadline) {
		select {
		case <-s.done:
			deadline = time.Now() // reading ended: nothing more comes
		case <-time.After(20 * time.Millisecond):
		}
	}
	got, err := s.entries()
	if len(got) < n {
		t.Errorf("subscriber %s received %d of %d entries within %v (reading: %v)", s.name, len(got), n, within, err)
	}
	for i, e := range got {
		if e.EntryID != uint64(i+1) {
			var around []uint64
			for _, a := range got[max(0, i-5):min(len(got), i+15)] {
				around = append(around, a.EntryID)
			}
			t.Errorf("subscriber %s: delivery %d is entry %d, want %d (entries out of order, lost or repeated); deliveries %d on: %v",
				s.name, i+1, e.EntryID, i+1, max(0, i-5)+1, around)
			return
		}
		if v, ok := want[e.EntryID]; ok && v != e.Field1 {
			t.Errorf("subscriber %s: entry %d has field1 %q, stored %q", s.name, e.EntryID, e.Field1, v)
			return
		}
	}
	if len(got) > n {
		t.Errorf("subscriber %s received %d entries, want %d", s.name, len(got), n)
	}
}

// ackLog records the values whose PUBACK arrived.
type ackLog struct {
	mu    sync.Mutex
	acked map[string]bool
}

func newAckLog() *ackLog { return &ackLog{acked: map[string]bool{}} }

func (l *ackLog) add(v string) {
	l.mu.Lock()
	l.acked[v] = true
	l.mu.Unlock()
}

func (l *ackLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *ackLog) values() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]bool, len(l.acked))
	for v := range l.acked {
		m[v] = true
	}
	return m
}

// waitGrowth waits until at least n more values than from were acked.
func (l *ackLog) waitGrowth(t *testing.T, from, n int, within time.Duration, what string) {
	t.Helper()
	waitUntil(t, within, what, func() bool { return l.count() >= from+n })
}

// publisher sends unique QoS 1 values (field1=PREFIX-SEQ) to a channel,
// up to window unacknowledged at a time, over MQTT 3.1.1, where a failed
// publish ends the connection. A value is sent once and never again: an
// acknowledged one must be stored exactly once, an unacknowledged one at
// most once. When a connection fails, the publisher connects to the first
// target that accepts it, as a device behind a balancer would.
type publisher struct {
	dev     auth.DeviceJSON
	topic   string
	prefix  string
	window  int
	targets func() []string
	log     *ackLog

	next     int // sequence number of the last value sent
	sessions int // connections used
}

// run publishes count values (0: until stop is closed) and returns when
// they are all sent and answered, or stop is closed and what was in
// flight is answered or lost.
func (p *publisher) run(stop <-chan struct{}, count int) {
	for {
		if p.session(stop, count) {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// session publishes on one connection; it reports whether the work is
// done (false: the connection failed or none could be made).
func (p *publisher) session(stop <-chan struct{}, count int) bool {
	var c *mqtttest.Conn
	for _, addr := range p.targets() {
		var err error
		if c, _, err = tryConnect(addr, p.dev.ClientID, p.dev.Username, p.dev.Password); err == nil && c != nil {
			break
		}
	}
	if c == nil {
		return false
	}
	p.sessions++
	defer c.Close()
	var mu sync.Mutex
	inflight := map[uint16]string{}
	slots := make(chan struct{}, p.window)
	broken := make(chan struct{})
	go func() {
		defer close(broken)
		for {
			// Answers are prompt, or the connection is dead.
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			id, code, err := c.ReadPuback()
			if err != nil {
				return
			}
			mu.Lock()
			v, ok := inflight[id]
			delete(inflight, id)
			mu.Unlock()
			if !ok {
				continue
			}
			if code == 0 {
				p.log.add(v)
			}
			<-slots
		}
	}()
	stopped := false
	for !stopped && (count == 0 || p.next < count) {
		select {
		case <-stop:
			stopped = true
			continue
		case <-broken:
			return false
		case slots <- struct{}{}:
		}
		p.next++
		v := fmt.Sprintf("%s-%d", p.prefix, p.next)
		id := uint16(p.next%65535 + 1)
		mu.Lock()
		inflight[id] = v
		mu.Unlock()
		if err := c.Publish(p.topic, 1, id, []byte("field1="+v)); err != nil {
			return false
		}
	}
	// Wait for the answers to what is in flight.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		mu.Lock()
		n := len(inflight)
		mu.Unlock()
		if n == 0 {
			_ = c.Disconnect()
			return true
		}
		select {
		case <-broken:
			return stopped
		case <-time.After(10 * time.Millisecond):
		}
	}
	return stopped
}

// publishOnce connects dev to addr and publishes one QoS 1 value; it
// reports whether the PUBACK came (an error says what ended the try).
func publishOnce(addr string, dev auth.DeviceJSON, topic, value string, within time.Duration) error {
	c, code, err := tryConnect(addr, dev.ClientID, dev.Username, dev.Password)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("CONNACK code %d", code)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(within))
	if err := c.Publish(topic, 1, 1, []byte("field1="+value)); err != nil {
		return err
	}
	_, code, err = c.ReadPuback()
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("PUBACK code %#x", code)
	}
	return nil
}

// storedEntry is one row of the entries table.
type storedEntry struct {
	ID     uint64
	Field1 string
}

// stored reads channel ch's entries and last entry id straight from the
// database, the source of truth every node shares.
func (h *clusterHarness) stored(t *testing.T, ch uint64) ([]storedEntry, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, h.db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var last uint64
	if err := c.QueryRow(ctx, "SELECT last_entry_id FROM channels WHERE id = $1", ch).Scan(&last); err != nil {
		t.Fatalf("last_entry_id of channel %d: %v", ch, err)
	}
	rows, err := c.Query(ctx, "SELECT entry_id, coalesce(field1, '') FROM entries WHERE channel_id = $1 ORDER BY entry_id", ch)
	if err != nil {
		t.Fatal(err)
	}
	var es []storedEntry
	for rows.Next() {
		var e storedEntry
		if err := rows.Scan(&e.ID, &e.Field1); err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return es, last
}

// checkStored checks that channel ch holds entries 1..last_entry_id with
// no gap, every acknowledged value, and no value twice (each was sent
// once). It returns the entries' values by id.
func (h *clusterHarness) checkStored(t *testing.T, ch uint64, acked map[string]bool) map[uint64]string {
	t.Helper()
	es, last := h.stored(t, ch)
	byID := make(map[uint64]string, len(es))
	seen := make(map[string]uint64, len(es))
	for i, e := range es {
		if e.ID != uint64(i+1) {
			t.Errorf("stored entry %d has id %d: the ids have a gap", i+1, e.ID)
			break
		}
		if prev, ok := seen[e.Field1]; ok {
			t.Errorf("value %q stored twice, as entries %d and %d, though sent once", e.Field1, prev, e.ID)
		}
		seen[e.Field1] = e.ID
		byID[e.ID] = e.Field1
	}
	if uint64(len(es)) != last {
		t.Errorf("channel %d: %d entries stored, last_entry_id %d", ch, len(es), last)
	}
	lost := 0
	for v := range acked {
		if _, ok := seen[v]; !ok {
			if lost < 5 {
				t.Errorf("acknowledged value %q is not stored", v)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged values are not stored", lost, len(acked))
	}
	return byID
}

// restFeed reads channel ch's feed (up to 8000 entries) through node i's
// REST API.
func (h *clusterHarness) restFeed(t *testing.T, i int, ch clusterChannel, results int) []clusterEntry {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/channels/%d/feeds.json?api_key=%s&results=%d", h.nodes[i].http(), ch.ID, ch.ReadKey, results))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var f struct {
		Feeds []clusterEntry `json:"feeds"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("feed read on %s: %d %.300s", h.nodes[i].name, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &f); err != nil {
		t.Fatalf("feed read on %s: %v", h.nodes[i].name, err)
	}
	return f.Feeds
}

// waitUntil polls cond every 20 ms until it holds; past the deadline the
// test fails, naming what it waited for.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
	}
}

// mosquittoSub runs mosquitto_sub on channel ch's subscribe topic and
// returns once its subscription is acknowledged; the returned channel
// gets each message line.
func mosquittoSub(t *testing.T, addr string, dev auth.DeviceJSON, ch uint64) <-chan string {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	// -d prints the protocol exchange on stdout: its SUBACK line says the
	// subscription is in place; message lines are the JSON entries.
	// stdout is a pipe, which mosquitto_sub would buffer until it exits:
	// stdbuf makes it line-buffered.
	cmd := exec.Command("stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-d",
		"-i", dev.ClientID, "-u", dev.Username, "-P", dev.Password,
		"-t", fmt.Sprintf("channels/%d/subscribe", ch), "-q", "1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 64)
	subacked := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.Contains(l, "received SUBACK"):
				once.Do(func() { close(subacked) })
			case strings.HasPrefix(l, "{"):
				lines <- l
			}
		}
	}()
	select {
	case <-subacked:
	case <-time.After(20 * time.Second):
		t.Fatalf("mosquitto_sub did not subscribe: %s", stderr.String())
	}
	return lines
}

// closedAt reads c until it fails and returns when that happened.
func closedAt(c *mqtttest.Conn) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		_ = c.SetReadDeadline(time.Time{})
		for {
			if _, _, err := c.ReadPacket(); err != nil {
				ch <- time.Now()
				return
			}
		}
	}()
	return ch
}
