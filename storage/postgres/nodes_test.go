package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/cluster"
	"github.com/feedmq/feedmq/internal/pgtest"
)

func liveNames(t *testing.T, db *DB) map[string]string {
	t.Helper()
	live, err := db.Live(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range live {
		out[n.Node] = n.Status
	}
	return out
}

// Nodes beat into the table with the database's clock; Live lists those
// that beat within the window, with their status.
func TestHeartbeatsBeatAndLive(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	a, b := openTest(t, url, Options{}), openTest(t, url, Options{})
	if err := a.Beat(ctx, "n1", cluster.StatusOK); err == nil {
		t.Fatal("Beat before ClaimNode succeeded")
	}
	for db, name := range map[*DB]string{a: "n1", b: "n2"} {
		if err := db.ClaimNode(ctx, NodeClaim{Node: name, Clustered: true, Window: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Beat(ctx, "n2", cluster.StatusOK); err == nil {
		t.Fatal("a process beat for another node's name")
	}
	if err := b.Beat(ctx, "n2", cluster.StatusFailClosed); err != nil {
		t.Fatal(err)
	}
	if got := liveNames(t, a); len(got) != 2 || got["n1"] != "ok" || got["n2"] != "fail-closed" {
		t.Fatalf("live = %v", got)
	}
	// A node that stopped beating drops out of the window.
	if _, err := a.pool.Exec(ctx, "UPDATE nodes SET seen = now() - interval '2 minutes' WHERE node = 'n2'"); err != nil {
		t.Fatal(err)
	}
	if got := liveNames(t, a); len(got) != 1 || got["n1"] != "ok" {
		t.Fatalf("live after n2 went quiet = %v", got)
	}
	if err := b.Beat(ctx, "n2", cluster.StatusOK); err != nil {
		t.Fatal(err)
	}
	if got := liveNames(t, a); len(got) != 2 {
		t.Fatalf("live after n2 beat again = %v", got)
	}
	var seen time.Time
	if err := a.pool.QueryRow(ctx, "SELECT seen FROM nodes WHERE node = 'n1'").Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if err := a.Beat(ctx, "n1", cluster.StatusOK); err != nil {
		t.Fatal(err)
	}
	var after time.Time
	if err := a.pool.QueryRow(ctx, "SELECT seen FROM nodes WHERE node = 'n1'").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if !after.After(seen) {
		t.Fatalf("a beat left seen at %v (was %v)", after, seen)
	}
}

// ClaimNode's refusals: a name a running process holds, a lone node
// beside live ones, a clustered node beside a lone one. Each names the
// other node.
func TestClaimNodeConflicts(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	n1 := openTest(t, url, Options{})
	if err := n1.ClaimNode(ctx, NodeClaim{Node: "n1", Clustered: true, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		claim NodeClaim
		want  string
	}{
		{"duplicate name", NodeClaim{Node: "n1", Clustered: true, Window: time.Minute}, `node name "n1" is held by another running feedmq`},
		{"lone beside clustered", NodeClaim{Node: "solo", Window: time.Minute}, `node "n1" is live on this database`},
		{"bad name", NodeClaim{Node: "a.b", Clustered: true, Window: time.Minute}, `node name "a.b"`},
		{"no window", NodeClaim{Node: "n9", Clustered: true}, "window"},
	}
	for _, c := range cases {
		db := openTest(t, url, Options{})
		err := db.ClaimNode(ctx, c.claim)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ClaimNode = %v; want an error containing %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(c.want, "live") && !errors.Is(err, ErrNodeConflict) {
			t.Errorf("%s: %v is not ErrNodeConflict", c.name, err)
		}
		db.Close()
	}
	if got := liveNames(t, n1); len(got) != 1 {
		t.Fatalf("refused claims left rows: %v", got)
	}

	// A lone node on a database of its own; a clustered node may not join.
	url2 := pgtest.New(t)
	solo := openTest(t, url2, Options{})
	if err := solo.ClaimNode(ctx, NodeClaim{Node: "solo", Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	other := openTest(t, url2, Options{})
	err := other.ClaimNode(ctx, NodeClaim{Node: "c1", Clustered: true, Window: time.Minute})
	if err == nil || !strings.Contains(err.Error(), `node "solo" serves this database without cluster:`) {
		t.Fatalf("clustered beside a lone node: %v", err)
	}
	// Once the lone node leaves cleanly, another may start at once.
	if err := solo.LeaveNode(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.ClaimNode(ctx, NodeClaim{Node: "solo2", Window: time.Minute}); err != nil {
		t.Fatalf("lone node after the other left: %v", err)
	}
}

// A process that dies (its connections close) frees its name at once:
// the node restarted under that name starts without waiting for its old
// row to go stale. A holder whose connection stays open but that stopped
// beating (cut off) is ended after the window.
func TestClaimNodeAfterCrash(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	old := openTest(t, url, Options{})
	if err := old.ClaimNode(ctx, NodeClaim{Node: "n1", Clustered: true, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	old.Close() // as a kill -9: no LeaveNode, the row stays live
	restarted := openTest(t, url, Options{})
	if err := restarted.ClaimNode(ctx, NodeClaim{Node: "n1", Clustered: true, Window: time.Minute}); err != nil {
		t.Fatalf("restart under the same name: %v", err)
	}
	if got := liveNames(t, restarted); got["n1"] != "ok" {
		t.Fatalf("live = %v", got)
	}

	// Cut off: the lock's session lives, the row is stale.
	if _, err := restarted.pool.Exec(ctx, "UPDATE nodes SET seen = now() - interval '2 minutes' WHERE node = 'n1'"); err != nil {
		t.Fatal(err)
	}
	next := openTest(t, url, Options{})
	if err := next.ClaimNode(ctx, NodeClaim{Node: "n1", Clustered: true, Window: time.Minute}); err != nil {
		t.Fatalf("claim of a stale holder's name: %v", err)
	}
	// The cut-off process finds out at its next beat: the name is taken.
	if err := restarted.Beat(ctx, "n1", cluster.StatusOK); err == nil || !errors.Is(err, ErrNodeConflict) {
		t.Fatalf("beat of a process whose name was taken over: %v", err)
	}
}

// A beat whose connection was lost (the database restarted, or an
// administrator ended it) takes the name's lock again and goes on.
func TestBeatRelocksAfterLostConnection(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db := openTest(t, url, Options{})
	if err := db.ClaimNode(ctx, NodeClaim{Node: "n1", Clustered: true, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	pid := db.node.conn.PgConn().PID()
	if _, err := db.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
		t.Fatal(err)
	}
	if err := db.Beat(ctx, "n1", cluster.StatusOK); err != nil {
		t.Fatalf("beat after the lock's connection was ended: %v", err)
	}
	if db.node.conn == nil || db.node.conn.PgConn().PID() == pid {
		t.Fatal("the beat did not take a new connection")
	}
	// And the name is held again: a second claim is refused.
	dup := openTest(t, url, Options{})
	if err := dup.ClaimNode(ctx, NodeClaim{Node: "n1", Clustered: true, Window: time.Minute}); !errors.Is(err, ErrNodeConflict) {
		t.Fatalf("duplicate claim after the relock: %v", err)
	}
}

// The cluster layer's monitor over the table: both nodes see each other.
func TestMonitorOverNodesTable(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	var mons []*cluster.Monitor
	for _, name := range []string{"n1", "n2"} {
		db := openTest(t, url, Options{})
		if err := db.ClaimNode(ctx, NodeClaim{Node: name, Clustered: true, Window: time.Minute}); err != nil {
			t.Fatal(err)
		}
		m := cluster.StartMonitor(cluster.MonitorOptions{Node: name, Beats: db, Interval: time.Hour})
		t.Cleanup(m.Stop)
		mons = append(mons, m)
	}
	if got := mons[1].Nodes(); len(got) != 2 || got[0].Node != "n1" || got[1].Node != "n2" || mons[1].FailClosed() {
		t.Fatalf("n2's monitor sees %v (failed closed %v)", got, mons[1].FailClosed())
	}
}
