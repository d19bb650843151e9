package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/cluster"
	"github.com/feedmq/feedmq/internal/natstest"
	"github.com/feedmq/feedmq/storage"
)

// clusterNodes are brokers in one process sharing one store and registry
// (as nodes share their database) and linked through a real NATS server.
type clusterNodes struct {
	svc      *admin.Local
	addrs    []string
	clusters []*cluster.Cluster
}

// startTestNATS starts a NATS server in this process on a loopback port.
func startTestNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	return natstest.Start(t, natsserver.Options{})
}

// openSharedStore opens a store and the admin service over it, for
// brokers in one process to share as cluster nodes share their database.
func openSharedStore(t *testing.T) (*storage.DB, *admin.Local) {
	t.Helper()
	db, err := storage.Open(filepath.Join(t.TempDir(), "feedmq.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return db, svc
}

// startClusterBroker starts node i's broker (node1, node2, ...) on a
// loopback port, linked to the others through the NATS server at url.
func startClusterBroker(t *testing.T, url string, i int, db *storage.DB, svc *admin.Local) (*broker.Server, *cluster.Cluster) {
	t.Helper()
	c, err := cluster.Open(cluster.Config{URLs: url, Name: "test", Node: fmt.Sprintf("node%d", i+1),
		Store: cluster.FromStore(db), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", Logger: testLogger(t), Cluster: c}, db, svc.Registry)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, c
}

func startClusterNodes(t *testing.T, n int) *clusterNodes {
	t.Helper()
	ns := startTestNATS(t)
	db, svc := openSharedStore(t)
	cn := &clusterNodes{svc: svc}
	var revokers []func(uint64)
	for i := range n {
		srv, c := startClusterBroker(t, ns.ClientURL(), i, db, svc)
		revokers = append(revokers, srv.Revoke)
		cn.addrs = append(cn.addrs, srv.Addr("mqtt").String())
		cn.clusters = append(cn.clusters, c)
	}
	svc.Revoke = func(id uint64) {
		for _, r := range revokers {
			r(id)
		}
	}
	// Every node's subscriptions are in place before anything is sent.
	waitUntil(t, "NATS subscriptions", func() bool {
		return ns.GlobalAccount().Interest("feedmq.test.entries.1") == n
	})
	return cn
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Entries published on any node reach subscribers on every node, each
// once and in entry id order, as QoS 1 publishes from two nodes to one
// channel interleave.
func TestClusterEntriesReachEveryNodeInOrder(t *testing.T) {
	cn := startClusterNodes(t, 2)
	ctx := context.Background()
	ch, err := cn.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	mk := func() *auth.Credentials {
		cr, err := cn.svc.CreateDevice(ctx, auth.DeviceSpec{Name: "dev", Grants: []auth.Grant{pubsub(ch.ID)}})
		if err != nil {
			t.Fatal(err)
		}
		return cr
	}
	topic := channels.FeedTopic(ch.ID)
	var subs []*client
	for _, addr := range cn.addrs {
		s := mustConnect(t, addr, mk())
		if code := s.subscribe(t, topic); code != 0 {
			t.Fatalf("SUBACK %d", code)
		}
		subs = append(subs, s)
	}
	const per = 100
	var wg sync.WaitGroup
	for i, addr := range cn.addrs {
		p := mustConnect(t, addr, mk())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				if err := p.publish(t, fmt.Sprintf("channels/%d/publish", ch.ID), 1, fmt.Sprintf("field1=%d-%d", i, k)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, s := range subs {
		var ids []uint64
		for len(ids) < 2*per {
			m := s.expect(t)
			var e struct {
				EntryID uint64 `json:"entry_id"`
			}
			if err := json.Unmarshal([]byte(m.payload), &e); err != nil {
				t.Fatalf("node %d: %q: %v", i+1, m.payload, err)
			}
			ids = append(ids, e.EntryID)
		}
		want := make([]uint64, 2*per)
		for k := range want {
			want[k] = uint64(k + 1)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("subscriber on node %d got ids %v, want 1..%d in order", i+1, ids, 2*per)
		}
	}
	for i, c := range cn.clusters {
		if m := c.Metrics(); m.Published != per || m.Received == 0 || !m.NATSConnected {
			t.Errorf("node %d metrics %+v: want %d published, some received", i+1, m, per)
		}
	}
}

// A device that connects on node 2 closes its connection on node 1:
// MQTT allows one connection per client ID.
func TestClusterTakeoverAcrossNodes(t *testing.T) {
	cn := startClusterNodes(t, 2)
	ctx := context.Background()
	ch, err := cn.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := cn.svc.CreateDevice(ctx, auth.DeviceSpec{Name: "dev", Grants: []auth.Grant{pubsub(ch.ID)}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := cn.svc.CreateDevice(ctx, auth.DeviceSpec{Name: "other", Grants: []auth.Grant{pubsub(ch.ID)}})
	if err != nil {
		t.Fatal(err)
	}
	old := mustConnect(t, cn.addrs[0], cr)
	bystander := mustConnect(t, cn.addrs[0], other)
	fresh := mustConnect(t, cn.addrs[1], cr)
	select {
	case <-old.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection on node 1 stayed open after the same client ID connected on node 2")
	}
	waitUntil(t, "the takeover counted", func() bool { return cn.clusters[0].Metrics().Takeovers == 1 })
	// The new connection and other clients carry on.
	if err := fresh.publish(t, fmt.Sprintf("channels/%d/publish", ch.ID), 1, "field1=1"); err != nil {
		t.Fatal(err)
	}
	if !bystander.IsConnectionOpen() || !fresh.IsConnectionOpen() {
		t.Error("a takeover closed another connection")
	}
}

type failingCluster struct{ broker.Cluster }

func (failingCluster) Attach(func(*channels.Entry), func(string, time.Time, bool) bool) error {
	return errors.New("cluster: subscribe: nats: connection closed")
}

func TestClusterAttachFailureFailsNew(t *testing.T) {
	db, err := storage.Open(filepath.Join(t.TempDir(), "feedmq.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	_, err = broker.New(broker.Options{Logger: quietLogger(), Cluster: failingCluster{}}, db, svc.Registry)
	if err == nil || !strings.Contains(err.Error(), "connection closed") {
		t.Fatalf("New with a cluster that cannot attach: %v", err)
	}
}

// A node failed closed drops every connection and refuses new ones until
// it is opened again.
func TestFailClosed(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ch := ts.channel(true)
	cr := ts.device(pubsub(ch))
	dev := mustConnect(t, ts.addr, cr)
	anon := mustConnect(t, ts.addr, nil)

	ts.srv.SetFailClosed(true)
	ts.srv.SetFailClosed(true) // again: nothing more happens
	for _, c := range []*client{dev, anon} {
		select {
		case <-c.lost:
		case <-time.After(10 * time.Second):
			t.Fatal("a connection stayed open on a node failed closed")
		}
	}
	for _, who := range []*auth.Credentials{cr, nil} {
		if _, code, err := connect(t, ts.addr, who, 4); err == nil || code != 3 {
			t.Errorf("CONNECT to a node failed closed: code %d, %v; want 3 (server unavailable)", code, err)
		}
	}
	if got := ts.srv.Stats().Refused["fail_closed"]; got != 2 {
		t.Errorf("refused fail_closed = %d, want 2", got)
	}

	ts.srv.SetFailClosed(false)
	c := mustConnect(t, ts.addr, cr)
	if err := c.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=1"); err != nil {
		t.Fatal(err)
	}
}

// noticeCluster records what the broker tells the cluster and keeps the
// takeover function, so a test can hand the broker notices in any order.
type noticeCluster struct {
	mu        sync.Mutex
	takeover  func(string, time.Time, bool) bool
	connected map[string]time.Time
}

func (c *noticeCluster) Attach(_ func(*channels.Entry), takeover func(string, time.Time, bool) bool) error {
	c.takeover = takeover
	return nil
}
func (c *noticeCluster) Published(*channels.Entry) {}
func (c *noticeCluster) Connected(id string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected[id] = at
}
func (c *noticeCluster) at(id string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.connected[id]
	return at, ok
}

// The notice of another node's older connection can arrive after a newer
// one connected here: the newer stays, whatever order the notices take,
// and a tie goes to the node that wins it.
func TestClusterLateNoticeKeepsNewerConnection(t *testing.T) {
	nc := &noticeCluster{connected: map[string]time.Time{}}
	ts := startServer(t, broker.Options{Cluster: nc})
	ch := ts.channel(true)
	cr := ts.device(pubsub(ch))
	before := time.Now()
	c := mustConnect(t, ts.addr, cr)
	var at time.Time
	waitUntil(t, "the connect announced", func() bool {
		var ok bool
		at, ok = nc.at(cr.Device.ClientID)
		return ok
	})
	if at.Before(before) || at.After(time.Now()) {
		t.Fatalf("announced connected at %v, outside the connect (%v on)", at, before)
	}
	for _, tc := range []struct {
		at      time.Time
		winsTie bool
	}{{at.Add(-time.Millisecond), true}, {at.Add(-time.Nanosecond), true}, {at, false}} {
		if nc.takeover(cr.Device.ClientID, tc.at, tc.winsTie) {
			t.Errorf("a notice of a connection at %v (wins tie %v) closed the one connected at %v", tc.at, tc.winsTie, at)
		}
	}
	if !c.IsConnectionOpen() {
		t.Fatal("the newer connection was closed")
	}
	if !nc.takeover(cr.Device.ClientID, at, true) {
		t.Fatal("a notice of a connection at the same time, whose node wins the tie, did not close this one")
	}
	select {
	case <-c.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open after the takeover")
	}

	// A notice without a time (a node that does not send one) closes the
	// connection whatever its age, as before.
	c = mustConnect(t, ts.addr, cr)
	waitUntil(t, "the second connect announced", func() bool {
		again, _ := nc.at(cr.Device.ClientID)
		return again.After(at)
	})
	if !nc.takeover(cr.Device.ClientID, time.Time{}, false) {
		t.Fatal("a notice without a time did not close the connection")
	}
	select {
	case <-c.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open after a notice without a time")
	}
	if nc.takeover("nobody-here", time.Now(), true) {
		t.Error("a notice for a client ID not connected here reported a takeover")
	}
}
