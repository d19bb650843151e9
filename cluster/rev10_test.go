package cluster

import (
	"slices"
	"testing"
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
