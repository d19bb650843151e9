package cluster

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/natstest"
)

// A channel cleared on node 1 gets its new entry 1 out on NATS before
// node 2 hears of the clear from the database (the two travel on
// separate links, so either may win). Node 2 still counts the old feed,
// takes the new entry for one it delivered, and drops it; when the
// clear's notice then restarts the channel, the entry must still reach
// node 2's subscribers, without waiting for the channel's next entry,
// which may never come.
func TestClusterResetDeliversNewFeedThatOutranTheClear(t *testing.T) {
	servers := startNATS(t, 1)
	st := &sharedStore{fakeStore: newFakeStore()}
	n1 := startNode(t, "node1", st, servers[0].ClientURL())
	n2 := startNode(t, "node2", st, servers[0].ClientURL())
	waitSubscribed(t, servers, 2)

	for range 3 {
		st.commit(n1.c, 5)
	}
	waitFor(t, "node 2 got entries 1..3", func() bool { return slices.Equal(n2.rec.ids(5), seq(1, 3)) })

	// The clear on node 1: its own sequence restarts at once.
	st.clear(5)
	n1.c.Reset(5)
	dups := n2.c.Metrics().Duplicates
	st.commit(n1.c, 5) // the new feed's entry 1
	waitFor(t, "node 2 took entry 1 of the new feed for a duplicate", func() bool {
		return n2.c.Metrics().Duplicates > dups
	})
	// Now node 2 hears of the clear.
	n2.c.Reset(5)
	waitFor(t, "node 2 delivered entry 1 of the new feed after the clear's notice", func() bool {
		return slices.Equal(n2.rec.ids(5), []uint64{1, 2, 3, 1})
	})
	if got := n1.rec.ids(5); !slices.Equal(got, []uint64{1, 2, 3, 1}) {
		t.Errorf("node 1 delivered %v, want 1 2 3 1", got)
	}
}

// startAuthNATS starts a NATS server on port (-1: any) that takes user
// and password only.
func startAuthNATS(t *testing.T, port int, user, password string) *natsserver.Server {
	t.Helper()
	return natstest.Start(t, natsserver.Options{Port: port, Username: user, Password: password})
}

// A NATS server that comes back refusing the node's credentials for a
// while (restarted before its new configuration was complete, an account
// server catching up) must not end the node's link for good: once it
// takes them again, the node reconnects, as after any other outage. The
// NATS client's default is to give up on a server after the same
// authorization error twice, which would leave the node serving, with
// subscribers that never again get other nodes' entries.
func TestClusterReconnectsAfterAuthorizationErrors(t *testing.T) {
	s := startAuthNATS(t, -1, "feedmq", "right")
	port := s.Addr().(*net.TCPAddr).Port
	st := &sharedStore{fakeStore: newFakeStore()}
	n := startNode(t, "node1", st, fmt.Sprintf("nats://feedmq:right@127.0.0.1:%d", port))

	s.Shutdown()
	waitFor(t, "the node to notice the server gone", func() bool { return !n.c.Metrics().NATSConnected })
	wrong := startAuthNATS(t, port, "feedmq", "other")
	waitFor(t, "authorization errors", func() bool { return strings.Count(n.logs.String(), "authorization violation") >= 2 })
	wrong.Shutdown()
	startAuthNATS(t, port, "feedmq", "right")
	waitFor(t, "the node to reconnect", func() bool { return n.c.Metrics().NATSConnected })
	if strings.Contains(n.logs.String(), "right") {
		t.Errorf("the node logged its NATS password:\n%s", n.logs.String())
	}
}

