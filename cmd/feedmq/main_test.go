package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage"
)

func TestMain(m *testing.M) {
	// runMain re-executes this test binary as the feedmq command.
	if os.Getenv("FEEDMQ_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	// A locked database is reported quickly rather than after 2s.
	adminLockTimeout = 100 * time.Millisecond
	// The PostgreSQL server of the db copy tests starts on first use.
	os.Exit(pgtest.Run(m))
}

// runCommand runs feedmq with args and returns its stdout and stderr.
func runCommand(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mustRun runs feedmq with args on data directory dir and fails the test
// on an error. It returns stdout.
func mustRun(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, _, err := runCommand(t, append([]string{"--data", dir}, args...)...)
	if err != nil {
		t.Fatalf("feedmq %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// mustFail runs feedmq with args on dir and returns the error message,
// failing the test when the command succeeds.
func mustFail(t testing.TB, dir string, args ...string) string {
	t.Helper()
	_, _, err := runCommand(t, append([]string{"--data", dir}, args...)...)
	if err == nil {
		t.Fatalf("feedmq %s succeeded", strings.Join(args, " "))
	}
	return err.Error()
}

// mustJSON runs a command and decodes its stdout into v.
func mustJSON(t testing.TB, dir string, v any, args ...string) {
	t.Helper()
	out := mustRun(t, dir, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("feedmq %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// keys returns the sorted keys of a JSON object.
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testServer is the admin side of a running serve, without the broker:
// the database, the live service and the admin socket on a data
// directory.
type testServer struct {
	dir  string
	db   *storage.DB
	svc  *admin.Local
	sock *admin.Server
}

// startAdminServer serves the admin socket of a new data directory
// in-process, as serve does, and stops it when the test ends.
func startAdminServer(t testing.TB) *testServer {
	t.Helper()
	return startAdminServerOn(t, t.TempDir())
}

// startAdminServerOn serves the admin socket of data directory dir.
func startAdminServerOn(t testing.TB, dir string) *testServer {
	t.Helper()
	s := &testServer{dir: dir}
	cfg := DefaultConfig()
	cfg.DataDir = s.dir
	var err error
	if s.db, err = storage.Open(cfg.dbPath(), storage.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	if s.svc, err = admin.NewLocal(context.Background(), s.db, cfg.authLimits()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if s.sock, err = admin.Listen(cfg.dataDir(), s.svc, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.sock.Close() })
	return s
}

// instance is a data directory to run admin commands on: offline (no
// server) or with an admin server running.
type instance struct {
	name string
	dir  func(t *testing.T) string
}

var instances = []instance{
	{"Offline", func(t *testing.T) string { return t.TempDir() }},
	{"Socket", func(t *testing.T) string { return startAdminServer(t).dir }},
}

// forEachInstance runs f once offline and once through the admin socket.
func forEachInstance(t *testing.T, f func(t *testing.T, dir string)) {
	for _, in := range instances {
		t.Run(in.name, func(t *testing.T) { f(t, in.dir(t)) })
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for args, want := range map[string]string{
		"channel bogus":          "unknown command \"bogus\" for \"feedmq channel\"; see `feedmq channel --help`",
		"channel create --nme x": "unknown flag: --nme; see `feedmq channel create --help`",
		"channel show":           "feedmq channel show takes one channel ID, e.g. `feedmq channel show 1`",
		"channel show x":         "invalid channel ID \"x\": IDs are whole numbers from 1 without leading zeros; see `feedmq channel list`",
		"channel show 01":        "invalid channel ID \"01\"",
		"device show 0":          "invalid device ID \"0\"",
	} {
		if got := mustFail(t, dir, strings.Fields(args)...); !strings.Contains(got, want) {
			t.Errorf("%s: got %q, want %q", args, got, want)
		}
	}
	// Usage errors change nothing, not even create the data directory.
	if _, err := os.Stat(filepath.Join(dir, "feedmq.db")); !os.IsNotExist(err) {
		t.Fatalf("database created by failed commands: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
