package httpd_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/internal/storetest"
	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/postgres"
)

// One PostgreSQL server for the test binary, started by the first test
// that runs on it (FEEDMQ_TEST_STORE=postgres); none otherwise.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// testStore is what the tests' environments need of a store: what the
// admin service keeps everything in, and the reads and retention the
// API and the tests use.
type testStore interface {
	admin.Store
	storetest.Store
}

// storeEnv names the store the tests run on: "" or "bbolt" (a file in a
// temporary directory), or "postgres" (a new database on the test
// binary's own PostgreSQL server, see internal/pgtest), so that the API
// is tested over both stores the server can run on: make test-postgres.
const storeEnv = "FEEDMQ_TEST_STORE"

// openStore opens a new, empty store of the kind storeEnv names, stamping
// times by now (nil: its own clock), and closes it when tb ends.
func openStore(tb testing.TB, now func() time.Time) testStore {
	tb.Helper()
	var (
		db  testStore
		err error
	)
	switch kind := os.Getenv(storeEnv); kind {
	case "", "bbolt":
		db, err = storage.Open(filepath.Join(tb.TempDir(), "feedmq.db"), storage.Options{Now: now})
	case "postgres":
		db, err = postgres.Open(context.Background(), pgtest.New(tb), postgres.Options{Now: now})
	default:
		tb.Fatalf("%s=%q: want bbolt or postgres", storeEnv, kind)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}
