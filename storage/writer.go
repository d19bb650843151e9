package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

// Every commit costs an fsync, which dwarfs the cost of writing an entry.
// So appends are not committed one by one: callers queue them, and one
// commit takes everything queued so far with one durable write to the
// active write-ahead log (see wal.go). Under load a commit
// carries many entries; when idle it carries one and adds no delay,
// because nobody waits for more.
//
// The writer's state (sequences, logs, pending records) has one owner at
// a time (busy). A caller that waits for its own commit (AppendEntry,
// AppendEntries) and finds no owner becomes the leader: it commits the
// queue, its own append included, on its own goroutine and answers the
// others in it, as LevelDB's batch writers do. At light load an entry so
// crosses no goroutine at all. A leader that leaves a queue behind hands
// the state to the first caller there that waits, who leads the next
// commit. Appends that do not wait (AppendEntryAsync) and everything else
// the state needs (checkpoint hand-offs, timers, exclusive operations)
// go to the writer goroutine, which waits for the owner like anyone:
// so commits never overlap and follow queue order, and an asynchronous
// caller pays for no fdatasync but, at light load, its own (an append
// that finds the writer idle for a while leads its commit: see
// asyncLeadIdle). Every so often the owner switches
// to the other log and hands the records of the one it leaves to the
// checkpointer goroutine, which copies them into bbolt in one
// transaction while appends go on.
//
// Readers must see every acknowledged entry. Feed reads merge bbolt with
// a copy of the logged entries in memory (tail.go, DB.read), so that
// reads never hold appends up; DB.view and DB.update, for the rarer
// operations that need the file itself current (backups, changes),
// first have everything copied into bbolt when the logs hold anything
// (sync); operations that change entry numbering run on the writer
// goroutine once both logs are empty (exclusive).

const (
	// queueLen is how many asynchronous appends may wait while a commit
	// is running. (Waiting callers are bounded by their goroutines.)
	queueLen = 1024
	// maxBatch bounds one commit, so that a flood cannot grow a commit,
	// and the latency of everyone in it, without limit.
	maxBatch = 4096
	// checkpointBytes of log records trigger a checkpoint (about 20,000
	// typical entries): large enough that each feed's last page is
	// rewritten for many entries at once, small enough that the log in
	// memory stays small.
	checkpointBytes = 1 << 20
	// maxPendingBytes refuses appends while checkpoints keep failing,
	// rather than growing the log and its copy in memory without bound.
	maxPendingBytes = 64 << 20
	// maxKeptBuf is the largest pending buffer kept after a checkpoint,
	// so that one burst does not pin its memory forever.
	maxKeptBuf = 4 << 20
)

// appendReq is one queued append. Requests are pooled: with done reused,
// an append allocates nothing of its own.
type appendReq struct {
	e *channels.Entry
	// es, when set instead of e, is a batch of one channel's entries that
	// is committed whole or not at all (AppendEntries).
	es   []*channels.Entry
	done chan error // buffered, so the writer never blocks on a caller
	// then, when set, is called with the outcome in commit order on the
	// committing goroutine, before the caller (if it waits) is answered
	// on done.
	then func(*channels.Entry, error)
	// async says the caller did not wait (AppendEntryAsync): then
	// answers it, and r goes back to the pool after.
	async bool
}

var reqPool = sync.Pool{New: func() any {
	return &appendReq{done: make(chan error, 1)}
}}

// ctlReq asks the writer to checkpoint and then, when fn is set, to run fn
// while no append is in progress. With idle set (tests), it only waits for
// the running checkpoint.
type ctlReq struct {
	fn   func() error
	idle bool
	// grow marks an fn that only adds entries after each feed's last ID
	// (an import): readers need not start again, so the tail and its
	// generation stay.
	grow bool
	done chan error
}

// errLead, sent on a waiting caller's done, hands it the writer's state:
// it leads the next commit and then waits for its own answer again.
var errLead = errors.New("lead the next commit")

