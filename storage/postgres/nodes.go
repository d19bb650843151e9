package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/cluster"
)

var _ cluster.Heartbeats = (*DB)(nil)

// A node's name is held, for as long as its process runs, by a
// session-level advisory lock on a connection of its own: PostgreSQL
// drops it the moment that connection goes (the process exited or was
// killed), so a node restarted at once gets its name back, while a second
// process given the same name is refused. The lock key is the pair
// (nodeLockClass, hashtext(name)); the two-integer keys never meet the
// one-bigint keys of the other locks.
const nodeLockClass = 0x66656d71 // "femq"

// nodesLock serialises claims, so that two lone nodes starting together
// cannot both find the table empty.
const nodesLock = 0x66656564_6d710004 // "feedmq" 4

// nodeState is the node this DB claimed (ClaimNode).
type nodeState struct {
	mu        sync.Mutex
	name      string
	clustered bool
	window    time.Duration
	conn      *pgx.Conn // holds the name's lock; nil when lost
	// pid is the server process of the connection that last held the
	// lock: after that connection is lost, the process may still hold
	// the lock for a moment while it exits.
	pid uint32
}

// ErrNodeConflict is in the chain of ClaimNode's refusals: the name is in
// use, or the node may not share the database with the live ones.
var ErrNodeConflict = errors.New("this node may not start")

// NodeClaim says how a node takes its place in the nodes table.
type NodeClaim struct {
	// Node is the node's name, unique among the nodes of the database.
	Node string
	// Clustered: the node exchanges entries with others over NATS.
	// Without it the node must be the only one live on the database
	// (another would never hear of its entries), and a clustered node
	// refuses to join a database a lone node serves.
	Clustered bool
	// Window is how recent a beat must be to count a node live.
	Window time.Duration
}

// ClaimNode takes the node's name (refusing one a running process holds)
// and checks the live nodes: a node without Clustered must be alone, and
// a clustered node must not join a lone one. It records the node live;
// Beat keeps it so, and LeaveNode removes it. Errors name the other node.
func (db *DB) ClaimNode(ctx context.Context, c NodeClaim) error {
	if err := cluster.ValidName(c.Node); err != nil {
		return fmt.Errorf("postgres: node name %q: %w", cut(c.Node), err)
	}
	if c.Window <= 0 {
		return errors.New("postgres: a node's live window must be positive")
	}
	n := &db.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.name != "" {
		return fmt.Errorf("postgres: this process is node %q already", n.name)
	}
	n.name, n.clustered, n.window = c.Node, c.Clustered, c.Window
	ok := false
	defer func() {
		if !ok {
			n.release()
			n.name = ""
		}
	}()
	if err := db.lockName(ctx, true); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(nodesLock)); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT node, clustered, extract(epoch FROM now() - seen)::float8
			FROM nodes WHERE node <> $1 AND seen > now() - make_interval(secs => $2) ORDER BY node`,
			c.Node, c.Window.Seconds())
		if err != nil {
			return err
		}
		for rows.Next() {
			var other string
			var clustered bool
			var age float64
			if err := rows.Scan(&other, &clustered, &age); err != nil {
				return err
			}
			ago := time.Duration(age * float64(time.Second)).Round(time.Second)
			switch {
			case !c.Clustered:
				rows.Close()
				return fmt.Errorf("%w: node %q is live on this database (last beat %s ago); a node without cluster: must be the only one: "+
					"configure cluster: (NATS) on every node, or stop %q", ErrNodeConflict, cut(other), ago, cut(other))
			case !clustered:
				rows.Close()
				return fmt.Errorf("%w: node %q serves this database without cluster: (last beat %s ago); "+
					"stop it, or configure cluster: on it too", ErrNodeConflict, cut(other), ago)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO nodes (node, clustered, status, started, seen) VALUES ($1, $2, $3, now(), now())
			ON CONFLICT (node) DO UPDATE SET clustered = excluded.clustered, status = excluded.status, started = now(), seen = now()`,
			c.Node, c.Clustered, cluster.StatusOK)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNodeConflict) {
			return fmt.Errorf("postgres: %w", err)
		}
		return wrap("claim node", fmt.Errorf("postgres: %w", err))
	}
	ok = true
	return nil
}

