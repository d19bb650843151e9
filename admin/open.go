package admin

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/postgres"
)

// Both stores hold everything Local needs.
var (
	_ Store = (*storage.DB)(nil)
	_ Store = (*postgres.DB)(nil)
)

var (
	// ErrNoDatabase is returned by Open when the data directory has no
	// database and Options.Create is false.
	ErrNoDatabase = errors.New("no feedmq database in the data directory")
	// ErrLocked is returned by Open when another process holds the
	// database but no server answers on the socket.
	ErrLocked = errors.New("database locked, but no server answers on the admin socket")
)

// Options tune Open.
type Options struct {
	// Create allows starting a new database.
	Create bool
	// ReadOnly, for backup and check, opens the database read-only,
	// unless a crash left entries in its write-ahead log: then it is
	// opened for writing, which copies them into the file first. Either
	// way the Service is for reading only: it loads no registry, so a
	// record that does not decode cannot stop a check.
	ReadOnly bool
	// LockTimeout bounds the wait for the database lock.
	LockTimeout time.Duration
	// Limits apply to changes made on the file.
	Limits auth.Limits
	// Storage, when set, is the URL of the PostgreSQL database the
	// instance keeps its state in (a postgres:// URL) instead of the data
	// directory's file. Without a server answering on the socket, Open
	// connects to it directly: the database is shared, so a change made
	// there is committed with a notification the running servers hear.
	Storage string
	// StoragePassword, when set, is the database password, in place of
	// one in the Storage URL.
	StoragePassword string
}

// Open reaches the instance in dataDir: through the admin socket when a
// server runs on it, so changes reach its live state, or else directly
// on the database: the file in dataDir, or the PostgreSQL database of
// o.Storage.
func Open(ctx context.Context, dataDir string, o Options) (Conn, error) {
	if c, err := dialRunning(dataDir); err != nil {
		return nil, err
	} else if c != nil {
		return c, nil
	}
	if o.Storage != "" {
		return openPostgres(ctx, o)
	}
	if _, err := os.Stat(DBPath(dataDir)); !o.Create && errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoDatabase
	}
	db, err := openDB(DBPath(dataDir), o)
	if errors.Is(err, storage.ErrLocked) {
		// A server may have finished starting while we waited.
		if c, err := dialRunning(dataDir); err != nil {
			return nil, err
		} else if c != nil {
			return c, nil
		}
		return nil, ErrLocked
	}
	if err != nil {
		return nil, err
	}
	if o.ReadOnly {
		// Nothing will change, so no registry needs loading; and check
		// must reach a database whose records do not all decode.
		return ownedLocal{newLocal(db, o.Limits)}, nil
	}
	l, err := NewLocal(ctx, db, o.Limits)
	if err != nil {
		db.Close()
		return nil, err
	}
	return ownedLocal{l}, nil
}

// openPostgres opens the PostgreSQL database of o.Storage directly; no
// lock keeps servers out, as they share it.
func openPostgres(ctx context.Context, o Options) (Conn, error) {
	db, err := postgres.Open(ctx, o.Storage, postgres.Options{Password: o.StoragePassword})
	if err != nil {
		return nil, err
	}
	if o.ReadOnly {
		return ownedLocal{newLocal(db, o.Limits)}, nil
	}
	l, err := NewLocal(ctx, db, o.Limits)
	if err != nil {
		db.Close()
		return nil, err
	}
	return ownedLocal{l}, nil
}

func openDB(path string, o Options) (*storage.DB, error) {
	if !o.ReadOnly {
		return storage.Open(path, storage.Options{Timeout: o.LockTimeout})
	}
	db, err := storage.Open(path, storage.Options{ReadOnly: true, Timeout: o.LockTimeout})
	if errors.Is(err, storage.ErrUnappliedLog) {
		return storage.Open(path, storage.Options{Timeout: o.LockTimeout})
	}
	return db, err
}

// dialRunning returns a Client when a server answers on dataDir, and nil,
// nil when none does.
func dialRunning(dataDir string) (*Client, error) {
	c, err := Dial(dataDir)
	if errors.Is(err, ErrNoServer) {
		return nil, nil
	}
	return c, err
}