// writer owns the write-ahead logs and the appends.
type writer struct {
	db   *DB
	logs [2]*wal // nil when read-only
	log  *wal    // the active one of logs
	ctl  chan ctlReq

	// mu keeps the writer there for control requests: they hold it
	// shared until answered, Close holds it exclusively.
	mu sync.RWMutex
	// closed is written holding both mu and qmu, read holding either.
	closed  bool
	quit    chan struct{} // closed by stop
	stopped chan struct{}

	// qmu guards the queue and who owns the writer's state.
	qmu   sync.Mutex
	queue []*appendReq // in the order of arrival
	// busy says that a leader or the writer goroutine owns the state;
	// only the owner gives it up (release).
	busy bool
	// idleSince is when busy last became false (see asyncLeadIdle).
	idleSince time.Time
	// writerWaits says that the writer goroutine waits for the state
	// (see acquire): the owner hands it over before anyone queued.
	writerWaits bool
	// own hands the state to the writer goroutine: in its loop to
	// commit the queue, or in acquire. At most one token is in flight.
	own chan struct{}
	// slots bounds the queued asynchronous appends (queueLen).
	slots chan struct{}
	// gatherWant, when set, is the queue length at which gathered is
	// signalled (see gather).
	gatherWant int
	gathered   chan struct{}

	// unapplied counts entries in the logs that are not yet in bbolt;
	// read without the writer so that sync costs nothing when it is zero.
	unapplied atomic.Int64
	// tail is a copy of those entries for readers (see tail.go).
	tail *tail

	// jobs hands a checkpoint to the checkpointer goroutine, which
	// answers on done.
	jobs        chan *ckptJob
	done        chan *ckptJob
	ckptStopped chan struct{} // closed when the checkpointer has ended

	// Only the owner of the state (busy) touches the rest.
	batch []*appendReq
	errs  []error
	// woken is how many waiting callers the last commit answered, and
	// lastCommit how long its write and fdatasync took (see gather);
	// lastBatch is how many appends it carried (see asyncLeadIdle).
	woken      int
	lastCommit time.Duration
	lastBatch  int
	gatherT    *time.Timer
	// seqs is the last entry ID given out per channel: bbolt's feed
	// sequence plus what the logs hold. Entries are forgotten only while
	// the logs are applied, when bbolt alone is right again.
	seqs map[uint64]uint64
	undo []seqUndo
	// pending holds the records of the active log's current epoch, the
	// bytes its successful appends wrote, and pendingN counts them.
	pending  []byte
	pendingN int
	// pendingUpto is the last entry ID per channel in pending.
	pendingUpto map[uint64]uint64
	spare       []byte // a buffer a finished checkpoint gave back
	// inflight is the checkpoint the checkpointer is running; failed is
	// one that failed, to be tried again after retryFrom. While either
	// is set, the other log's records are not all in bbolt.
	inflight  *ckptJob
	failed    *ckptJob
	nextEpoch uint64
	timer     *time.Timer
	timerOn   bool
	timerAt   time.Time // when the timer fires, while timerOn
	lastErr   error     // of the last checkpoint, while it keeps failing
	retryFrom time.Time
}

// ckptJob is the records of one log epoch to copy into bbolt.
type ckptJob struct {
	recs  []byte
	epoch uint64
	n     int               // entries in recs
	upto  map[uint64]uint64 // the last entry ID per channel in recs
	err   error
}

// A commit that answered many waiting callers (readers of connections
// that each wait for their acknowledgement) is followed by their next
// appends, but those callers need a moment to run again: committing
// whatever is queued at once would give a small commit, and as many
// fdatasyncs, to the ones that come first. So after such a commit the
// writer waits for as many appends as it answered, for at most the last
// commit's duration and gatherMax, before committing a smaller
// batch. After a commit of fewer than gatherMin waiting callers (light
// load: one device at a time) it never waits, so a lone append is
// committed at once.
const gatherMin = 4

// gatherMax bounds that wait. (A variable for tests.)
var gatherMax = time.Millisecond

// retryDelay spaces checkpoints that failed (a full disk, say): the logs
// keep the entries meanwhile. (A variable for tests.)
var retryDelay = time.Second

// checkpointDelay bounds how long an entry stays only in the log when
// appends are few, so that the database file alone is soon current.
// (A variable for tests.)
var checkpointDelay = time.Second

var errReadOnly = errors.New("database is open read-only")

// seqUndo is what a failed commit restores per appended entry: the
// channel's last ID given out and its last ID in pending (0 for none).
type seqUndo struct{ ch, seq, upto uint64 }

