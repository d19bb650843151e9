package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/postgres"
)

// pgConfig writes a configuration file naming storage url (and any
// further lines) and returns its path.
func pgConfig(t *testing.T, storageURL string, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "feedmq.yaml")
	body := fmt.Sprintf("storage: %q\n%s\n", storageURL, strings.Join(lines, "\n"))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// execSQL runs statement on the database at dbURL, for damage or an
// outside change that the test then looks for.
func execSQL(t *testing.T, dbURL, statement string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, statement); err != nil {
		t.Fatal(err)
	}
}

// pgServeConfig is serve's configuration on storageURL: MQTT on a free
// loopback port, no other listener.
func pgServeConfig(t *testing.T, dir, storageURL string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Listeners.MQTT, cfg.Listeners.WS, cfg.Listeners.HTTP = dir, "127.0.0.1:0", off, off
	cfg.Storage = storageURL
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A serve on PostgreSQL keeps nothing but its socket and sessions in the
// data directory: the CLI offline (straight to the database) and through
// the running server's socket see one database, retention prunes it, and
// check and backup work both ways. restore is refused with a pointer to
// db copy, which takes the backup file.
func TestServeOnPostgres(t *testing.T) {
	old := pruneInterval
	pruneInterval = 10 * time.Millisecond
	t.Cleanup(func() { pruneInterval = old })
	ctx := context.Background()
	dbURL := pgtest.New(t)
	dir := t.TempDir()
	conf := pgConfig(t, dbURL)
	run := func(args ...string) string {
		t.Helper()
		return mustRun(t, dir, append([]string{"--config", conf}, args...)...)
	}
	fail := func(args ...string) string {
		t.Helper()
		return mustFail(t, dir, append([]string{"--config", conf}, args...)...)
	}

	// Offline: straight to PostgreSQL.
	var ch channelJSON
	if err := jsonOf(run("channel", "create", "--name", "capped", "--field", "1=T", "--max-entries", "3", "--json"), &ch); err != nil {
		t.Fatal(err)
	}
	run("device", "create", "--name", "d1", "--channel", fmt.Sprint(ch.ID))
	if _, err := os.Stat(filepath.Join(dir, "feedmq.db")); !os.IsNotExist(err) {
		t.Fatalf("a bbolt database was made in the data directory: %v", err)
	}
	pg, err := postgres.Open(ctx, dbURL, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	appendN(t, pg, ch.ID, 10)

	logs := &syncBuffer{}
	s, err := openServer(ctx, pgServeConfig(t, dir, dbURL), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.db.(*postgres.DB); !ok || s.pg == nil {
		t.Fatalf("serve opened %T", s.db)
	}
	// Retention runs on PostgreSQL.
	waitFor(t, func() bool {
		es, err := pg.Entries(ctx, ch.ID, channels.EntryFilter{})
		return err == nil && len(es) == 3
	})
	// Through the socket: the running server's registry has it at once.
	var d2 auth.DeviceJSON
	if err := jsonOf(run("device", "create", "--name", "d2", "--channel", fmt.Sprint(ch.ID), "--json"), &d2); err != nil {
		t.Fatal(err)
	}
	if !s.svc.Registry.HasUsername(d2.Username) {
		t.Fatal("a device created through the socket is not in serve's registry")
	}
	if got := run("check"); got != "ok: 1 channel, 2 devices, 3 entries\n" {
		t.Fatalf("check through the socket: %q", got)
	}
	live := filepath.Join(t.TempDir(), "live.db")
	var b backupJSON
	if err := jsonOf(run("backup", "--output", live, "--json"), &b); err != nil {
		t.Fatal(err)
	}
	if b.Channels != 1 || b.Devices != 2 || b.Entries != 3 {
		t.Fatalf("backup through the socket: %+v", b)
	}
	if msg := fail("restore", "--input", live, "--force"); !strings.Contains(msg, "feedmq db copy --from BACKUP-FILE") {
		t.Fatalf("restore on PostgreSQL: %s", msg)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "feedmq.db")); !os.IsNotExist(err) {
		t.Fatalf("serve made a bbolt database in the data directory: %v", err)
	}

	// Offline again: check, backup (a bbolt file restore and db copy take).
	if got := run("check"); got != "ok: 1 channel, 2 devices, 3 entries\n" {
		t.Fatalf("check offline: %q", got)
	}
	off := filepath.Join(t.TempDir(), "offline.db")
	if err := jsonOf(run("backup", "--output", off, "--json"), &b); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(off); err != nil || fi.Mode().Perm() != 0o600 || b.Entries != 3 || b.Devices != 2 {
		t.Fatalf("offline backup %+v: %v %v", b, fi, err)
	}
	if got := fail("backup", "--output", off); !strings.Contains(got, "already exists") {
		t.Fatalf("backup over a file: %s", got)
	}
	bdb, err := storage.Open(off, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	es, err := bdb.Entries(ctx, ch.ID, channels.EntryFilter{})
	bdb.Close()
	if err != nil || len(es) != 3 || es[0].ID != 8 || es[2].ID != 10 {
		t.Fatalf("backup's feed: %v %+v", err, es)
	}
	// The backup goes back into PostgreSQL with db copy.
	other := pgtest.New(t)
	mustRun(t, dir, "db", "copy", "--from", off, "--to", other)
	pg2, err := postgres.Open(ctx, other, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg2.Close()
	if c, err := pg2.FindChannel(ctx, ch.ID); err != nil || c.LastEntryID != 10 {
		t.Fatalf("copied back: %+v %v", c, err)
	}

	// check finds what is wrong and fails.
	execSQL(t, dbURL, "UPDATE channels SET last_entry_id = 9")
	out, _, err := runCommand(t, "--data", dir, "--config", conf, "check")
	if err == nil || !strings.Contains(out, fmt.Sprintf("feed %d: entry 10 is beyond the channel's last entry_id 9", ch.ID)) {
		t.Fatalf("check of a damaged database: %v\n%s", err, out)
	}
}

// jsonOf decodes a command's --json output.
func jsonOf(out string, v any) error {
	return json.Unmarshal([]byte(out), v)
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// writePasswordFile writes a password file with mode perm.
func writePasswordFile(t *testing.T, content string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// Misconfigured storage keys are refused by name, and no message repeats
// the password, from the URL or the file.
func TestStorageConfigRefused(t *testing.T) {
	const secret = "s3cret-Pw"
	good := writePasswordFile(t, secret+"\n", 0o600)
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"not postgres", `storage: "mysql://u:` + secret + `@h/db"`, "storage: is not a postgres:// or postgresql:// URL"},
		{"key=value", `storage: "host=h password=` + secret + `"`, "storage: is not a postgres://"},
		{"bare path", `storage: "/var/lib/feedmq"`, "storage: is not a postgres://"},
		{"bad port", `storage: "postgres://u:` + secret + `@h:99999/db"`, "storage: the PostgreSQL URL is not usable"},
		{"bad URL", `storage: "postgres://u:` + secret + `@[::1/db"`, "storage: the URL does not parse"},
		{"bad sslmode", `storage: "postgres://u:` + secret + `@h/db?sslmode=sometimes"`, "storage: the PostgreSQL URL is not usable"},
		{"file without storage", `storage_password_file: "` + good + `"`, "storage_password_file: is set but storage is not"},
		{"password twice", `storage: "postgres://u:` + secret + `@h/db"` + "\nstorage_password_file: \"" + good + `"`, "keep it in one place"},
		{"password twice, parameter", `storage: "postgres://u@h/db?password=` + secret + `"` + "\nstorage_password_file: \"" + good + `"`, "keep it in one place"},
		{"file missing", `storage: "postgres://u@h/db"` + "\nstorage_password_file: \"/nonexistent/pw\"", "storage_password_file: cannot read /nonexistent/pw"},
		{"file open to others", `storage: "postgres://u@h/db"` + "\nstorage_password_file: \"" + writePasswordFile(t, secret, 0o604) + `"`, "open to other users"},
		{"file empty", `storage: "postgres://u@h/db"` + "\nstorage_password_file: \"" + writePasswordFile(t, "\n", 0o600) + `"`, "is empty"},
		{"file of lines", `storage: "postgres://u@h/db"` + "\nstorage_password_file: \"" + writePasswordFile(t, secret+"\nmore\n", 0o600) + `"`, "more than one line"},
		{"file too long", `storage: "postgres://u@h/db"` + "\nstorage_password_file: \"" + writePasswordFile(t, strings.Repeat(secret, 1000), 0o600) + `"`, "longer than 4096 bytes"},
		{"file a FIFO", `storage: "postgres://u@h/db"` + "\nstorage_password_file: \"" + fifo(t) + `"`, "not a regular file"},
		{"file a directory", `storage: "postgres://u@h/db"` + "\nstorage_password_file: \"" + t.TempDir() + `"`, "not a regular file"},
		{"storage a list", `storage: [a, b]`, "storage"},
		{"missing CA file", `storage: "postgres://u:` + secret + `@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"`, "/nonexistent/ca.pem"},
		{"hosts with and without port", `storage: "postgres://u:` + secret + `@h1:5432,h2/db"`, "give each its port"},
		{"password as port", `storage: "postgres://u@h:` + secret + `/db"`, "storage: the URL does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.conf+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := runCommand(t, "config", "check", path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the message holds the password: %v", err)
			}
		})
	}
	// A file group-readable (a service's group) and with a line end is fine.
	cfg := DefaultConfig()
	cfg.Storage, cfg.StoragePasswordFile = "postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write", writePasswordFile(t, secret+"\r\n", 0o640)
	if err := cfg.Validate(); err != nil || cfg.storagePassword != secret {
		t.Fatalf("group-readable file: %v %q", err, cfg.storagePassword)
	}
}

// serve names the database it cannot reach, and never the password; it
// gives up at once on a refused connection rather than hanging.
func TestServePostgresRefused(t *testing.T) {
	const secret = "s3cret-Pw"
	ctx := context.Background()
	open := func(cfg Config) (string, string) {
		t.Helper()
		logs := &syncBuffer{}
		s, err := openServer(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err == nil {
			s.Close()
			t.Fatal("serve started")
		}
		return err.Error(), logs.String()
	}
	t.Run("unreachable", func(t *testing.T) {
		port := closedPort(t)
		cfg := pgServeConfig(t, t.TempDir(), fmt.Sprintf("postgres://feedmq:%s@127.0.0.1:%d/feeds?sslmode=disable", secret, port))
		start := time.Now()
		msg, logs := open(cfg)
		if !strings.Contains(msg, fmt.Sprintf("127.0.0.1:%d/feeds", port)) || strings.Contains(msg+logs, secret) {
			t.Fatalf("error %q, logs %q", msg, logs)
		}
		if d := time.Since(start); d > storageOpenTimeout {
			t.Fatalf("took %s", d)
		}
	})
	t.Run("password", func(t *testing.T) {
		dbURL, password := pgtest.NewWithPassword(t)
		u, _ := url.Parse(dbURL)
		// Wrong in the URL, wrong in the file, none at all.
		u.User = url.UserPassword(u.User.Username(), secret)
		msg, logs := open(pgServeConfig(t, t.TempDir(), u.String()))
		if !strings.Contains(msg, "password authentication failed") || strings.Contains(msg+logs, secret) || strings.Contains(msg+logs, password) {
			t.Fatalf("wrong password in the URL: %q %q", msg, logs)
		}
		cfg := DefaultConfig()
		cfg.DataDir, cfg.Listeners.MQTT, cfg.Listeners.WS, cfg.Listeners.HTTP = t.TempDir(), "127.0.0.1:0", off, off
		cfg.Storage, cfg.StoragePasswordFile = dbURL, writePasswordFile(t, secret, 0o600)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		msg, logs = open(cfg)
		if !strings.Contains(msg, "password authentication failed") || strings.Contains(msg+logs, secret) {
			t.Fatalf("wrong password in the file: %q %q", msg, logs)
		}
		t.Setenv("PGPASSWORD", "")
		t.Setenv("PGPASSFILE", "/nonexistent")
		msg, _ = open(pgServeConfig(t, t.TempDir(), dbURL))
		if !strings.Contains(msg, "password") {
			t.Fatalf("no password: %q", msg)
		}
		// The right one from the file opens it; the CLI reads it too.
		cfg.StoragePasswordFile = writePasswordFile(t, password+"\n", 0o600)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		logs2 := &syncBuffer{}
		s, err := openServer(ctx, cfg, slog.New(slog.NewTextHandler(logs2, nil)))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if strings.Contains(logs2.String(), password) {
			t.Fatalf("serve logged the password: %s", logs2)
		}
		conf := pgConfig(t, dbURL, fmt.Sprintf("storage_password_file: %q", cfg.StoragePasswordFile))
		if got := mustRun(t, t.TempDir(), "--config", conf, "check"); !strings.HasPrefix(got, "ok: 0 channels") {
			t.Fatalf("check with the password file: %q", got)
		}
		// The password in the PGPASSWORD environment works as well.
		t.Setenv("PGPASSWORD", password)
		if got := mustRun(t, t.TempDir(), "--config", pgConfig(t, dbURL), "check"); !strings.HasPrefix(got, "ok: ") {
			t.Fatalf("check with PGPASSWORD: %q", got)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		dbURL := pgtest.New(t)
		pg, err := postgres.Open(ctx, dbURL, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		pg.Close()
		execSQL(t, dbURL, "INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')")
		if msg, _ := open(pgServeConfig(t, t.TempDir(), dbURL)); !strings.Contains(msg, "upgrade feedmq") {
			t.Fatalf("newer schema: %s", msg)
		}
		if msg := mustFail(t, t.TempDir(), "--config", pgConfig(t, dbURL), "channel", "list"); !strings.Contains(msg, "upgrade feedmq") {
			t.Fatalf("CLI on a newer schema: %s", msg)
		}
	})
}

// A bbolt database left in the data directory is not used on PostgreSQL,
// and serve says so.
func TestServePostgresWarnsOfBoltFile(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "left behind")
	logs := &syncBuffer{}
	s, err := openServer(context.Background(), pgServeConfig(t, dir, pgtest.New(t)), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "the data directory holds a bbolt database") {
		t.Fatalf("logs: %s", logs)
	}
	if chs, err := s.db.ListChannels(context.Background()); err != nil || len(chs) != 0 {
		t.Fatalf("channels on PostgreSQL: %v %v", chs, err)
	}
}

// feed import stores a ThingSpeak CSV in PostgreSQL as in the bbolt file:
// offline (IDs kept into an empty channel) and through a running
// server's socket (numbered on); a refused row stores nothing.
func TestFeedImportOnPostgres(t *testing.T) {
	dbURL := pgtest.New(t)
	dir := t.TempDir()
	conf := pgConfig(t, dbURL)
	run := func(args ...string) string {
		t.Helper()
		return mustRun(t, dir, append([]string{"--config", conf}, args...)...)
	}
	run("channel", "create", "--name", "weather", "--field", "1=Temp")
	file := filepath.Join(t.TempDir(), "feeds.csv")
	writeFile(t, file, "created_at,entry_id,field1,status\r\n"+
		"2021-02-18 21:46:23 UTC,3,6.0,\r\n"+
		"2023-01-06T16:44:16+00:00,5,7,\"door open, back\"\r\n")
	if out := run("feed", "import", "1", file); !strings.Contains(out, "Imported 2 entries into channel 1") {
		t.Fatalf("offline import: %q", out)
	}

	s, err := openServer(context.Background(), pgServeConfig(t, dir, dbURL), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeFile(t, file, "created_at,field1\n2024-01-01 00:00:00 UTC,8\n")
	if out := run("feed", "import", "1", file); !strings.Contains(out, "entries 6 to 6") {
		t.Fatalf("import through the socket: %q", out)
	}
	writeFile(t, file, "created_at,field1\n2024-01-02 00:00:00 UTC,9\n2023-12-31 23:59:59 UTC,10\n")
	if msg := mustFail(t, dir, "--config", conf, "feed", "import", "1", file); !strings.Contains(msg, "line 3") {
		t.Fatalf("refused import: %s", msg)
	}
	es, err := s.db.Entries(context.Background(), 1, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].ID != 3 || es[1].ID != 5 || es[1].Values[channels.Status] != "door open, back" || es[2].ID != 6 {
		t.Fatalf("entries %+v", es)
	}
}

// fifo makes a named pipe no one writes to.
func fifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}
