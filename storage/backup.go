package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats counts what a database holds.
type Stats struct {
	Channels int    `json:"channels"`
	Devices  int    `json:"devices"`
	Entries  uint64 `json:"entries"`
}

// stats counts within tx, so that the numbers describe exactly the
// snapshot tx sees.
func stats(tx *bolt.Tx) Stats {
	var st Stats
	st.Channels = tx.Bucket(channelsBucket).Stats().KeyN
	st.Devices = tx.Bucket(devicesBucket).Stats().KeyN
	feeds := tx.Bucket(feedsBucket)
	_ = feeds.ForEachBucket(func(k []byte) error {
		// Counted from bbolt's page headers, not from the IDs' span,
		// which imported gaps widen.
		st.Entries += uint64(feeds.Bucket(k).Stats().KeyN)
		return nil
	})
	return st
}

// Stats returns the counts of the database.
func (db *DB) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := db.view(ctx, "count", func(tx *bolt.Tx) error {
		st = stats(tx)
		return nil
	})
	return st, err
}

// Backup writes a consistent copy of the database to w and returns the
// number of bytes written. It runs in a read transaction, so appends and
// other writes go on meanwhile; the copy is the database as of the start
// of the call. Cancelling ctx aborts the copy.
func (db *DB) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := db.view(ctx, "backup", func(tx *bolt.Tx) (err error) {
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	return n, err
}

// ctxWriter fails writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// BackupFile writes a consistent copy of the database to a new file at
// path with permission 0600 and returns its size and what it holds. An
// existing file is never overwritten: the copy is written and synced to
// a temporary file next to path and then linked into place, which fails
// if path exists, so path never holds a partial copy.
func (db *DB) BackupFile(ctx context.Context, path string) (int64, Stats, error) {
	var (
		n  int64
		st Stats
	)
	if _, err := os.Lstat(path); err == nil {
		return 0, st, fmt.Errorf("backup file %s already exists; choose a new name", path)
	}
	err := writeFileAtomic(path, func(f *os.File) error {
		return db.view(ctx, "backup", func(tx *bolt.Tx) (err error) {
			st = stats(tx)
			n, err = tx.WriteTo(ctxWriter{ctx, f})
			return err
		})
	})
	if err != nil {
		return 0, Stats{}, err
	}
	return n, st, nil
}

// writeFileAtomic creates path with the content fill writes, through a
// synced temporary file in the same directory. It does not replace an
// existing path.
func writeFileAtomic(path string, fill func(f *os.File) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create backup file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("create backup file: %w", err)
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	// link, unlike rename, refuses to replace path.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("backup file %s already exists; choose a new name", path)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Remove(tmp.Name()); err != nil {
		return fmt.Errorf("remove %s: %w", tmp.Name(), err)
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// RestoreResult describes a completed Restore.
type RestoreResult struct {
	Stats
	// Previous is where the replaced database was kept; empty when there
	// was none.
	Previous string
}

// Restore replaces the database at dst with the backup at src. The backup
// is copied next to dst first and validated there (a feedmq database of
// a schema version this feedmq reads, passing Check); only then is the
// existing database, which must not be open anywhere, kept as
// dst.bak-<UTC time> and the copy renamed over dst. An existing dst is
// replaced only with force. now names the kept file.
func Restore(ctx context.Context, src, dst string, force bool, now time.Time) (RestoreResult, error) {
	var res RestoreResult
	_, statErr := os.Stat(dst)
	exists := statErr == nil
	if exists && !force {
		return res, fmt.Errorf("database %s exists; give --force to replace it (it is kept as %s.bak-<time>)", dst, filepath.Base(dst))
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return res, fmt.Errorf("create database directory: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return res, fmt.Errorf("open backup: %w", err)
	}
	defer in.Close()
	tmp := dst + ".restore-tmp"
	os.Remove(tmp) // left by an interrupted restore
	defer os.Remove(tmp)
	err = writeFileAtomic(tmp, func(f *os.File) error {
		if _, err := io.Copy(f, in); err != nil {
			return fmt.Errorf("copy backup: %w", err)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if res.Stats, err = validateBackup(ctx, tmp); err != nil {
		return res, fmt.Errorf("backup %s is not usable: %w", src, err)
	}
	if exists {
		// Entries the old database holds only in its log go into the
		// file that is kept; its log must not meet the new file.
		if err := applyPendingWAL(dst); err != nil {
			return res, err
		}
		unlock, err := lockFile(dst)
		if err != nil {
			return res, err
		}
		defer unlock()
		res.Previous = fmt.Sprintf("%s.bak-%s", dst, now.UTC().Format("20060102T150405Z"))
		// A hard link keeps the old file while the rename below replaces
		// dst in one step: there is no moment without a database.
		if err := os.Link(dst, res.Previous); err != nil {
			return res, fmt.Errorf("keep previous database: %w", err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return res, fmt.Errorf("replace database: %w", err)
	}
	if err := removeWAL(dst); err != nil {
		return res, fmt.Errorf("remove the replaced database's log: %w", err)
	}
	return res, syncDir(filepath.Dir(dst))
}

// applyPendingWAL copies into the database at path the entries its log
// holds, by opening it for writing once.
func applyPendingWAL(path string) error {
	pending, err := pendingWAL(path)
	if err != nil || !pending {
		return err
	}
	db, err := Open(path, Options{})
	if err != nil {
		return err
	}
	return db.Close()
}

// validateBackup opens path read-only as a feedmq database and checks it.
func validateBackup(ctx context.Context, path string) (Stats, error) {
	db, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		return Stats{}, err
	}
	defer db.Close()
	rep, err := db.Check(ctx)
	if err != nil {
		return Stats{}, err
	}
	if len(rep.Problems) > 0 {
		return Stats{}, fmt.Errorf("check found %d problems, the first: %s", len(rep.Problems), rep.Problems[0])
	}
	return rep.Stats, nil
}