func newWriter(db *DB, logs [2]*wal, nextEpoch uint64) *writer {
	w := &writer{
		db:          db,
		logs:        logs,
		log:         logs[0],
		ctl:         make(chan ctlReq),
		quit:        make(chan struct{}),
		stopped:     make(chan struct{}),
		own:         make(chan struct{}, 1),
		slots:       make(chan struct{}, queueLen),
		gathered:    make(chan struct{}, 1),
		jobs:        make(chan *ckptJob),
		ckptStopped: make(chan struct{}),
		done:        make(chan *ckptJob, 1),
		batch:       make([]*appendReq, 0, maxBatch),
		errs:        make([]error, maxBatch),
		seqs:        make(map[uint64]uint64),
		tail:        newTail(),
		pendingUpto: make(map[uint64]uint64),
		nextEpoch:   nextEpoch,
		timer:       time.NewTimer(time.Hour),
		gatherT:     time.NewTimer(time.Hour),
	}
	w.timer.Stop()
	w.gatherT.Stop()
	go w.checkpointer(checkpointHook) // read here: tests set it before Open
	go w.run()
	return w
}

// AppendEntry assigns e.ID and stores e; it returns once the commit that
// holds e is on disk. If e.CreatedAt is zero it becomes the current time.
func (db *DB) AppendEntry(ctx context.Context, e *channels.Entry) error {
	if e.Set&unknownValues != 0 {
		return channels.Errorf(channels.EINVALID, "entry sets unknown values (mask %#x)", e.Set)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = db.now()
	}
	// Stored with second precision: make e say what the feed will say.
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Second)

	return db.appendWait(ctx, e, nil)
}

// AppendEntryThen is AppendEntry that also calls then with e and the
// outcome, the same error AppendEntry returns, in commit order on the
// goroutine that ran the commit, before it returns, exactly as
// AppendEntryAsync's then is called: so the entries of synchronous and
// asynchronous appends are handed on (fanned out) in the order they were
// committed, which a caller that hands its own entry on after the
// return cannot promise. then is not called when e is refused before it
// is queued (ctx ended, the DB closed, an invalid entry). It must be
// quick and must not append.
func (db *DB) AppendEntryThen(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	if e.Set&unknownValues != 0 {
		return channels.Errorf(channels.EINVALID, "entry sets unknown values (mask %#x)", e.Set)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = db.now()
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Second)
	return db.appendWait(ctx, e, then)
}

func (db *DB) appendWait(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	r := reqPool.Get().(*appendReq)
	r.e, r.then = e, then
	// Not interruptible by ctx once queued: the commit owns e until it
	// answers, and the answer says whether e was stored.
	err := db.w.appendWait(ctx, r)
	r.e, r.then = nil, nil
	reqPool.Put(r)
	return err
}

// AppendEntryAsync queues e like AppendEntry but returns once e is queued;
// then is called with e and the outcome after the commit that holds e (or
// its failure), in queue order, on the goroutine that ran that commit:
// the writer goroutine, the caller of a synchronous append that led it,
// or, when the writer was idle (asyncLeadIdle, or a ctx marked by
// channels.CallerIdle), this caller before AppendEntryAsync returns. So it must be quick and must not append.
// Appends from one caller keep their order. It lets a reader that needs
// no acknowledgement (MQTT QoS 0) go on to its next packet while the
// entry waits for a commit, so one connection can fill a batch; the
// commit runs on the writer goroutine unless a waiting caller leads it
// or the writer was idle, so that a busy reader never waits for an
// fdatasync.
func (db *DB) AppendEntryAsync(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	if e.Set&unknownValues != 0 {
		return channels.Errorf(channels.EINVALID, "entry sets unknown values (mask %#x)", e.Set)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = db.now()
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Second)
	r := reqPool.Get().(*appendReq)
	r.e, r.then, r.async = e, then, true
	if err := db.w.appendAsync(ctx, r); err != nil {
		r.e, r.then, r.async = nil, nil, false
		reqPool.Put(r)
		return err
	}
	return nil
}

// MaxBatchEntries is the most entries AppendEntries takes at once: one
// commit carries them, and a commit is bounded so that nobody waits long
// behind it.
const MaxBatchEntries = maxBatch

// AppendEntries stores the entries of one channel as one batch: all are
// committed in the same write to the log, behind a marker that makes a
// crash keep all of them or none, and numbered consecutively in the
// order given. Zero CreatedAt values become the current time. On error
// none is stored and every ID is 0.
func (db *DB) AppendEntries(ctx context.Context, es []*channels.Entry) error {
	return db.appendBatch(ctx, es, nil)
}

