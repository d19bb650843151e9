package main

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/internal/dbcopytest"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage"
)

// withPassword puts a password into a test server URL; the test server
// trusts local connections, so it is never checked, only carried.
func withPassword(t *testing.T, raw, password string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	name := "postgres"
	if u.User != nil {
		name = u.User.Username()
	}
	u.User = url.UserPassword(name, password)
	return u.String()
}

func openDir(t *testing.T, dir string) *storage.DB {
	t.Helper()
	db, err := storage.Open(admin.DBPath(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// A data directory copied to PostgreSQL and back is what it was; the
// URL's password appears nowhere.
func TestDBCopy_RoundTrip(t *testing.T) {
	a, b := t.TempDir(), filepath.Join(t.TempDir(), "back")
	db := openDir(t, a)
	dbcopytest.Fill(t, db)
	db.Close()
	pg := withPassword(t, pgtest.New(t), "s3cret-pw")

	out, stderr, err := runCommand(t, "db", "copy", "--from", a, "--to", pg, "--verify", "--json", "--batch", "2")
	if err != nil {
		t.Fatalf("copy to postgres: %v\n%s", err, stderr)
	}
	var res struct {
		From, To string
		Copied   struct {
			Channels, Devices, Bindings int
			Entries                     uint64
		}
		Verified bool
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Copied.Channels != 3 || res.Copied.Devices != 2 || res.Copied.Bindings != 2 || res.Copied.Entries != 8 || !res.Verified || res.From != a {
		t.Fatalf("result %+v", res)
	}
	if strings.Contains(out+stderr, "s3cret") || !strings.Contains(res.To, "postgres@") {
		t.Fatalf("output shows the password or no database: %s %s", out, stderr)
	}
	if !strings.Contains(stderr, "channel 3: 3 entries") {
		t.Fatalf("progress: %q", stderr)
	}

	// Into a directory that does not exist yet.
	out, _, err = runCommand(t, "db", "copy", "--from", pg, "--to", b)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Copied 3 channels (8 entries), 2 devices, 2 bindings and 3 shared access rules from "; !strings.HasPrefix(out, want) || strings.Contains(out, "s3cret") {
		t.Fatalf("output %q", out)
	}
	if got := mustRun(t, b, "check"); !strings.HasPrefix(got, "ok: 3 channels, 2 devices, 8 entries") {
		t.Fatalf("check of the copy: %q", got)
	}
	da, db2 := openDir(t, a), openDir(t, b)
	defer da.Close()
	defer db2.Close()
	dbcopytest.MustSame(t, da, db2)
	da.Close()

	// The destination holds data now: refused, then replaced.
	got := mustFail(t, a, "db", "copy", "--from", a, "--to", pg)
	if !strings.Contains(got, "not empty") || !strings.Contains(got, "--replace") || strings.Contains(got, "s3cret") {
		t.Fatalf("copy into a non-empty database: %s", got)
	}
	mustRun(t, a, "db", "copy", "--from", a, "--to", pg, "--replace", "--verify")
}

func TestDBCopy_BadInput(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "c")
	missing := filepath.Join(t.TempDir(), "nothing")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"db", "copy", "--to", dir}, "--from and --to are required"},
		{[]string{"db", "copy", "--from", dir}, "--from and --to are required"},
		{[]string{"db", "copy", "--from", dir, "--to", dir + "/."}, "same database"},
		{[]string{"db", "copy", "--from", dir, "--to", missing, "--batch", "0"}, "--batch must be 1 to 100000"},
		{[]string{"db", "copy", "--from", missing, "--to", dir}, "no feedmq database in " + missing},
		{[]string{"db", "copy", "--from", dir, "--to", "postgres://feedmq:s3cret@127.0.0.1:notaport/x"}, "--to: postgres: the storage URL is not a valid connection string"},
		{[]string{"db", "copy", "--from", dir, "--to", "postgres://feedmq:s3cret@127.0.0.1:1/x?connect_timeout=5"}, "--to: postgres: connect to 127.0.0.1:1/x"},
		{[]string{"db", "copy", "--from", dir, "--to", "mysql://feedmq:s3cret@db/x"}, "--to: the URL is not a postgres:// or postgresql:// URL"},
		{[]string{"db", "copy", "--from", "host=db password=s3cret", "--to", dir}, "--from: give the PostgreSQL database as a postgres:// URL"},
		{[]string{"db", "copy", "--from", dir, "--to", missing, "extra"}, "unknown command"},
		{[]string{"db", "nosuch"}, "unknown command"},
	} {
		got := mustFail(t, dir, c.args...)
		if !strings.Contains(got, c.want) || strings.Contains(got, "s3cret") {
			t.Errorf("feedmq %s: %s; want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("a failed copy made %s: %v", missing, err)
	}
	// A database in use (serve running) is named, not waited for.
	db := openDir(t, dir)
	defer db.Close()
	if got := mustFail(t, dir, "db", "copy", "--from", dir, "--to", missing); !strings.Contains(got, "stop feedmq serve on "+dir) {
		t.Fatalf("copy from a locked database: %s", got)
	}
}

// One PostgreSQL database named by two different URLs (scheme, port
// spelled out, parameters) is refused as the same database before
// anything is written: with --replace the copy would empty its own
// source.
func TestDBCopy_SamePostgresTwoURLs(t *testing.T) {
	dir := t.TempDir()
	db := openDir(t, dir)
	dbcopytest.Fill(t, db)
	db.Close()
	pg := pgtest.New(t)
	mustRun(t, dir, "db", "copy", "--from", dir, "--to", pg)
	u, err := url.Parse(pg)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = "postgresql"
	q := u.Query()
	q.Set("application_name", "other")
	q.Set("timezone", "Asia/Kolkata") // the session's clock shows another time
	u.RawQuery = q.Encode()
	got := mustFail(t, dir, "db", "copy", "--from", pg, "--to", u.String(), "--replace")
	if !strings.Contains(got, "same database") {
		t.Fatalf("copy of a database onto itself: %s", got)
	}
	// Another database of the same server is another database.
	mustRun(t, dir, "db", "copy", "--from", pg, "--to", pgtest.New(t), "--verify")
	back := filepath.Join(t.TempDir(), "back")
	mustRun(t, dir, "db", "copy", "--from", pg, "--to", back)
	if got := mustRun(t, back, "check"); !strings.HasPrefix(got, "ok: 3 channels, 2 devices, 8 entries") {
		t.Fatalf("the source after the refused copy: %q", got)
	}
}
