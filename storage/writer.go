package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

// Every bbolt commit costs an fsync, which dwarfs the cost of writing an
// entry. So appends are not committed one by one: callers queue them, and
// one writer goroutine commits everything queued so far in a single
// transaction. Under load a commit carries many entries; when idle it
// carries one and adds no delay, because the writer never waits for more.

const (
	// queueLen is how many appends may wait while a commit is running.
	queueLen = 1024
	// maxBatch bounds one transaction, so that a flood cannot grow a
	// commit, and the latency of everyone in it, without limit.
	maxBatch = 4096
	// maxKeptBuf is the largest encoding buffer kept between batches, so
	// that one burst of large entries does not pin its memory forever.
	maxKeptBuf = 1 << 20
)

// appendReq is one queued append. Requests are pooled: with done reused,
// an append allocates nothing of its own.
type appendReq struct {
	e    *channels.Entry
	done chan error // buffered, so the writer never blocks on a caller
	// then, when set, is called instead of answering on done: the caller
	// of AppendEntryAsync did not wait.
	then func(*channels.Entry, error)
}

var reqPool = sync.Pool{New: func() any {
	return &appendReq{done: make(chan error, 1)}
}}

// writer owns the write transactions of AppendEntry.
type writer struct {
	db   *DB
	reqs chan *appendReq

	// mu guards closed against sends racing with close(reqs): senders
	// hold it shared while they send, Close holds it exclusively.
	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}

	// Reused by every batch; only the writer goroutine touches them.
	batch []*appendReq
	errs  []error
	buf   []byte
}

func newWriter(db *DB) *writer {
	w := &writer{
		db:      db,
		reqs:    make(chan *appendReq, queueLen),
		stopped: make(chan struct{}),
		batch:   make([]*appendReq, 0, maxBatch),
		errs:    make([]error, maxBatch),
	}
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

	r := reqPool.Get().(*appendReq)
	r.e = e
	err := db.w.enqueue(ctx, r)
	if err == nil {
		// Not interruptible by ctx: the writer owns e until it answers,
		// and the answer says whether e was stored.
		err = <-r.done
	}
	r.e = nil
	reqPool.Put(r)
	return err
}

// AppendEntryAsync queues e like AppendEntry but returns once e is queued;
// then is called with e and the outcome after the commit that holds e (or
// its failure), from the writer goroutine and in queue order, so it must
// be quick. Appends from one caller keep their order. It lets a reader
// that needs no acknowledgement (MQTT QoS 0) go on to its next packet
// while the entry waits for a commit, so one connection can fill a batch.
func (db *DB) AppendEntryAsync(ctx context.Context, e *channels.Entry, then func(*channels.Entry, error)) error {
	if e.Set&unknownValues != 0 {
		return channels.Errorf(channels.EINVALID, "entry sets unknown values (mask %#x)", e.Set)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = db.now()
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Second)
	r := &appendReq{e: e, then: then}
	return db.w.enqueue(ctx, r)
}

// enqueue hands r to the writer unless ctx ends or the DB closes first.
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

// stop lets queued appends commit, then ends the writer. It reports
// whether this call did the stopping.
func (w *writer) stop() bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	w.closed = true
	close(w.reqs) // no sender holds mu, so none can be mid-send
	w.mu.Unlock()
	<-w.stopped
	return true
}

func (w *writer) run() {
	defer close(w.stopped)
	for r := range w.reqs {
		w.batch = append(w.batch[:0], r)
		w.drain()
		w.commit()
	}
}

// drain adds to the batch whatever is queued right now, without waiting:
// a caller that arrives later is better served by the next commit than by
// delaying this one.
func (w *writer) drain() {
	for len(w.batch) < maxBatch {
		select {
		case r, ok := <-w.reqs:
			if !ok {
				return
			}
			w.batch = append(w.batch, r)
		default:
			return
		}
	}
}

// commit writes the batch in one transaction and answers every caller.
func (w *writer) commit() {
	errs := w.errs[:len(w.batch)]
	w.buf = w.buf[:0]
	stored := 0
	start := time.Now()
	err := w.db.bolt.Update(func(tx *bolt.Tx) error {
		stored = 0
		for i, r := range w.batch {
			var err error
			if errs[i], err = w.put(tx, r.e); err != nil {
				return err
			}
			if errs[i] == nil {
				stored++
			}
		}
		return nil
	})
	if err == nil && w.db.onCommit != nil {
		w.db.onCommit(stored, time.Since(start))
	}
	for i, r := range w.batch {
		if err != nil {
			r.e.ID = 0 // the transaction rolled back: no ID was taken
			errs[i] = fmt.Errorf("append entry to channel %d: %w", r.e.ChannelID, err)
		}
		if r.then != nil {
			r.then(r.e, errs[i])
			continue
		}
		r.done <- errs[i] // last touch: the caller may reuse r and r.e now
	}
	clear(w.batch)
	clear(errs)
	if cap(w.buf) > maxKeptBuf {
		w.buf = nil
	}
}

// put stores one entry. A missing channel concerns only its caller and is
// returned as reqErr, before anything is written, so that the rest of the
// batch still commits; any other failure aborts the transaction.
func (w *writer) put(tx *bolt.Tx, e *channels.Entry) (reqErr, txErr error) {
	feed := feedBucket(tx, e.ChannelID)
	if feed == nil {
		return channelNotFound(e.ChannelID), nil
	}
	id, err := feed.NextSequence()
	if err != nil {
		return nil, err
	}
	// bbolt keeps key and value until the commit, so each entry gets its
	// own span of buf. Growing buf copies it, but earlier spans keep the
	// old array alive and unchanged.
	start := len(w.buf)
	w.buf = binary.BigEndian.AppendUint64(w.buf, id)
	w.buf = encodeEntry(w.buf, e)
	key, val := w.buf[start:start+8:start+8], w.buf[start+8:]
	if err := feed.Put(key, val); err != nil {
		return nil, err
	}
	e.ID = id
	return nil, nil
}
