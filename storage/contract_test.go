package storage_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/storetest"
	"github.com/feedmq/feedmq/storage"
)

// The bbolt store passes the conformance suite every store passes, on
// the real clock. The tests beside it check what only this store has:
// the file, its write-ahead log, reopening, backups and check.
func TestStoreSuite(t *testing.T) {
	storetest.Run(t, storetest.Suite{
		Open: func(t *testing.T, now func() time.Time) storetest.Store {
			db, err := storage.Open(filepath.Join(t.TempDir(), "feedmq.db"), storage.Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := db.Close(); err != nil {
					t.Error(err)
				}
			})
			return db
		},
		MaxBatch:      storage.MaxBatchEntries,
		MaxKeys:       storage.MaxKeyLimit,
		MaxImportedID: storage.MaxImportedID,
	})
}
