package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Test hooks for the entry codec, which is unexported because nothing
// outside storage should depend on the file format.
var (
	EncodeEntry = encodeEntry
	DecodeEntry = decodeEntry
)

// SetPruneBatch makes Prune delete at most n entries per transaction until
// the test ends.
func SetPruneBatch(tb interface{ Cleanup(func()) }, n int) {
	old := pruneBatch
	pruneBatch = n
	tb.Cleanup(func() { pruneBatch = old })
}

// AfterPruneBatch runs fn after each pruning transaction, on the
// goroutine that called Prune, until the test ends.
func AfterPruneBatch(tb interface{ Cleanup(func()) }, fn func()) {
	afterPruneBatch = fn
	tb.Cleanup(func() { afterPruneBatch = nil })
}

// SetAsyncLeadIdle sets how long the writer must have been idle for an
// asynchronous append to commit on its caller's goroutine, until the
// test ends.
func SetAsyncLeadIdle(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := asyncLeadIdle
	asyncLeadIdle = d
	tb.Cleanup(func() { asyncLeadIdle = old })
}

// LockFile takes the lock Restore takes on a database file.
var LockFile = lockFile

// SetCheckpointDelay sets how long appends may stay only in the write-ahead
// log, for databases opened until the test ends.
func SetCheckpointDelay(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := checkpointDelay
	checkpointDelay = d
	tb.Cleanup(func() { checkpointDelay = old })
}

// WALPath is where the first write-ahead log of the database at path
// lives: the active one after Open, which takes every append until a
// checkpoint switches logs.
func WALPath(path string) string { return walPaths(path)[0] }

// WALPaths are both write-ahead logs of the database at path.
func WALPaths(path string) []string { p := walPaths(path); return p[:] }

// HoldCheckpoints makes checkpoints wait until the returned function is
// called (or the test ends): their records stay only in the logs.
func HoldCheckpoints(tb interface{ Cleanup(func()) }) (release func()) {
	gate := make(chan struct{})
	var once bool
	release = func() {
		if !once {
			once = true
			close(gate)
		}
	}
	checkpointHook = func() error { <-gate; return nil }
	tb.Cleanup(func() { release(); checkpointHook = nil })
	return release
}

// FailCheckpoints makes checkpoints run on the checkpointer goroutine fail
// with err, as a full disk would, before they write anything, until the
// returned function is called.
func FailCheckpoints(tb interface{ Cleanup(func()) }, err error) (stop func()) {
	var mu sync.Mutex
	failing := true
	checkpointHook = func() error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return err
		}
		return nil
	}
	tb.Cleanup(func() { checkpointHook = nil })
	return func() {
		mu.Lock()
		failing = false
		mu.Unlock()
	}
}

// SetRetryDelay sets how long a failed checkpoint waits before it is tried
// again, until the test ends.
func SetRetryDelay(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := retryDelay
	retryDelay = d
	tb.Cleanup(func() { retryDelay = old })
}

// WaitCheckpoint waits until no checkpoint of db is running, without
// starting one.
func WaitCheckpoint(db *DB) error {
	c := ctlReq{idle: true, done: make(chan error, 1)}
	db.w.ctl <- c
	return <-c.done
}

// ScanWAL returns the length of the valid records of epoch at the start of
// b (a log file without its header) and their payloads.
func ScanWAL(b []byte, epoch uint64) (n int, payloads [][]byte) {
	n = scanWAL(b, epoch, func(p []byte) { payloads = append(payloads, p) })
	return n, payloads
}

// FailLogSyncs makes the fdatasync after a log append ("append") or
// start-over ("restart") fail, after the write, while fail(op) says so,
// until the test ends.
func FailLogSyncs(tb interface{ Cleanup(func()) }, fail func(op string) bool) {
	f := func(op string) error {
		if fail(op) {
			return errors.New("injected: input/output error")
		}
		return nil
	}
	logFault.Store(&f)
	tb.Cleanup(func() { logFault.Store(nil) })
}

// Sync copies every logged entry of db into the file, as backups and
// changes do before they start (reads do not).
func Sync(tb interface{ Fatal(...any) }, db *DB) {
	if err := db.w.sync(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// Unapplied is how many logged entries are not in the file yet.
func Unapplied(db *DB) int64 { return db.w.unapplied.Load() }

// OrderScanned is how many entries reads have walked, in all, to learn
// feeds' order.
func OrderScanned() uint64 { return orderScanned.Load() }

// HoldNextRead makes the next read wait in its transaction, once it has
// opened it, until release is called; held is closed when it waits.
func HoldNextRead(tb interface{ Cleanup(func()) }) (held <-chan struct{}, release func()) {
	h, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	var first atomic.Bool
	readHook = func() {
		if first.CompareAndSwap(false, true) {
			close(h)
			<-gate
		}
	}
	tb.Cleanup(func() { release(); readHook = nil })
	return h, release
}

// SetOwnHook has fn told when a goroutine starts (true) and stops (false)
// using the writer's state, until the test ends.
func SetOwnHook(tb interface{ Cleanup(func()) }, fn func(enter bool)) {
	ownHook.Store(&fn)
	tb.Cleanup(func() { ownHook.Store(nil) })
}

// SetCommitHook has fn called at the start of every commit with the number
// of appends in it (it may block the commit), until the test ends.
func SetCommitHook(tb interface{ Cleanup(func()) }, fn func(n int)) {
	commitHook.Store(&fn)
	tb.Cleanup(func() { commitHook.Store(nil) })
}

// Queued is how many appends of db wait for a commit.
func Queued(db *DB) int {
	db.w.qmu.Lock()
	defer db.w.qmu.Unlock()
	return len(db.w.queue)
}

// WriterWaits says whether db's writer goroutine waits for a running
// commit to end (a control request or Close behind a leader).
func WriterWaits(db *DB) bool {
	db.w.qmu.Lock()
	defer db.w.qmu.Unlock()
	return db.w.writerWaits
}

// SyncErr copies every logged entry of db into the file, returning the
// error (Sync fails the test instead, and only from its goroutine).
func SyncErr(db *DB) error { return db.w.sync(context.Background()) }

// AsyncQueueLen is how many asynchronous appends may wait for a commit.
const AsyncQueueLen = queueLen

// WALEnd is where the valid records of the log file walFile end: its
// size may be more, the log writing whole 4 KiB blocks.
func WALEnd(walFile string) (int64, error) {
	b, err := os.ReadFile(walFile)
	if err != nil {
		return 0, err
	}
	epoch, ok, err := parseWALHeader(b)
	if err != nil || !ok {
		return 0, fmt.Errorf("%s: no valid header (%v)", walFile, err)
	}
	return int64(walHeaderSize + scanWAL(b[walHeaderSize:], epoch, nil)), nil
}

// Busy says whether someone (a leader or the writer goroutine) owns db's
// writer state: an append's answer comes before its committer gives the
// state up.
func Busy(db *DB) bool {
	db.w.qmu.Lock()
	defer db.w.qmu.Unlock()
	return db.w.busy
}