// lockName takes the name's lock on a connection of its own; n.mu is
// held. When a connection holds it already but the node's row is stale
// (a process cut off without its connection closing, which PostgreSQL
// notices only after TCP keepalives), that connection is terminated and
// the lock taken over at the first claim; later (first false) the lock
// is only taken when free.
func (db *DB) lockName(ctx context.Context, first bool) error {
	n := &db.node
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return wrap("claim node", fmt.Errorf("postgres: %w", err))
	}
	conn := pc.Hijack()
	for try := 0; ; try++ {
		var got bool
		err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))", int32(nodeLockClass), n.name).Scan(&got)
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return wrap("claim node", fmt.Errorf("postgres: lock the node name: %w", err))
		}
		if got {
			n.conn, n.pid = conn, conn.PgConn().PID()
			return nil
		}
		// Taking the lock again after the connection that held it was
		// lost: that connection's server process may not have exited yet
		// (pg_terminate_backend returns before it does). Wait for it.
		ours := false
		if !first && n.pid != 0 {
			var holder *int64
			err := conn.QueryRow(ctx, `SELECT max(pid) FROM pg_locks
				WHERE locktype = 'advisory' AND classid = $1::oid AND objid = hashtext($2)::oid AND objsubid = 2 AND granted`,
				int64(uint32(nodeLockClass)), n.name).Scan(&holder)
			if err != nil {
				conn.Close(context.WithoutCancel(ctx))
				return wrap("claim node", fmt.Errorf("postgres: read the holder of node %q: %w", n.name, err))
			}
			ours = holder == nil || uint32(*holder) == n.pid
		}
		var age *float64
		err = conn.QueryRow(ctx, "SELECT extract(epoch FROM now() - seen)::float8 FROM nodes WHERE node = $1", n.name).Scan(&age)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			conn.Close(context.WithoutCancel(ctx))
			return wrap("claim node", fmt.Errorf("postgres: read node %q: %w", n.name, err))
		}
		stale := age == nil || time.Duration(*age*float64(time.Second)) > n.window
		if !(first && stale || ours) || try == 20 {
			conn.Close(context.WithoutCancel(ctx))
			what := "is held by another running feedmq"
			if age != nil {
				what += fmt.Sprintf(" (last beat %s ago)", time.Duration(*age*float64(time.Second)).Round(time.Second))
			}
			return fmt.Errorf("postgres: %w: node name %q %s; give each node its own node_name", ErrNodeConflict, cut(n.name), what)
		}
		if first && try == 0 {
			// The holder stopped beating long ago: end its session.
			_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
				WHERE locktype = 'advisory' AND classid = $1::oid AND objid = hashtext($2)::oid AND objsubid = 2`,
				int64(uint32(nodeLockClass)), n.name)
			if err != nil {
				conn.Close(context.WithoutCancel(ctx))
				return wrap("claim node", fmt.Errorf("postgres: end the stale session of node %q: %w", n.name, err))
			}
		}
		select {
		case <-ctx.Done():
			conn.Close(context.WithoutCancel(ctx))
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// release closes the lock's connection; n.mu is held.
func (n *nodeState) release() {
	if n.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.conn.Close(ctx)
		cancel()
		n.conn = nil
	}
}

// Beat records that node (the one ClaimNode took) is alive now with
// status, by the database's clock. It runs on the connection that holds
// the name: when that connection was lost (the database restarted), the
// lock is taken again, and a beat fails if another process took the name
// meanwhile.
func (db *DB) Beat(ctx context.Context, node, status string) error {
	n := &db.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.name == "" || n.name != node {
		return fmt.Errorf("postgres: node %q has not been claimed by this process", cut(node))
	}
	for try := 0; ; try++ {
		if n.conn == nil {
			if err := db.lockName(ctx, false); err != nil {
				return err
			}
		}
		_, err := n.conn.Exec(ctx, `INSERT INTO nodes (node, clustered, status, started, seen) VALUES ($1, $2, $3, now(), now())
			ON CONFLICT (node) DO UPDATE SET status = excluded.status, seen = now()`, node, n.clustered, status)
		if err == nil {
			return nil
		}
		n.release() // the lock went with the connection, or may have
		if try == 1 || ctx.Err() != nil {
			return wrap("beat", fmt.Errorf("postgres: beat: %w", err))
		}
	}
}

// Live returns the nodes that beat within window, by name.
func (db *DB) Live(ctx context.Context, window time.Duration) ([]cluster.NodeStatus, error) {
	rows, err := db.pool.Query(ctx, `SELECT node, status, seen FROM nodes
		WHERE seen > now() - make_interval(secs => $1) ORDER BY node`, window.Seconds())
	if err != nil {
		return nil, wrap("live nodes", fmt.Errorf("postgres: read live nodes: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cluster.NodeStatus, error) {
		var s cluster.NodeStatus
		err := r.Scan(&s.Node, &s.Status, &s.Seen)
		return s, err
	})
	if err != nil {
		return nil, wrap("live nodes", fmt.Errorf("postgres: read live nodes: %w", err))
	}
	return out, nil
}

// LeaveNode removes this process's node from the table and frees its
// name, at a clean shutdown: a node restarted at once is not taken for a
// live other, and a lone node may start on the database right away.
func (db *DB) LeaveNode(ctx context.Context) error {
	n := &db.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.name == "" {
		return nil
	}
	_, err := db.pool.Exec(ctx, "DELETE FROM nodes WHERE node = $1", n.name)
	n.release()
	n.name = ""
	if err != nil {
		return wrap("leave", fmt.Errorf("postgres: remove node: %w", err))
	}
	return nil
}

// cut bounds a name quoted in an error.
func cut(s string) string {
	if len(s) > cluster.MaxNameLen {
		return strings.ToValidUTF8(s[:cluster.MaxNameLen], "") + "..."
	}
	return s
}
