// Package storage keeps feedmq's channels, feeds and devices in one bbolt
// file. DB implements channels.Store and auth.Store.
//
// # Layout
//
// The file holds these top-level buckets:
//
//	meta       schema_version -> 8-byte big-endian version (currently 1)
//	channels   8-byte big-endian channel id -> JSON channel record
//	feeds      8-byte big-endian channel id -> nested bucket:
//	           8-byte big-endian entry_id -> binary entry (see entry.go)
//	devices    8-byte big-endian device id -> JSON device record
//	usernames  username -> 8-byte big-endian device id
//	account    owner -> JSON owner account record (missing in files
//	           only older feedmq versions wrote; see account.go)
//	access     rules -> JSON record of the access rules of anonymous
//	           connections and of everyone (missing in older files; see
//	           rules.go); a device's own rules are in its record
//
// Channel and device IDs come from NextSequence of their bucket, entry IDs
// from the channel's feed bucket sequence (the writer keeps it in memory
// and stores it with each checkpoint), so IDs are never reused
// and Cursor.Last serves "the newest N entries" without an index.
// Retention (prune.go) deletes entries only from the oldest end, so a
// feed's keys always run without gaps up to its sequence.
//
// The meta bucket's schema_version tells which layout a file has; Open
// migrates older files (migrate.go) and refuses newer ones.
//
// # Writes
//
// AppendEntry is the hot path: one commit at a time logs every queued
// append with one durable write (internal/datasync) to one of two write-ahead logs
// beside the file (wal.go), run by the first caller that finds none
// running (a commit leader) or by the writer goroutine; every megabyte or second it switches logs, and
// a checkpointer goroutine copies the log it left into the feeds in one
// transaction while appends go on (writer.go). Reads and other writes
// first wait for every logged entry to be copied, so they see every
// acknowledged entry. AppendEntries logs one channel's batch in one
// commit, all or none (the HTTP bulk write). Other writes use their own
// transaction.
package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout version this package reads and writes.
const SchemaVersion = 1

// Bucket and key names of the layout described in the package doc.
var (
	metaBucket      = []byte("meta")
	channelsBucket  = []byte("channels")
	feedsBucket     = []byte("feeds")
	devicesBucket   = []byte("devices")
	usernamesBucket = []byte("usernames")

	schemaVersionKey = []byte("schema_version")

	dataBuckets = [][]byte{channelsBucket, feedsBucket, devicesBucket, usernamesBucket}
	// openBuckets are created by a writing Open; the account bucket is not
	// required of a file (see account.go).
	openBuckets = append(dataBuckets[:len(dataBuckets):len(dataBuckets)], accountBucket, accessBucket)
)

var (
	// ErrLocked is returned by Open when another process holds the file.
	ErrLocked = errors.New("locked by another process (is feedmq serve running?)")
	// ErrClosed is returned by AppendEntry after Close.
	ErrClosed = errors.New("database is closed")
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// Now returns the current time; tests replace it. Default time.Now.
	Now func() time.Time
	// Timeout bounds the wait for the file lock. Default 1s, so that an
	// admin command next to a running server fails fast instead of hanging.
	Timeout time.Duration
	// ReadOnly opens an existing database without writing to it, under a
	// shared lock: for check and backup. It neither stamps nor migrates
	// the file, so a file of an older schema version is refused; writes
	// fail.
	ReadOnly bool
	// OnCommit, when set, is called after each group commit of appends
	// that reached the disk (the write-ahead log), with the number of
	// entries it stored and how long it took (fdatasync included). It
	// runs on the goroutine that committed (the writer goroutine, or the
	// caller of an append that led the commit), before the commit's
	// callers are answered, so it must be quick and must not call DB.
	OnCommit func(entries int, d time.Duration)
	// OnError, when set, is told of failures that no caller sees: a
	// checkpoint that could not copy the write-ahead log into the file
	// (it is retried; the log keeps the entries). It runs on the writer
	// goroutine and must not call DB.
	OnError func(err error)
}

func (o *Options) ensureDefaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
}

// DB is an open feedmq database.
type DB struct {
	bolt *bolt.DB
	path string
	now  func() time.Time
	w    *writer

	onCommit func(entries int, d time.Duration) // Options.OnCommit, or nil
	onError  func(err error)                    // Options.OnError, or nil

	order orderCache // where each feed's created_at stops following its IDs
}

