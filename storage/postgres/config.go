package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/feedmq/feedmq/channels"
)

// Configuration writes (channels, devices, rules, bindings, the account)
// each run in one transaction that also bumps config_version and, with
// pg_notify, tells every listening process what changed; PostgreSQL
// delivers the notifications at commit, so nobody hears of a change that
// did not happen. Inside Atomically they join its transaction instead.

// NotifyChannel is the LISTEN channel configuration changes are announced
// on. Each payload is one change as JSON (see notice).
const NotifyChannel = "feedmq_config"

// configLock is the key of the advisory lock that serialises Atomically
// calls from every process. Each lock has its own key (schemaLock,
// pruneLock): one shared would stall configuration writes for a whole
// prune, and make the pruner skip its turn during any of them.
const configLock = 0x66656564_6d710003 // "feedmq" 3

var (
	_ channels.Transactor = (*DB)(nil)
)

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// txKey marks a context that Atomically gave its callback.
type txKey struct{}

// joined is the transaction of an Atomically call, which store calls
// made with its context join.
type joined struct {
	tx pgx.Tx
}

// q returns the transaction ctx joins, or the pool.
func (db *DB) q(ctx context.Context) querier {
	if a, ok := ctx.Value(txKey{}).(*joined); ok {
		return a.tx
	}
	return db.pool
}

// write runs fn in a transaction (a savepoint of the Atomically call ctx
// belongs to, if any); fn returns the changes it made, which are
// announced with the new configuration version. Application errors pass
// through untouched; others get op as context.
func (db *DB) write(ctx context.Context, op string, fn func(tx pgx.Tx) ([]channels.Change, error)) error {
	body := func(tx pgx.Tx) error {
		changes, err := fn(tx)
		if err != nil {
			return err
		}
		return announce(ctx, tx, changes)
	}
	var (
		tx  pgx.Tx
		err error
	)
	if a, ok := ctx.Value(txKey{}).(*joined); ok {
		tx, err = a.tx.Begin(ctx) // a savepoint
	} else {
		tx, err = db.pool.Begin(ctx)
	}
	if err != nil {
		return wrap(op, fmt.Errorf("begin: %w", err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := body(tx); err != nil {
		return wrap(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(op, commitError(err))
	}
	return nil
}

// announce bumps config_version and notifies each change with it.
func announce(ctx context.Context, tx pgx.Tx, changes []channels.Change) error {
	if len(changes) == 0 {
		return nil
	}
	var v int64
	if err := tx.QueryRow(ctx, "UPDATE config_version SET version = version + 1 RETURNING version").Scan(&v); err != nil {
		return fmt.Errorf("bump config version: %w", err)
	}
	payloads := make([]string, len(changes))
	for i := range changes {
		changes[i].Version = uint64(v)
		payloads[i] = encodeNotice(changes[i])
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", NotifyChannel, payloads); err != nil {
		return fmt.Errorf("notify config change: %w", err)
	}
	return nil
}

// notice is the payload of a notification: short keys keep it far below
// PostgreSQL's 8000-byte bound.
type notice struct {
	Version uint64 `json:"v"`
	Kind    string `json:"k"`
	ID      uint64 `json:"id,omitempty"`
	Deleted bool   `json:"del,omitempty"`
	Revoke  bool   `json:"rev,omitempty"`
}

func encodeNotice(c channels.Change) string {
	b, _ := json.Marshal(notice{Version: c.Version, Kind: c.Kind.String(), ID: c.ID, Deleted: c.Deleted, Revoke: c.Revoke})
	return string(b)
}

// decodeNotice parses a payload; an unknown kind (from a newer feedmq
// sharing the database) becomes a resync, which is always safe.
func decodeNotice(s string) (channels.Change, error) {
	var n notice
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		return channels.Change{}, fmt.Errorf("config notification does not decode: %w", err)
	}
	c := channels.Change{Version: n.Version, Kind: channels.ChangeResync, ID: n.ID, Deleted: n.Deleted, Revoke: n.Revoke}
	for k := channels.ChangeChannel; k <= channels.ChangeResync; k++ {
		if k.String() == n.Kind {
			c.Kind = k
		}
	}
	return c, nil
}

// Atomically runs fn in one transaction under an advisory lock that every
// Atomically call of every process takes, so that a check and the writes
// it guards happen as one. Store calls fn makes with the context it gets
// join the transaction.
func (db *DB) Atomically(ctx context.Context, fn func(ctx context.Context) error) error {
	if _, ok := ctx.Value(txKey{}).(*joined); ok {
		return fn(ctx) // already inside: the lock is held
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(configLock)); err != nil {
		return fmt.Errorf("postgres: lock configuration: %w", err)
	}
	if err := fn(context.WithValue(ctx, txKey{}, &joined{tx: tx})); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: %w", commitError(err))
	}
	return nil
}

// ConfigVersion returns the configuration version: it rises with every
// committed configuration change.
func (db *DB) ConfigVersion(ctx context.Context) (uint64, error) {
	var v int64
	if err := db.q(ctx).QueryRow(ctx, "SELECT version FROM config_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: read config version: %w", err)
	}
	return uint64(v), nil
}

// commitError marks a COMMIT that failed on a lost connection: the
// server may have committed before the connection went.
func commitError(err error) error {
	if pgCode(err) != "" {
		return fmt.Errorf("commit: %w", err) // the server refused it
	}
	return fmt.Errorf("commit: %w: %w", channels.ErrCommitUnknown, err)
}

// pgCode returns the SQLSTATE of err, "" when it has none.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// SQLSTATEs the writes turn into application errors.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)
