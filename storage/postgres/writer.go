package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Every commit waits for the database to flush its log (and, with a
// synchronous standby, for the standby), which dwarfs the cost of one
// entry. So appends are not committed one by one: callers queue them, and
// one writer goroutine per DB commits everything queued so far in one
// transaction, sent as one pipeline (no round trip while rows are
// locked): it locks the batch's channel rows in id order (so that writers
// in other processes, locking the same way, cannot deadlock with it), then
// one statement checks each channel's rate limit by the database clock,
// adds to last_entry_id what it accepts, and inserts the accepted entries
// numbered by their place in the queue. IDs come only from the row the
// transaction holds locked, so they are gapless across processes.

const (
	// queueLen is how many appends may wait while a commit is running.
	queueLen = 1024
	// MaxBatchEntries bounds one commit (and so AppendEntries), so that a
	// flood cannot grow a commit, and the wait of everyone in it, without
	// limit.
	MaxBatchEntries = 4096
)

// ErrClosed is returned by appends after Close.
var ErrClosed = errors.New("database is closed")

// appendReq is one queued append: one entry, or the entries of one
// AppendEntries call, which are stored together or not at all.
type appendReq struct {
	es   []*channels.Entry
	one  [1]*channels.Entry // es's array for a single entry
	done chan error         // buffered: the writer never blocks on a caller
	// then, when set, is called instead of answering on done, or before
	// it when wait is set (AppendEntryThen); thenBatch likewise for a
	// batch (AppendEntriesThen). Both run on the writer goroutine, in
	// commit order.
	then      func(*channels.Entry, error)
	thenBatch func(error)
	wait      bool
}

type writer struct {
	db   *DB
	reqs chan *appendReq

	// mu guards closed against sends racing with close(reqs).
	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}

	// Only the writer goroutine touches the rest.
	batch []*appendReq
	cols  batchCols
}

// batchCols are the statement's array parameters, one element per entry
// in queue order, reused from batch to batch.
type batchCols struct {
	ch      []int64
	grp     []int32
	created []*int64
	vals    [channels.NumValues][]*string
	ids     []int64 // distinct channel IDs, ascending
}

var reqPool = sync.Pool{New: func() any {
	return &appendReq{done: make(chan error, 1)}
}}

func newWriter(db *DB) *writer {
	w := &writer{
		db:      db,
		reqs:    make(chan *appendReq, queueLen),
		stopped: make(chan struct{}),
	}
	go w.run()
	return w
}

// AppendEntry assigns e.ID and stores e; it returns once the transaction
// holding e has committed. A zero e.CreatedAt becomes the database's
// current time. Errors: ENOTFOUND, ERATELIMIT (the channel's rate limit,
// or Options.RateLimit, checked by the database clock), a chain holding
// channels.ErrCommitUnknown when the connection was lost during the
// commit (e may be stored; e.ID is then 0).
func (db *DB) AppendEntry(ctx context.Context, e *channels.Entry) error {
	return db.appendOne(ctx, e, nil)
}

// AppendEntryAsync queues e like AppendEntry but returns once e is
// queued; then is called with e and the outcome after the commit, from
// the writer goroutine in queue order, so it must be quick.
func (db *DB) AppendEntryAsync(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	db.stamp(e)
	if err := checkEntry(e); err != nil {
		return err
	}
	r := &appendReq{then: then}
	r.one[0] = e
	r.es = r.one[:]
	return db.w.enqueue(ctx, r)
}

// AppendEntryThen is AppendEntry that also calls then with e and the
// outcome on the writer goroutine, in commit order with every other
// answer, before it returns (channels.OrderedAppender): a caller that
// hands e on in then cannot be passed by an entry committed after it.
func (db *DB) AppendEntryThen(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	return db.appendOne(ctx, e, then)
}

