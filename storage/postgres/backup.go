package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/dbcopy"
)

// BackupFile writes everything the database holds to a new bbolt database
// file at path (permission 0600), the format "feedmq restore" and "feedmq
// db copy" read, and returns its size and what it holds. The database is
// read in one snapshot (a read-only REPEATABLE READ transaction), so
// nodes go on writing and the copy is the database as of the start of
// the backup, keeping every ID. The copy is built in a temporary
// directory next to path and then written to path in one step, which
// fails if path exists, so path never holds a partial copy and is never
// overwritten.
func (db *DB) BackupFile(ctx context.Context, path string) (int64, storage.Stats, error) {
	if _, err := os.Lstat(path); err == nil {
		return 0, storage.Stats{}, fmt.Errorf("backup file %s already exists; choose a new name", path)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".feedmq-backup-*")
	if err != nil {
		return 0, storage.Stats{}, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp, err := storage.Open(filepath.Join(dir, "feedmq.db"), storage.Options{})
	if err != nil {
		return 0, storage.Stats{}, fmt.Errorf("backup: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			tmp.Close()
		}
	}()
	err = pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// Every read of the copy joins this snapshot.
		_, err := dbcopy.Copy(context.WithValue(ctx, txKey{}, &joined{tx: tx}), db, tmp, dbcopy.Options{})
		return err
	})
	if err != nil {
		return 0, storage.Stats{}, fmt.Errorf("backup: %w", err)
	}
	n, st, err := tmp.BackupFile(ctx, path)
	closed = true
	if cerr := tmp.Close(); err == nil && cerr != nil {
		// The file at path is complete (it was synced before it was
		// linked there); the temporary database is removed anyway.
		err = cerr
	}
	return n, st, err
}
