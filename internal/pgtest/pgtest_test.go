package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// Each test gets its own empty database, which is gone after the test.
func TestNewIsolated(t *testing.T) {
	ctx := context.Background()
	var name string
	t.Run("first", func(t *testing.T) {
		c, err := pgx.Connect(ctx, New(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "CREATE TABLE x (a int); INSERT INTO x VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	c, err := pgx.Connect(ctx, New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a new database has the table another test made")
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if name == "" || n != 0 {
		t.Errorf("database %q of an ended test still exists (%d)", name, n)
	}
	var addr string
	if err := c.QueryRow(ctx, "SELECT host(inet_server_addr())").Scan(&addr); err != nil {
		t.Fatal(err)
	}
	if addr != "127.0.0.1" {
		t.Errorf("server address %q, want loopback", addr)
	}
}

// After Crash and its restart, the server is back on the same URL with
// what was committed before (crash recovery), and new connections work.
func TestCrashRestart(t *testing.T) {
	ctx := context.Background()
	url := New(t)
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE x (a int); INSERT INTO x VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	restart := Crash(t)
	if err := c.Ping(ctx); err == nil {
		t.Fatal("a connection survived the crash")
	}
	c.Close(ctx)
	if c, err := pgx.Connect(ctx, url); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	restart()
	c, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect after the restart: %v", err)
	}
	defer c.Close(ctx)
	var a int
	if err := c.QueryRow(ctx, "SELECT a FROM x").Scan(&a); err != nil || a != 7 {
		t.Fatalf("committed row after the restart: %d, %v", a, err)
	}
}