// appendOne queues e and waits for its answer; then, when set, is called
// before it on the writer goroutine.
func (db *DB) appendOne(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	db.stamp(e)
	if err := checkEntry(e); err != nil {
		return err
	}
	r := reqPool.Get().(*appendReq)
	r.one[0] = e
	r.es = r.one[:]
	r.then, r.wait = then, then != nil
	err := db.w.enqueue(ctx, r)
	if err == nil {
		// Not interruptible by ctx: the writer owns e until it answers,
		// and the answer says whether e was stored.
		err = <-r.done
	}
	r.one[0], r.es, r.then, r.wait = nil, nil, nil, false
	reqPool.Put(r)
	return err
}

// AppendEntries stores entries of one channel in one transaction, all or
// none, numbered consecutively in the order given. For the rate limit
// they count as one write. On error every ID is 0.
func (db *DB) AppendEntries(ctx context.Context, es []*channels.Entry) error {
	return db.appendBatch(ctx, es, nil)
}

// AppendEntriesThen is AppendEntries that also calls then with the
// outcome on the writer goroutine, in commit order, before it returns
// (channels.OrderedBatchAppender).
func (db *DB) AppendEntriesThen(ctx context.Context, es []*channels.Entry, then func(error)) error {
	return db.appendBatch(ctx, es, then)
}

func (db *DB) appendBatch(ctx context.Context, es []*channels.Entry, then func(error)) error {
	if len(es) == 0 {
		return nil
	}
	if len(es) > MaxBatchEntries {
		return channels.Errorf(channels.EINVALID, "a batch holds at most %d entries, not %d", MaxBatchEntries, len(es))
	}
	for _, e := range es {
		if e.ChannelID != es[0].ChannelID {
			return channels.Errorf(channels.EINVALID, "a batch holds the entries of one channel")
		}
		db.stamp(e)
		if err := checkEntry(e); err != nil {
			return err
		}
	}
	r := &appendReq{es: es, done: make(chan error, 1), thenBatch: then}
	if err := db.w.enqueue(ctx, r); err != nil {
		return err
	}
	return <-r.done
}

// checkEntry refuses what the table cannot hold and truncates CreatedAt
// to the second it will be stored with.
func checkEntry(e *channels.Entry) error {
	if e.Set>>channels.NumValues != 0 {
		return channels.Errorf(channels.EINVALID, "entry sets unknown values (mask %#x)", e.Set)
	}
	if e.ChannelID == 0 || e.ChannelID > 1<<63-1 {
		return channelNotFound(e.ChannelID)
	}
	// PostgreSQL text holds neither: refused here, such a value would
	// fail the whole shared commit, and every other caller in it. The
	// parsers refuse them already.
	for i := range e.Values {
		if v := e.Values[i]; e.Set&(1<<i) != 0 && (strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v)) {
			return channels.Errorf(channels.EINVALID, "%s is not valid UTF-8 text without NUL bytes", channels.ValueName(i))
		}
	}
	if !e.CreatedAt.IsZero() {
		e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Second)
	}
	return nil
}

func (w *writer) enqueue(ctx context.Context, r *appendReq) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop lets queued appends commit and ends the writer; it reports whether
// this call did the stopping.
func (w *writer) stop() bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	w.closed = true
	close(w.reqs)
	w.mu.Unlock()
	<-w.stopped
	return true
}

func (w *writer) run() {
	defer close(w.stopped)
	for r := range w.reqs {
		w.batch = append(w.batch[:0], r)
		w.drain(len(r.es))
		w.commit()
		clear(w.batch)
	}
}

// drain adds what is queued right now, without waiting, up to
// MaxBatchEntries entries: a caller arriving later is better served by
// the next commit than by delaying this one.
func (w *writer) drain(n int) {
	for {
		select {
		case r, ok := <-w.reqs:
			if !ok {
				return
			}
			if n+len(r.es) > MaxBatchEntries {
				// The next commit starts with it.
				w.commit()
				clear(w.batch)
				w.batch, n = w.batch[:0], 0
			}
			w.batch = append(w.batch, r)
			n += len(r.es)
		default:
			return
		}
	}
}