// Open opens or creates the database at path, creating its directory if
// needed. Only one process may have a database open at a time.
func Open(path string, opts Options) (*DB, error) {
	opts.ensureDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	if opts.ReadOnly {
		// bbolt would create a missing file even when read-only.
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
	}
	bdb, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	init := initSchema
	if opts.ReadOnly {
		init = checkSchema
		err = bdb.View(init)
	} else {
		err = bdb.Update(init)
	}
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	var (
		logs  [2]*wal
		epoch uint64
	)
	if opts.ReadOnly {
		err = checkWAL(bdb, path)
	} else {
		logs, epoch, err = recoverWAL(bdb, path)
	}
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	db := &DB{bolt: bdb, path: path, now: opts.Now, onCommit: opts.OnCommit, onError: opts.OnError}
	db.w = newWriter(db, logs, epoch)
	return db, nil
}

// recoverWAL opens the write-ahead logs of the database at path, copies
// into bdb whatever entries they hold (a crash left them there), oldest
// epoch first, and starts both over: the first is the active log. It
// returns the logs and the next epoch to use.
func recoverWAL(bdb *bolt.DB, path string) (logs [2]*wal, next uint64, err error) {
	var recs [2][]byte
	closeAll := func() {
		for _, l := range logs {
			if l != nil {
				l.close()
			}
		}
	}
	for i, p := range walPaths(path) {
		if logs[i], recs[i], err = openWAL(p); err != nil {
			closeAll()
			return logs, 0, err
		}
	}
	order := [2]int{0, 1}
	if logs[1].epoch < logs[0].epoch {
		order = [2]int{1, 0}
	}
	if len(recs[0])+len(recs[1]) > 0 {
		err = bdb.Update(func(tx *bolt.Tx) error {
			for _, i := range order {
				if _, err := applyWAL(tx, recs[i], logs[i].epoch); err != nil {
					return err
				}
			}
			return nil
		})
	}
	// Both files lose every record before they get a new epoch: an epoch
	// read from a torn header is unknown, and the next one picked here
	// could be one that old records in that file were written in. The
	// second log first, so that the active one has the newest epoch.
	next = max(logs[0].epoch, logs[1].epoch) + 1
	for _, i := range []int{1, 0} {
		if err == nil {
			err = logs[i].empty()
		}
		if err == nil {
			err = logs[i].restart(next)
			next++
		}
	}
	if err == nil {
		err = syncDir(filepath.Dir(path)) // the logs may be new files
	}
	if err != nil {
		closeAll()
		return logs, 0, fmt.Errorf("recover write-ahead log: %w", err)
	}
	return logs, next, nil
}

// checkWAL refuses a read-only open of a database whose logs hold entries
// that are not in the file: a reader of the file alone would miss them.
// Records the file has already (a log keeps them until it is used again)
// do not count.
func checkWAL(bdb *bolt.DB, path string) error {
	unapplied := false
	err := bdb.View(func(tx *bolt.Tx) error {
		feeds := tx.Bucket(feedsBucket)
		return eachWALRecord(path, func(rec []byte) {
			feed := feeds.Bucket(rec[:8])
			if feed != nil && binary.BigEndian.Uint64(rec[8:16]) > feed.Sequence() {
				unapplied = true
			}
		})
	})
	if err != nil {
		return err
	}
	if unapplied {
		return ErrUnappliedLog
	}
	return nil
}

// openBolt opens and locks the bbolt file at path. Restore replaces the
// file by rename while it holds the old file's lock; whoever opened the old
// file and waited for its lock would then run on a file that is no longer
// the database. So the lock is taken on whatever path named before the
// open and still names after it, or the open is retried.
func openBolt(path string, opts Options) (*bolt.DB, error) {
	for attempt := 0; ; attempt++ {
		before, statErr := os.Stat(path)
		bdb, err := bolt.Open(path, 0o600, boltOptions(opts))
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("database %s is %w", path, ErrLocked)
		} else if err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
		after, err := os.Stat(path)
		if statErr != nil || (err == nil && os.SameFile(before, after)) {
			return bdb, nil // new, or the file that was opened
		}
		bdb.Close()
		if attempt == 2 {
			return nil, fmt.Errorf("open database %s: the file keeps being replaced; retry", path)
		}
	}
}