// AppendEntriesThen is AppendEntries that also calls then with the
// outcome, the same error it returns, in commit order on the goroutine
// that ran the commit, before it returns, as AppendEntryThen does for one
// entry. then is not called when the batch is refused before it is
// queued, nor for an empty batch. It must be quick and must not append.
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
	now := db.now()
	for _, e := range es {
		if e.ChannelID != es[0].ChannelID {
			return channels.Errorf(channels.EINVALID, "a batch holds the entries of one channel")
		}
		if e.Set&unknownValues != 0 {
			return channels.Errorf(channels.EINVALID, "entry sets unknown values (mask %#x)", e.Set)
		}
		if e.CreatedAt.IsZero() {
			e.CreatedAt = now
		}
		e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Second)
	}
	r := &appendReq{es: es, done: make(chan error, 1)}
	if then != nil {
		r.then = func(_ *channels.Entry, err error) { then(err) }
	}
	return db.w.appendWait(ctx, r) // not interruptible once queued: the commit owns es until it answers
}

// appendWait queues r and returns its outcome. With nobody owning the
// writer's state, this caller commits the queue itself; otherwise it
// waits for the owner's answer, which may hand it the next commit.
func (w *writer) appendWait(ctx context.Context, r *appendReq) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.qmu.Lock()
	if w.closed {
		w.qmu.Unlock()
		return ErrClosed
	}
	w.push(r)
	lead := !w.busy
	w.busy = true
	w.qmu.Unlock()
	if lead {
		w.lead()
	}
	err := <-r.done
	for err == errLead {
		w.lead()
		err = <-r.done
	}
	return err
}

// appendAsync queues r for the writer goroutine unless ctx ends or the DB
// closes first, waiting only for room in the queue. When the writer is
// idle and has been for asyncLeadIdle, or its caller has nothing else to
// do (channels.CallerIdle) and the last commit carried one append at
// most, the caller commits r itself instead.
func (w *writer) appendAsync(ctx context.Context, r *appendReq) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case w.slots <- struct{}{}:
	default:
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.quit:
			return ErrClosed
		}
	}
	w.qmu.Lock()
	if w.closed {
		w.qmu.Unlock()
		<-w.slots
		return ErrClosed
	}
	w.push(r)
	kick := !w.busy
	// The state is nobody's when kick is set: the last owner's woken is
	// read safely under qmu. A commit after one that answered many
	// waiting callers waits for their appends (gather): not on this
	// caller.
	lead := kick && w.woken < gatherMin &&
		(time.Since(w.idleSince) >= asyncLeadIdle || w.lastBatch <= 1 && channels.IsCallerIdle(ctx))
	w.busy = true
	w.qmu.Unlock()
	switch {
	case lead:
		w.lead()
	case kick:
		w.own <- struct{}{}
	}
	return nil
}

// asyncLeadIdle is how long the writer must have been idle for an
// asynchronous append to commit on its caller's goroutine (a variable
// for tests), unless that commit would wait for other callers' appends
// (gather), which the writer goroutine then does. A device that
// publishes now and then (say once a millisecond) then crosses no
// goroutine: waking the writer goroutine for it cost a futex wake-up
// and a context switch on each side (at 1000 QoS 0 publishes a second,
// this takes 0.82x the context switches and 0.85x the system calls per
// entry). A
// caller that appends again within that time (a fast publisher, entries
// queued while the last commit ran) hands the commit to the writer
// goroutine as before, so such a reader never waits for more than one
// fdatasync in asyncLeadIdle: its next packets are read while the
// writer commits. A caller that says it has nothing else to do
// (channels.CallerIdle: its socket is read empty) leads a commit on an
// idle writer however recent the last one was, as long as that one
// carried a single append (nobody else is appending): the time rule
// alone handed a device publishing every millisecond to the writer
// goroutine whenever a slow commit left less than asyncLeadIdle before
// its next publish, a third of them on this machine. Under load, when
// commits carry several appends, a reader leading the next one would
// commit its own entry alone, where the writer goroutine, a moment
// later, takes what the others queued meanwhile.
var asyncLeadIdle = 250 * time.Microsecond

// push queues r and wakes a gather waiting for the queue to grow; the
// caller holds qmu.
func (w *writer) push(r *appendReq) {
	w.queue = append(w.queue, r)
	if w.gatherWant > 0 && len(w.queue) >= w.gatherWant {
		w.gatherWant = 0
		select {
		case w.gathered <- struct{}{}:
		default:
		}
	}
}

// take moves the queue, in order, into the batch (up to maxBatch); the
// caller holds qmu and owns the state.
func (w *writer) take() {
	n := min(len(w.queue), maxBatch-len(w.batch))
	for _, r := range w.queue[:n] {
		if r.async {
			<-w.slots
		}
	}
	w.batch = append(w.batch, w.queue[:n]...)
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
}