// The lock statement and the append statement of a batch. Parameters of
// appendSQL: $1 channel per entry, $2 request group per entry (the
// entries of one AppendEntries share one), $3 created_at or NULL for the
// database clock, $4..$15 the values (NULL when unset), $16 the default
// rate limit in microseconds. It answers one row per entry, in queue
// order: whether the channel exists, the entry's ID (NULL when refused),
// its created_at, and for a rate refusal the interval and how long ago
// the last write was.
const (
	lockSQL   = `SELECT id FROM channels WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`
	appendSQL = `
WITH req AS (
	SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[],
		$4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
		$10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])
		WITH ORDINALITY AS r(ch, grp, created, f1, f2, f3, f4, f5, f6, f7, f8, lat, lon, elev, st, k)
), grps AS (
	SELECT ch, grp, min(k) AS k0, count(*) AS n FROM req GROUP BY ch, grp
), chk AS (
	SELECT g.*, c.id IS NOT NULL AS found,
		CASE WHEN c.rate_limit_us > 0 THEN c.rate_limit_us ELSE $16::bigint END AS rate_us,
		(extract(epoch FROM statement_timestamp() - c.last_write_at) * 1000000)::bigint AS since_us,
		row_number() OVER (PARTITION BY g.ch ORDER BY g.k0) AS gi
	FROM grps g LEFT JOIN channels c ON c.id = g.ch
), acc AS (
	-- With a rate limit a channel takes one write per batch (they share
	-- one clock reading), and only once the interval has passed. The
	-- statement's start, not the transaction's: it comes after the row
	-- lock, so after the commit of whoever held it before.
	SELECT ch, grp, k0, n, sum(n) OVER (PARTITION BY ch ORDER BY k0) - n AS off
	FROM chk
	WHERE found AND (rate_us = 0 OR (gi = 1 AND (since_us IS NULL OR since_us >= rate_us)))
), upd AS (
	UPDATE channels c SET last_entry_id = c.last_entry_id + t.total, last_write_at = statement_timestamp()
	FROM (SELECT ch, sum(n) AS total FROM acc GROUP BY ch) t
	WHERE c.id = t.ch
	RETURNING c.id, c.last_entry_id - t.total AS base
), num AS (
	SELECT r.*, u.base + a.off + (r.k - a.k0) + 1 AS entry_id,
		coalesce(r.created, floor(extract(epoch FROM statement_timestamp()))::bigint) AS created_at
	FROM req r JOIN acc a ON a.ch = r.ch AND a.grp = r.grp JOIN upd u ON u.id = r.ch
), ins AS (
	INSERT INTO entries (channel_id, entry_id, created_at, field1, field2, field3, field4,
		field5, field6, field7, field8, latitude, longitude, elevation, status)
	SELECT ch, entry_id, created_at, f1, f2, f3, f4, f5, f6, f7, f8, lat, lon, elev, st FROM num
)
SELECT c.found, n.entry_id, n.created_at, c.rate_us, c.since_us
FROM req r JOIN chk c ON c.ch = r.ch AND c.grp = r.grp LEFT JOIN num n ON n.k = r.k
ORDER BY r.k`
)

