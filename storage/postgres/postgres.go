// Package postgres keeps feedmq's channels and feeds in PostgreSQL (15 or
// newer), so that several feedmq processes can share them: entry IDs are
// handed out by the database, gapless and increasing per channel across
// every process, and an entry is acknowledged only once its transaction
// has committed (synchronous_commit on).
//
// # Schema
//
// Open brings the database to the schema this binary knows by running the
// numbered migrations it has not yet run (migrate.go), in one transaction
// under an advisory lock so that processes starting together do not race,
// and refuses a database whose schema is newer than the binary.
//
// Feed entries live in entries(channel_id, entry_id, ...), keyed by both.
// channels.last_entry_id is the last ID handed out; only the append
// transaction changes it (and a clear, which resets it).
package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/feedmq/feedmq/channels"
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// RateLimit is the minimum interval between two writes to a channel
	// whose own rate limit is 0; 0 means none. The append checks it with
	// the database's clock, so that it holds across processes.
	RateLimit time.Duration
	// OnCommit, when set, is called by the append writer after each
	// committed batch with the number of entries it stored and how long
	// the transaction took. It runs on the writer goroutine, so it must
	// be quick and must not call DB.
	OnCommit func(entries int, d time.Duration)
	// Password, when set, is the database password, in place of one in
	// the URL, so that it can be kept in a file of its own.
	Password string
	// Now, when set, replaces the database's clock for the times the
	// store stamps (a channel's, device's or binding's creation and
	// update, an entry written without a time), as storage.Options.Now
	// does for the bbolt store: tests set it. Rate limits keep the
	// database's clock, which every process sharing the database reads.
	Now func() time.Time
}

// nowArg is the time a statement stamps with in place of now(): nil (the
// database's clock) unless Options.Now is set.
func (db *DB) nowArg() *time.Time {
	if db.opts.Now == nil {
		return nil
	}
	t := db.opts.Now().UTC()
	return &t
}

// stamp dates an entry written without a time by Options.Now, when set;
// otherwise the database does.
func (db *DB) stamp(e *channels.Entry) {
	if e.CreatedAt.IsZero() && db.opts.Now != nil {
		e.CreatedAt = db.opts.Now()
	}
}

// defaultConnectTimeout bounds a connection attempt when the URL sets no
// connect_timeout (a variable: tests shorten it).
var defaultConnectTimeout = 10 * time.Second

// DB is an open feedmq database in PostgreSQL. It is safe for concurrent
// use; several DBs, in one process or many, may share one database.
type DB struct {
	pool *pgxpool.Pool
	opts Options
	w    *writer
	node nodeState // the node this process runs as (nodes.go)
}

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string; pgxpool's pool_* parameters tune the pool), migrates
// its schema and starts the append writer. It fails when the database is
// unreachable or its schema is newer than this binary's.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("postgres: the storage URL is not a valid connection string")
	}
	// An acknowledged entry must survive a crash of the database (and,
	// with a synchronous standby, of its machine), whatever the server's
	// or role's default.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// Without connect_timeout in the URL a connection to a host that
		// drops packets waits for the system's TCP timeout (minutes), at
		// start and on every reconnect.
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "feedmq"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	if err := migrate(ctx, pool, migrations); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := &DB{pool: pool, opts: opts}
	db.w = newWriter(db)
	return db, nil
}

// Close waits for queued appends, stops the writer and closes the pool.
// Calling it again is a no-op.
func (db *DB) Close() error {
	if db.w.stop() {
		db.node.mu.Lock()
		db.node.release()
		db.node.mu.Unlock()
		db.pool.Close()
	}
	return nil
}

// ClusterID identifies the database for the nodes that share it, the
// same from every node and across server restarts and failovers to a
// physical standby: the database's OID and when its schema was created.
// Another database (a copy restored elsewhere included) has another.
// It is a digest: it travels with every cluster message.
func (db *DB) ClusterID(ctx context.Context) (string, error) {
	var oid uint32
	var created string
	err := db.pool.QueryRow(ctx, `SELECT d.oid, (SELECT extract(epoch FROM applied_at)::text FROM schema_migrations WHERE version = 1)
		FROM pg_database d WHERE d.datname = current_database()`).Scan(&oid, &created)
	if err != nil {
		return "", fmt.Errorf("postgres: identify the database: %w", err)
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d/%s", oid, created)))
	return hex.EncodeToString(sum[:12]), nil
}

// Identity names the database this DB is connected to, however its URL
// spells it (scheme, host name or address, parameters): the database's
// name and OID and the server's start time, which two servers do not
// share. Two DBs with one identity are one database.
func (db *DB) Identity(ctx context.Context) (string, error) {
	var name, started string
	var oid uint32
	// The start time as a number: its text would follow the session's
	// TimeZone and DateStyle, which a URL can set.
	err := db.pool.QueryRow(ctx, `SELECT current_database(), d.oid, extract(epoch FROM pg_postmaster_start_time())::text
		FROM pg_database d WHERE d.datname = current_database()`).Scan(&name, &oid, &started)
	if err != nil {
		return "", fmt.Errorf("postgres: identify the database: %w", err)
	}
	return fmt.Sprintf("%s/%d@%s", name, oid, started), nil
}