// lead commits what is queued, as the owner of the state, and gives the
// state up.
func (w *writer) lead() {
	owning(true)
	w.qmu.Lock()
	w.take()
	w.qmu.Unlock()
	w.gather()
	if len(w.batch) > 0 {
		w.commit()
	}
	w.maybeCheckpoint(false)
	w.release()
}

// acquire makes the writer goroutine the owner of the state, waiting for
// the running commit to end (control requests must not interleave with
// one) but not for those queued behind it.
func (w *writer) acquire() {
	w.qmu.Lock()
	if !w.busy {
		w.busy = true
		w.qmu.Unlock()
		owning(true)
		return
	}
	w.writerWaits = true
	w.qmu.Unlock()
	// A token may already be on its way (an owner released to the
	// writer's loop): it is this goroutine's either way.
	<-w.own
	w.qmu.Lock()
	w.writerWaits = false
	w.qmu.Unlock()
	owning(true)
}

// release gives up the state: to the writer goroutine when it waits for
// it, else to the first queued caller that waits for its answer (it leads
// the next commit, and commits the asynchronous appends queued before
// it), else, with only asynchronous appends queued, to the writer
// goroutine, so that no caller of AppendEntryAsync pays for a commit of
// others' entries.
func (w *writer) release() {
	owning(false)
	w.qmu.Lock()
	if w.writerWaits {
		w.writerWaits = false
		w.qmu.Unlock()
		w.own <- struct{}{}
		return
	}
	if len(w.queue) == 0 {
		w.busy = false
		w.idleSince = time.Now()
		w.qmu.Unlock()
		return
	}
	var next *appendReq
	for _, r := range w.queue {
		if !r.async {
			next = r
			break
		}
	}
	w.qmu.Unlock()
	if next != nil {
		next.done <- errLead // empty: next is not answered while queued
		return
	}
	w.own <- struct{}{}
}

// sync makes bbolt hold every entry whose append has returned.
func (w *writer) sync(ctx context.Context) error {
	if w.unapplied.Load() == 0 {
		return nil
	}
	return w.control(ctx, nil, false)
}

// exclusive runs fn on the writer goroutine after a checkpoint, so that
// no append is numbered or logged while fn changes feeds, and forgets
// the entry IDs it knew, so that fn may renumber a feed.
func (w *writer) exclusive(ctx context.Context, fn func() error) error {
	return w.control(ctx, fn, false)
}

// appendAfter runs fn like exclusive, for an fn that only adds entries
// with IDs above each feed's sequence: everything logged is in bbolt
// first, so fn sees the true sequences, and the IDs known are forgotten
// after, so the next append continues after what fn stored.
func (w *writer) appendAfter(ctx context.Context, fn func() error) error {
	return w.control(ctx, fn, true)
}

func (w *writer) control(ctx context.Context, fn func() error, grow bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Held until the answer: Close waits for it, so the writer is still
	// there to answer.
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	c := ctlReq{fn: fn, grow: grow, done: make(chan error, 1)}
	select {
	case w.ctl <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-c.done
}

// stop lets queued appends commit, checkpoints, then ends the writer. It
// reports whether this call did the stopping, and the final checkpoint's
// error.
func (w *writer) stop() (bool, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false, nil
	}
	w.qmu.Lock()
	w.closed = true // nothing is queued after this
	w.qmu.Unlock()
	close(w.quit)
	w.mu.Unlock()
	<-w.stopped
	<-w.ckptStopped
	return true, w.lastErr
}

func (w *writer) run() {
	defer close(w.stopped)
	defer close(w.jobs) // ends the checkpointer
	for {
		select {
		case <-w.own: // handed the state to commit the queue
			w.lead()
		case <-w.quit:
			// The running commit ends first; then whatever is queued
			// is committed, and the state is never given up again.
			w.acquire()
			for {
				w.qmu.Lock()
				w.take()
				w.qmu.Unlock()
				if len(w.batch) == 0 {
					break
				}
				w.commit()
			}
			w.lastErr = w.flush(false)
			return
		case c := <-w.ctl:
			w.acquire()
			if c.idle {
				if w.inflight != nil {
					w.finished(<-w.done)
				}
				c.done <- nil
				w.release()
				continue
			}
			err := w.flush(c.fn != nil && !c.grow)
			switch {
			case err != nil || c.fn == nil:
			case c.grow:
				err = c.fn()
				clear(w.seqs)
			default:
				w.tail.reset()
				err = c.fn()
				w.tail.bump()
				clear(w.seqs)
			}
			c.done <- err
			w.maybeCheckpoint(false) // a checkpoint that failed again waits for its retry
			w.release()
		case j := <-w.done:
			w.acquire()
			w.finished(j)
			w.maybeCheckpoint(false)
			w.release()
		case <-w.timer.C:
			w.acquire()
			w.timerOn = false
			w.maybeCheckpoint(true)
			w.release()
		}
	}
}