// commit stores the batch in one transaction and answers every caller.
func (w *writer) commit() {
	c := &w.cols
	c.ch, c.grp, c.created, c.ids = c.ch[:0], c.grp[:0], c.created[:0], c.ids[:0]
	for i := range c.vals {
		c.vals[i] = c.vals[i][:0]
	}
	seen := make(map[int64]bool, 8)
	for g, r := range w.batch {
		for _, e := range r.es {
			ch := int64(e.ChannelID)
			c.ch = append(c.ch, ch)
			c.grp = append(c.grp, int32(g))
			if e.CreatedAt.IsZero() {
				c.created = append(c.created, nil)
			} else {
				s := e.CreatedAt.Unix()
				c.created = append(c.created, &s)
			}
			for i := range c.vals {
				if e.Set&(1<<i) != 0 {
					c.vals[i] = append(c.vals[i], &e.Values[i])
				} else {
					c.vals[i] = append(c.vals[i], nil)
				}
			}
			if !seen[ch] {
				seen[ch] = true
				c.ids = append(c.ids, ch)
			}
		}
	}
	start := time.Now()
	res, err := w.exec()
	if err == nil && w.db.opts.OnCommit != nil {
		n := 0
		for _, r := range res {
			if r.accepted {
				n++
			}
		}
		w.db.opts.OnCommit(n, time.Since(start))
	}
	k := 0
	for _, r := range w.batch {
		rerr := err
		if rerr == nil {
			rerr = outcome(r.es, res[k:k+len(r.es)])
		}
		for i, e := range r.es {
			if rerr == nil {
				e.ID = uint64(res[k+i].id)
				e.CreatedAt = time.Unix(res[k+i].created, 0).UTC()
			} else {
				e.ID = 0
			}
		}
		k += len(r.es)
		if r.thenBatch != nil {
			r.thenBatch(rerr)
		}
		if r.then != nil {
			r.then(r.es[0], rerr)
		}
		if r.then == nil || r.wait {
			r.done <- rerr
		}
	}
}

// result is the answer of appendSQL for one entry.
type result struct {
	found    bool
	id       int64 // 0 when refused
	created  int64
	rateUS   int64
	sinceUS  *int64
	accepted bool
}

// outcome is the error of one request from its entries' results.
func outcome(es []*channels.Entry, res []result) error {
	r := res[0]
	switch {
	case !r.found:
		return channelNotFound(es[0].ChannelID)
	case !r.accepted:
		interval := time.Duration(r.rateUS) * time.Microsecond
		retry := interval
		if r.sinceUS != nil && *r.sinceUS < r.rateUS {
			retry = time.Duration(r.rateUS-*r.sinceUS) * time.Microsecond
		}
		return channels.RateLimited(es[0].ChannelID, interval, retry)
	}
	return nil
}

// exec runs the batch's transaction as one pipeline and returns one
// result per entry.
func (w *writer) exec() ([]result, error) {
	c := &w.cols
	slices.Sort(c.ids)
	ctx := context.Background()
	conn, err := w.db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue(lockSQL, c.ids)
	args := []any{c.ch, c.grp, c.created}
	for i := range c.vals {
		args = append(args, c.vals[i])
	}
	args = append(args, w.db.opts.RateLimit.Microseconds())
	b.Queue(appendSQL, args...)
	// Without BEGIN the pipeline, ended by one Sync, is one implicit
	// transaction that commits when its last statement has run.
	br := conn.SendBatch(ctx, b)
	res, err := readBatch(br, len(c.ch))
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Severity != "FATAL" && pgErr.Severity != "PANIC" {
			// The server answered with an error and carries on: the
			// transaction rolled back.
			return nil, fmt.Errorf("append: %w", err)
		}
		// A server ending the session (FATAL) may do so after the
		// commit is in its log: one whose synchronous standby wait is
		// cut short has committed locally.
		// The connection failed after the batch was sent: it may have
		// committed. pgx closes such a connection, so the pool does not
		// hand it out again.
		if pgErr != nil || !pgconn.SafeToRetry(err) {
			return nil, fmt.Errorf("append: %w: %w", channels.ErrCommitUnknown, err)
		}
		return nil, fmt.Errorf("append: %w", err)
	}
	return res, nil
}

func readBatch(br pgx.BatchResults, n int) ([]result, error) {
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	res := make([]result, 0, n)
	for rows.Next() {
		var r result
		var id, created *int64
		if err := rows.Scan(&r.found, &id, &created, &r.rateUS, &r.sinceUS); err != nil {
			rows.Close()
			return nil, err
		}
		if id != nil {
			r.accepted, r.id, r.created = true, *id, *created
		}
		res = append(res, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(res) != n {
		return nil, fmt.Errorf("append answered %d rows for %d entries", len(res), n)
	}
	return res, nil
}
