package postgres

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// openTest opens a fresh database, closed when t ends.
func openTest(t testing.TB, url string, opts Options) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The registered migrations are numbered 1, 2, 3, ... without a gap.
func TestMigrationsNumbered(t *testing.T) {
	for i, m := range migrations {
		if m.Version != i+1 {
			t.Errorf("migration %d (%s) has version %d", i, m.Name, m.Version)
		}
		if strings.TrimSpace(m.SQL) == "" || m.Name == "" {
			t.Errorf("migration %d lacks SQL or a name", m.Version)
		}
	}
}

func schemaVersion(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func execSQL(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// Open migrates a new database to the latest version, and opening it
// again (from a second process, say) changes nothing.
func TestOpenMigrates(t *testing.T) {
	url := pgtest.New(t)
	openTest(t, url, Options{}).Close()
	if v := schemaVersion(t, url); v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	openTest(t, url, Options{}).Close()
	if v := schemaVersion(t, url); v != len(migrations) {
		t.Fatalf("schema version %d after a second open, want %d", v, len(migrations))
	}
}

// Processes starting together migrate once: the others wait for the lock
// and find the work done.
func TestOpenConcurrent(t *testing.T) {
	url := pgtest.New(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			db, err := Open(context.Background(), url, Options{})
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if v := schemaVersion(t, url); v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
}

// A database a newer feedmq migrated is refused with a message that says
// what to do, and left as it is.
func TestOpenRefusesNewerSchema(t *testing.T) {
	url := pgtest.New(t)
	openTest(t, url, Options{}).Close()
	execSQL(t, url, "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')", len(migrations)+1)
	_, err := Open(context.Background(), url, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer than this feedmq supports") || !strings.Contains(err.Error(), "upgrade feedmq") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
	if v := schemaVersion(t, url); v != len(migrations)+1 {
		t.Fatalf("schema version %d after the refused open", v)
	}
}

// A database that holds someone else's tables is not taken over.
func TestOpenRefusesForeignDatabase(t *testing.T) {
	url := pgtest.New(t)
	execSQL(t, url, "CREATE TABLE invoices (id int)")
	_, err := Open(context.Background(), url, Options{})
	if err == nil || !strings.Contains(err.Error(), "no feedmq schema") {
		t.Fatalf("Open of a foreign database: %v", err)
	}
}

// A failing migration leaves the database as it was: the version and the
// tables of earlier migrations in the same run are not kept.
func TestMigrateAllOrNothing(t *testing.T) {
	url := pgtest.New(t)
	ctx := context.Background()
	db := openTest(t, url, Options{})
	list := append(migrations[:len(migrations):len(migrations)],
		migration{Version: len(migrations) + 1, Name: "good", SQL: "CREATE TABLE good (a int)"},
		migration{Version: len(migrations) + 2, Name: "bad", SQL: "CREATE TABLE bad (a nosuchtype)"})
	err := migrate(ctx, db.pool, list)
	if err == nil || !strings.Contains(err.Error(), "bad") {
		t.Fatalf("migrate with a bad migration: %v", err)
	}
	if v := schemaVersion(t, url); v != len(migrations) {
		t.Fatalf("schema version %d after a failed migration, want %d", v, len(migrations))
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, "SELECT to_regclass('good') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("table of the good migration kept: %v %v", exists, err)
	}
	// Misnumbered lists are an internal error, not a half migration.
	if err := migrate(ctx, db.pool, []migration{{Version: 2, Name: "x", SQL: "SELECT 1"}}); err == nil {
		t.Fatal("a list starting at version 2 was run")
	}
}

// A URL that is not a connection string is refused without echoing it
// (it may hold a password); an unreachable server is a clear error.
func TestOpenBadURL(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, "postgres://feedmq:s3cret@127.0.0.1:notaport/x", Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open of a bad URL: %v", err)
	}
	_, err = Open(ctx, "postgres://feedmq:s3cret@127.0.0.1:1/x?connect_timeout=5", Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "connect to 127.0.0.1:1/x") {
		t.Fatalf("Open of an unreachable server: %v", err)
	}
}