// checkpointer copies the records of each job into bbolt, one job at a
// time, in the order the writer hands them over.
func (w *writer) checkpointer(hook func() error) {
	defer close(w.ckptStopped)
	for j := range w.jobs {
		if hook != nil {
			if j.err = hook(); j.err != nil {
				w.done <- j
				continue
			}
		}
		j.err = w.apply(j.recs, j.epoch)
		w.done <- j
	}
}

// Tests only: ownHook, when set, is told when a goroutine starts (true)
// and stops (false) using the writer's state, and commitHook is called
// at the start of each commit with the number of appends in it.
var (
	ownHook    atomic.Pointer[func(enter bool)]
	commitHook atomic.Pointer[func(n int)]
)

func owning(enter bool) {
	if f := ownHook.Load(); f != nil {
		(*f)(enter)
	}
}

// checkpointHook, when set (by tests only), runs before each checkpoint on
// the checkpointer goroutine; an error fails the checkpoint.
var checkpointHook func() error

// apply copies records of a log epoch into bbolt in one transaction.
func (w *writer) apply(recs []byte, epoch uint64) error {
	err := w.db.bolt.Update(func(tx *bolt.Tx) error {
		_, err := applyWAL(tx, recs, epoch)
		return err
	})
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// gather waits for the appends of the callers the last commit answered
// when fewer are queued (see gatherMin), and adds them to the batch in
// queue order. It returns when they are all in, at the deadline, or when
// the DB closes. What arrives later is left for the next commit: no
// commit waits beyond that.
func (w *writer) gather() {
	want := min(w.woken, maxBatch)
	if want < gatherMin || len(w.batch) >= want {
		return
	}
	wait := min(w.lastCommit, gatherMax)
	if wait <= 0 {
		return
	}
	w.qmu.Lock()
	w.take()
	if len(w.batch) >= want || w.closed {
		w.qmu.Unlock()
		return
	}
	w.gatherWant = want - len(w.batch)
	w.qmu.Unlock()
	w.gatherT.Reset(wait)
	select {
	case <-w.gathered:
	case <-w.gatherT.C:
	case <-w.quit:
	}
	w.gatherT.Stop()
	w.qmu.Lock()
	w.gatherWant = 0
	select {
	case <-w.gathered: // a signal sent after the deadline
	default:
	}
	w.take()
	w.qmu.Unlock()
}

// commit numbers the batch, logs it with one durable write, and
// answers every caller.
func (w *writer) commit() {
	if f := commitHook.Load(); f != nil {
		(*f)(len(w.batch))
	}
	errs := w.errs[:len(w.batch)]
	mark := len(w.pending)
	w.undo = w.undo[:0]
	stored := 0
	var err error
	switch {
	case w.log == nil:
		err = errReadOnly
	case len(w.pending) >= maxPendingBytes && w.lastErr != nil:
		err = fmt.Errorf("checkpoints keep failing, the log is full: %w", w.lastErr)
	case w.log.broken:
		// Its start-over failed after its records were applied: try
		// again before logging anything in it.
		err = w.startOver(w.log)
	}
	start := time.Now()
	for i, r := range w.batch {
		if err != nil {
			break
		}
		if r.es != nil {
			if errs[i] = w.logBatch(r.es); errs[i] == nil {
				stored += len(r.es)
			}
			continue
		}
		var seq uint64
		if seq, errs[i] = w.seq(r.e.ChannelID); errs[i] != nil {
			continue
		}
		w.logEntry(seq, r.e)
		stored++
	}
	if err == nil && stored > 0 {
		err = w.log.append(w.pending, mark)
		w.lastCommit = time.Since(start)
	}
	if err != nil {
		w.pending = w.pending[:mark]
		for i := len(w.undo) - 1; i >= 0; i-- {
			w.seqs[w.undo[i].ch] = w.undo[i].seq
			// Not seq: that ID may be in a checkpoint's records and
			// not in pending, and a checkpoint of pending would then
			// drop entries it does not hold (after a clear renumbers).
			if w.undo[i].upto > 0 {
				w.pendingUpto[w.undo[i].ch] = w.undo[i].upto
			} else {
				delete(w.pendingUpto, w.undo[i].ch)
			}
		}
		stored = 0
	} else if stored > 0 {
		// Readers see the entries before their writers hear of them.
		w.tail.add(w.pending[mark:])
		w.pendingN += stored
		w.unapplied.Add(int64(stored))
		if w.db.onCommit != nil {
			w.db.onCommit(stored, time.Since(start))
		}
	}
	w.woken, w.lastBatch = 0, len(w.batch)
	for i, r := range w.batch {
		if !r.async {
			w.woken++
		}
		if err != nil && errs[i] == nil {
			if r.es != nil {
				for _, e := range r.es {
					e.ID = 0
				}
				errs[i] = fmt.Errorf("append %d entries to channel %d: %w", len(r.es), r.es[0].ChannelID, err)
			} else {
				r.e.ID = 0 // not logged: no ID was taken
				errs[i] = fmt.Errorf("append entry to channel %d: %w", r.e.ChannelID, err)
			}
		}
		if r.then != nil {
			r.then(r.e, errs[i])
		}
		if r.async {
			// Answered: nothing holds r any more (the batch is cleared
			// below, unread), so it goes back for the next append.
			r.e, r.then, r.async = nil, nil, false
			reqPool.Put(r)
			continue
		}
		r.done <- errs[i] // last touch: the caller may reuse r and r.e now
	}
	clear(w.batch)
	w.batch = w.batch[:0]
	clear(errs)
}

// logEntry numbers e after seq, its channel's last ID, and adds its
// record to pending.
func (w *writer) logEntry(seq uint64, e *channels.Entry) {
	w.undo = append(w.undo, seqUndo{e.ChannelID, seq, w.pendingUpto[e.ChannelID]})
	w.seqs[e.ChannelID] = seq + 1
	e.ID = seq + 1
	w.pending = appendWALRecord(w.pending, w.log.epoch, seq+1, e)
	w.pendingUpto[e.ChannelID] = seq + 1
}

// logBatch numbers the entries of one channel's batch consecutively and
// adds their records to pending behind a marker that names their count
// and length, so that recovery takes them all or none.
func (w *writer) logBatch(es []*channels.Entry) error {
	seq, err := w.seq(es[0].ChannelID)
	if err != nil {
		return err
	}
	mark := len(w.pending)
	w.pending = appendWALMarker(w.pending, w.log.epoch, 0, 0)
	start := len(w.pending)
	for i, e := range es {
		w.logEntry(seq+uint64(i), e)
	}
	// The marker's own CRC covers the count and length, so it is written
	// again now that they are known.
	appendWALMarker(w.pending[:mark], w.log.epoch, uint64(len(es)), uint64(len(w.pending)-start))
	return nil
}

// seq returns the last entry ID given out in a channel, reading it from
// bbolt the first time.
func (w *writer) seq(ch uint64) (uint64, error) {
	if s, ok := w.seqs[ch]; ok {
		return s, nil
	}
	var s uint64
	found := false
	err := w.db.bolt.View(func(tx *bolt.Tx) error {
		if feed := feedBucket(tx, ch); feed != nil {
			s, found = feed.Sequence(), true
		}
		return nil
	})
	if err != nil {
		return 0, err
	} else if !found {
		return 0, channelNotFound(ch)
	}
	w.seqs[ch] = s
	return s, nil
}

// maybeCheckpoint starts a checkpoint once enough is logged, or when due
// (the timer says an entry has waited long enough), unless one is running;
// retries a failed one after retryDelay; and arms the timer for whatever
// stays in the logs.
func (w *writer) maybeCheckpoint(due bool) {
	switch {
	case w.inflight != nil:
		// the next one starts when it is done
	case w.failed != nil:
		if !time.Now().Before(w.retryFrom) {
			w.inflight, w.failed = w.failed, nil
			w.jobs <- w.inflight
		}
	case len(w.pending) > 0 && (due || len(w.pending) >= checkpointBytes) &&
		(w.lastErr == nil || !time.Now().Before(w.retryFrom)):
		if err := w.switchLog(); err != nil {
			w.lastErr, w.retryFrom = err, time.Now().Add(retryDelay)
			w.report(err)
		}
	}
	// A retry due sooner than the timer already set (for entries logged
	// before the failure) moves it earlier; otherwise a set timer stands,
	// and a commit reads no clock here.
	retry := w.failed != nil || w.lastErr != nil
	if (len(w.pending) > 0 || w.failed != nil) && w.inflight == nil && (!w.timerOn || retry) {
		d := checkpointDelay
		if retry {
			d = max(time.Until(w.retryFrom), time.Millisecond)
		}
		if at := time.Now().Add(d); !w.timerOn || at.Before(w.timerAt) {
			w.timer.Reset(d)
			w.timerOn, w.timerAt = true, at
		}
	}
}

// switchLog makes the other log active and hands the records of the one
// it leaves to the checkpointer. The other log's own records are in bbolt
// already (no checkpoint is running or failed), so it may start over.
func (w *writer) switchLog() error {
	next := w.logs[0]
	if next == w.log {
		next = w.logs[1]
	}
	if w.log.tail {
		// Records of a failed append past the end must not outlive
		// the switch: their IDs are given again in the next log.
		if err := w.log.clearTail(w.pending); err != nil {
			return err
		}
	}
	if err := w.startOver(next); err != nil {
		return err
	}
	j := &ckptJob{recs: w.pending, epoch: w.log.epoch, n: w.pendingN, upto: w.pendingUpto}
	w.pending, w.spare, w.pendingN = w.spare[:0], nil, 0
	w.pendingUpto = make(map[uint64]uint64)
	w.log = next
	w.inflight = j
	w.jobs <- j
	return nil
}

// finished takes the outcome of a checkpoint.
func (w *writer) finished(j *ckptJob) {
	w.inflight = nil
	if j.err != nil {
		w.failed = j
		w.lastErr, w.retryFrom = j.err, time.Now().Add(retryDelay)
		w.report(j.err)
		return
	}
	w.lastErr = nil
	w.unapplied.Add(-int64(j.n))
	w.tail.drop(j.upto)
	if cap(j.recs) <= maxKeptBuf {
		w.spare = j.recs[:0]
	}
}

func (w *writer) report(err error) {
	if w.db.onError != nil {
		w.db.onError(err)
	}
}

// flush copies every logged entry into bbolt, on this goroutine: it waits
// for the running checkpoint, retries a failed one, and applies the active
// log. Then the active log starts over, and with empty (for exclusive) so
// does the other, so that neither holds records of a feed that fn may
// renumber.
func (w *writer) flush(empty bool) error {
	if w.log == nil {
		return nil // read-only: nothing is ever logged
	}
	if w.inflight != nil {
		w.finished(<-w.done)
	}
	if j := w.failed; j != nil {
		if err := w.applyNow(j.recs, j.epoch, j.n, j.upto); err != nil {
			return err
		}
		w.failed = nil
	}
	if len(w.pending) > 0 {
		if err := w.applyNow(w.pending, w.log.epoch, w.pendingN, w.pendingUpto); err != nil {
			return err
		}
		w.pending, w.pendingN = w.pending[:0], 0
		clear(w.pendingUpto)
		if cap(w.pending) > maxKeptBuf {
			w.pending = nil
		}
	}
	w.lastErr = nil
	if w.timerOn {
		w.timer.Stop()
		w.timerOn = false
	}
	// bbolt holds every record now. The other log first, so that the
	// active one keeps the newest epoch. Should a start-over fail, that
	// log refuses appends until one succeeds (see wal.append). For sync
	// nothing is lost either way; for exclusive, whose fn may renumber a
	// feed, a log that may still hold its records is an error: fn must
	// not run.
	for _, l := range w.logs {
		if l == w.log || !(empty && l.dirty) {
			continue
		}
		if err := w.startOver(l); err != nil {
			return err
		}
	}
	if w.log.dirty {
		if err := w.startOver(w.log); err != nil {
			if empty {
				return err
			}
			w.report(err)
		}
	}
	return nil
}

// applyNow applies n entries' records on the writer goroutine (flush).
func (w *writer) applyNow(recs []byte, epoch uint64, n int, upto map[uint64]uint64) error {
	if err := w.apply(recs, epoch); err != nil {
		w.lastErr, w.retryFrom = err, time.Now().Add(retryDelay)
		return err
	}
	w.unapplied.Add(-int64(n))
	w.tail.drop(upto)
	return nil
}

// startOver empties l under an epoch newer than any before, in either log.
// A number is never used twice, even by a failed attempt (Open empties
// both files before it picks the next one), so no two files can claim
// the same epoch.
func (w *writer) startOver(l *wal) error {
	e := w.nextEpoch
	w.nextEpoch++
	return l.restart(e)
}