// Close flushes queued appends, stops the writer and closes the file.
// Calling it again is a no-op.
func (db *DB) Close() error {
	stopped, err := db.w.stop()
	if !stopped {
		return nil
	}
	if db.w.log != nil {
		for _, l := range db.w.logs {
			err = errors.Join(err, l.close())
		}
		if err == nil {
			// Every entry is in the file: the logs are not needed, and
			// a stopped database is then one file, copied as such.
			err = removeWAL(db.path)
		}
	}
	if cerr := db.bolt.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("close database %s: %w", db.path, err)
	}
	return nil
}

// Path returns the path of the database file.
func (db *DB) Path() string { return db.path }

// initSchema stamps a new file, migrates a file of an older schema version
// (see migrate.go) and refuses files that a newer feedmq wrote or that
// something else wrote: writing our buckets into them would corrupt data
// we do not understand.
func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(metaBucket)
	if meta == nil {
		if err := checkEmpty(tx); err != nil {
			return err
		}
		var err error
		if meta, err = tx.CreateBucket(metaBucket); err != nil {
			return fmt.Errorf("create meta bucket: %w", err)
		}
		if err := meta.Put(schemaVersionKey, itob(latestVersion)); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	}
	if err := checkVersion(meta); err != nil {
		return err
	}
	if err := migrate(tx, meta); err != nil {
		return err
	}
	for _, name := range openBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// checkEmpty refuses a file without our meta bucket that holds anything.
func checkEmpty(tx *bolt.Tx) error {
	return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		return fmt.Errorf("not a feedmq database (unknown bucket %q); use another --data directory", name)
	})
}

// checkSchema is initSchema for a read-only open: it only verifies that
// the file is a feedmq database of the current schema version.
func checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(metaBucket)
	if meta == nil {
		if err := checkEmpty(tx); err != nil {
			return err
		}
		return fmt.Errorf("not a feedmq database (no meta bucket)")
	}
	if err := checkVersion(meta); err != nil {
		return err
	}
	if n := btoi(meta.Get(schemaVersionKey)); n != latestVersion {
		return fmt.Errorf("schema version %d is older than this feedmq's (%d) and cannot be migrated read-only; "+
			"open it once with feedmq serve or an admin command", n, latestVersion)
	}
	for _, name := range dataBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("not a feedmq database (bucket %s is missing)", name)
		}
	}
	return nil
}

func checkVersion(meta *bolt.Bucket) error {
	v := meta.Get(schemaVersionKey)
	if len(v) != 8 {
		return fmt.Errorf("not a feedmq database (no valid schema_version)")
	}
	if n := btoi(v); n > latestVersion {
		return fmt.Errorf("schema version %d is newer than this feedmq supports (%d); upgrade feedmq", n, latestVersion)
	} else if n < 1 {
		return fmt.Errorf("invalid schema version %d", n)
	}
	return nil
}

// update runs fn in a write transaction, after every acknowledged append
// is in the file (see writer.sync). bbolt cannot abandon a
// transaction midway, so ctx is only checked before it starts.
// Application errors pass through untouched so callers can branch on their
// code; anything else gets op as context.
func (db *DB) update(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.w.sync(ctx); err != nil {
		return wrap(op, err)
	}
	return wrap(op, db.bolt.Update(fn))
}

// view is update for read-only transactions.
func (db *DB) view(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.w.sync(ctx); err != nil {
		return wrap(op, err)
	}
	return wrap(op, db.bolt.View(fn))
}

func wrap(op string, err error) error {
	if err == nil || channels.ErrorCode(err) != channels.EINTERNAL {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// itob encodes an ID as a key that sorts numerically.
func itob(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

func btoi(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func channelNotFound(id uint64) error {
	return &channels.Error{Code: channels.ENOTFOUND, Message: fmt.Sprintf("channel %d not found", id), Err: channels.ErrChannelNotFound}
}

// boltOptions tunes bbolt for many small commits. The free-page list is
// not written on every commit (bbolt rebuilds it by scanning at open,
// which is crash-safe), and is kept as a hash map, whose cost does not grow
// with the file's fragmentation.
func boltOptions(opts Options) *bolt.Options {
	return &bolt.Options{
		Timeout:        opts.Timeout,
		ReadOnly:       opts.ReadOnly,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		OpenFile:       openDataFile,
	}
}