// Whoever may publish on the cluster's subjects can send entries of
// channels that do not exist, each with a new id. The node must not keep
// state for every one of them (memory an outsider grows without end):
// entries of a channel the node does not know are dropped and counted.
func TestClusterDropsEntriesOfUnknownChannels(t *testing.T) {
	servers := startNATS(t, 1)
	st := &sharedStore{fakeStore: newFakeStore()}
	n := startNode(t, "node1", st, servers[0].ClientURL())
	n.c.SetKnown(func(channel uint64) bool { return channel == 1 })
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const forged = 2000
	for i := range forged {
		ch := uint64(1000 + i)
		msg := fmt.Sprintf(`{"channel_id":%d,"created_at":"2024-01-02T03:04:05Z","entry_id":1,"field1":"x"}`, ch)
		if err := nc.Publish(entriesSubject("t1", ch), []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(entriesSubject("t1", 1), []byte(`{"channel_id":1,"created_at":"2024-01-02T03:04:05Z","entry_id":1,"field1":"1"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the known channel's entry", func() bool { return len(n.rec.ids(1)) == 1 })
	n.c.seq.mu.Lock()
	held := len(n.c.seq.chans)
	n.c.seq.mu.Unlock()
	if held > 1 {
		t.Errorf("the sequencer holds state for %d channels after %d forged ones; want only the known channel's", held, forged)
	}
	if m := n.c.Metrics(); m.Unknown != forged || m.Received != 1 {
		t.Errorf("metrics %+v: want %d entries of unknown channels, 1 received", m, forged)
	}
	for ch := range uint64(forged) {
		if len(n.rec.ids(1000+ch)) != 0 {
			t.Fatalf("channel %d, unknown here, was delivered", 1000+ch)
		}
	}
}

// startNodeOf is startNode for a node of the given database.
func startNodeOf(t *testing.T, name, database string, st Store, urls string) *testNode {
	t.Helper()
	return startNodeConfig(t, Config{URLs: urls, Name: "t1", Node: name, Database: database, Store: st})
}

// Two deployments on their own databases share NATS servers and, by
// oversight, the cluster name (both keep the default). Their channel ids
// overlap (each starts at 1): staging's entries must not reach
// production's subscribers, nor staging's connections close production's
// clients; the node drops them, counts them and says what is wrong.
func TestClusterDropsOtherDatabasesMessages(t *testing.T) {
	servers := startNATS(t, 1)
	prod, staging := &sharedStore{fakeStore: newFakeStore()}, &sharedStore{fakeStore: newFakeStore()}
	p1 := startNodeOf(t, "p1", "db-prod", prod, servers[0].ClientURL())
	p2 := startNodeOf(t, "p2", "db-prod", prod, servers[0].ClientURL())
	s1 := startNodeOf(t, "s1", "db-staging", staging, servers[0].ClientURL())
	p2.held = "dev-1"
	waitSubscribed(t, servers, 3)

	s1.c.Connected("dev-1", time.Now())
	staging.commit(s1.c, 1)
	staging.commit(s1.c, 1)
	p1.c.Connected("dev-2", time.Now())
	prod.commit(p1.c, 1)
	waitFor(t, "production's entry on p2", func() bool { return len(p2.rec.ids(1)) >= 1 })
	waitFor(t, "p2 counts staging's messages", func() bool { return p2.c.Metrics().Foreign >= 3 })
	waitFor(t, "p2 takes production's notice", func() bool { return slices.Contains(p2.tookOver(), "dev-2") })
	if got := p2.rec.ids(1); !slices.Equal(got, []uint64{1}) {
		t.Errorf("p2 delivered %v, want production's entry 1 only", got)
	}
	if v, _ := p2.rec.got[1][0].Field(1); v != "v1" {
		t.Errorf("p2 delivered %q", v)
	}
	if took := p2.tookOver(); slices.Contains(took, "dev-1") {
		t.Errorf("staging's connection closed production's client: %v", took)
	}
	if !strings.Contains(p2.logs.String(), "cluster_name") {
		t.Errorf("p2 did not say to give each cluster its own cluster_name:\n%s", p2.logs.String())
	}
	if got := s1.rec.ids(1); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("staging's node delivered %v, want its own 1 2", got)
	}
}

// Messages carry the database in a NATS header. A NATS server that does
// not take headers refuses every one of them, and the nodes would run
// without ever seeing each other's entries; Open refuses such a server
// with a clear error instead.
func TestOpenRefusesNATSWithoutHeaders(t *testing.T) {
	s := natstest.Start(t, natsserver.Options{NoHeaderSupport: true})
	c, err := Open(Config{URLs: s.ClientURL(), Name: "t1", Node: "n1", Database: "db", Store: newFakeStore()})
	if err == nil {
		c.Close()
		t.Fatal("Open took a NATS server without header support")
	}
	if !strings.Contains(err.Error(), "headers") {
		t.Errorf("error %q does not say what is wrong", err)
	}
}

// Free-topic messages carry the database too: staging's publish on a
// topic production also uses must not reach production's subscribers.
func TestClusterDropsOtherDatabasesFreeMessages(t *testing.T) {
	servers := startNATS(t, 1)
	prod, staging := &sharedStore{fakeStore: newFakeStore()}, &sharedStore{fakeStore: newFakeStore()}
	p1 := startNodeOf(t, "p1", "db-prod", prod, servers[0].ClientURL())
	p2 := startNodeOf(t, "p2", "db-prod", prod, servers[0].ClientURL())
	s1 := startNodeOf(t, "s1", "db-staging", staging, servers[0].ClientURL())
	var r2 freeRecorder
	if err := p2.c.AttachFree(r2.deliver, 1<<16); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "p2's free subscription", func() bool {
		return servers[0].GlobalAccount().Interest(freeSubject("t1")) == 1
	})
	s1.c.ForwardFree(&channels.Message{Topic: "home/door", Payload: []byte("staging")})
	p1.c.ForwardFree(&channels.Message{Topic: "home/door", Payload: []byte("production")})
	waitFor(t, "production's message on p2", func() bool { return len(r2.topics()) >= 1 })
	waitFor(t, "p2 counts staging's message", func() bool { return p2.c.Metrics().Foreign >= 1 })
	if got := r2.topics(); len(got) != 1 {
		t.Fatalf("p2 delivered %d free messages, want production's one", len(got))
	}
}
