package main

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
	bolt "go.etcd.io/bbolt"
)

// appendN stores n entries in channel ch of db.
func appendN(t testing.TB, db channels.Store, ch uint64, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e := &channels.Entry{ChannelID: ch}
		e.SetValue(0, "1")
		if err := db.AppendEntry(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// appendOffline stores n entries in channel ch of the database in dir.
func appendOffline(t testing.TB, dir string, ch uint64, n int) {
	t.Helper()
	db, err := storage.Open(filepath.Join(dir, "feedmq.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	appendN(t, db, ch, n)
}

type backupJSON struct {
	File     string `json:"file"`
	Bytes    int64  `json:"bytes"`
	Channels int    `json:"channels"`
	Devices  int    `json:"devices"`
	Entries  uint64 `json:"entries"`
}

func TestBackupRestoreCheckOffline(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "c")
	mustRun(t, dir, "device", "create", "--name", "d", "--channel", "1")
	appendOffline(t, dir, 1, 3)

	out := filepath.Join(t.TempDir(), "backup.db")
	var b backupJSON
	mustJSON(t, dir, &b, "backup", "--output", out, "--json")
	if b.File != out || b.Channels != 1 || b.Devices != 1 || b.Entries != 3 || b.Bytes == 0 {
		t.Fatalf("backup: %+v", b)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != b.Bytes {
		t.Fatalf("backup file: %v, %v", fi, err)
	}
	if got := mustFail(t, dir, "backup", "--output", out); !strings.Contains(got, "already exists") {
		t.Fatalf("backup over an existing file: %s", got)
	}
	if got := mustRun(t, dir, "check"); got != "ok: 1 channel, 1 device, 3 entries\n" {
		t.Fatalf("check: %q", got)
	}

	// Into a new data directory.
	fresh := filepath.Join(t.TempDir(), "new")
	got := mustRun(t, fresh, "restore", "--input", out)
	if !strings.Contains(got, "1 channel, 1 device, 3 entries") || strings.Contains(got, "previous") {
		t.Fatalf("restore: %s", got)
	}
	if got := mustRun(t, fresh, "check"); !strings.HasPrefix(got, "ok: ") {
		t.Fatalf("check of restored: %q", got)
	}

	// Over the existing database only with --force, keeping the old one.
	mustRun(t, dir, "channel", "create", "--name", "after-backup")
	if got := mustFail(t, dir, "restore", "--input", out); !strings.Contains(got, "give --force") {
		t.Fatalf("restore without --force: %s", got)
	}
	got = mustRun(t, dir, "restore", "--input", out, "--force")
	if !strings.Contains(got, "The previous database is kept as "+filepath.Join(dir, "feedmq.db.bak-")) {
		t.Fatalf("restore --force: %s", got)
	}
	var list []channelJSON
	if mustJSON(t, dir, &list, "channel", "list", "--json"); len(list) != 1 {
		t.Fatalf("after restore: %+v", list)
	}
	baks, _ := filepath.Glob(filepath.Join(dir, "feedmq.db.bak-*"))
	if len(baks) != 1 {
		t.Fatalf("kept files: %v", baks)
	}

	// A file that is not a feedmq backup is refused and changes nothing.
	junk := filepath.Join(t.TempDir(), "junk")
	writeFile(t, junk, strings.Repeat("junk", 4096))
	if got := mustFail(t, dir, "restore", "--input", junk, "--force"); !strings.Contains(got, "is not usable") {
		t.Fatalf("restore of junk: %s", got)
	}
	if got := mustRun(t, dir, "check"); !strings.HasPrefix(got, "ok: 1 channel") {
		t.Fatalf("check after refused restore: %q", got)
	}
}

func TestDBCommandsNoDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	for _, args := range []string{"check", "backup --output x.db"} {
		if got := mustFail(t, dir, strings.Fields(args)...); !strings.Contains(got, "no feedmq database in") {
			t.Errorf("%s: %s", args, got)
		}
	}
	if got := mustFail(t, dir, "backup"); !strings.Contains(got, "--output is required") {
		t.Errorf("backup: %s", got)
	}
	if got := mustFail(t, dir, "restore"); !strings.Contains(got, "--input is required") {
		t.Errorf("restore: %s", got)
	}
}

// While serve runs, backup and check go through the admin socket (the
// server holds the database lock, so they could not open it) and restore
// is refused.
func TestBackupCheckLive(t *testing.T) {
	s := startAdminServer(t)
	mustRun(t, s.dir, "channel", "create", "--name", "live")
	appendN(t, s.db, 1, 5)

	// A relative --output is relative to the client's directory.
	wd := t.TempDir()
	t.Chdir(wd)
	var b backupJSON
	mustJSON(t, s.dir, &b, "backup", "-o", "rel.db", "--json")
	if b.File != filepath.Join(wd, "rel.db") || b.Entries != 5 {
		t.Fatalf("backup: %+v", b)
	}
	if got := mustRun(t, s.dir, "check"); got != "ok: 1 channel, 0 devices, 5 entries\n" {
		t.Fatalf("check: %q", got)
	}
	if got := mustFail(t, s.dir, "restore", "--input", b.File, "--force"); !strings.Contains(got, "feedmq serve is running on") {
		t.Fatalf("restore while serving: %s", got)
	}
	// The copy is a database of its own.
	cp, err := storage.Open(b.File, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if es, err := cp.Entries(context.Background(), 1, channels.EntryFilter{}); err != nil || len(es) != 5 {
		t.Fatalf("entries in copy: %d, %v", len(es), err)
	}
	// The server refuses relative paths, which it would resolve against
	// its own directory.
	c, err := admin.Dial(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Backup(context.Background(), "x.db")
	if err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Fatalf("relative path: %v", err)
	}
}

// corrupt gives the database in dir a feed without a channel.
func corrupt(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.Bucket([]byte("feeds")).CreateBucket(binary.BigEndian.AppendUint64(nil, 42))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A device record that does not decode is reported by check, offline,
// rather than stopping it before it looks.
func TestCheckReportsUndecodableDevice(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "c")
	db, err := bolt.Open(filepath.Join(dir, "feedmq.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("devices")).Put(binary.BigEndian.AppendUint64(nil, 7), []byte("{not json"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runCommand(t, "--data", dir, "check")
	if err == nil || !strings.Contains(err.Error(), "the database has") || !strings.Contains(stdout, "device 7") {
		t.Fatalf("check: %v\nstdout %q", err, stdout)
	}
}

func TestCheckFindsProblems(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "c")
	corrupt(t, filepath.Join(dir, "feedmq.db"))
	stdout, _, err := runCommand(t, "--data", dir, "check")
	if err == nil || !strings.Contains(err.Error(), "the database has 1 problems") {
		t.Fatalf("check: %v", err)
	}
	if stdout != "feed 42: belongs to no channel\n" {
		t.Fatalf("stdout %q", stdout)
	}
	// The exit status is 1.
	if _, stderr, code := runMain(t, "--data", dir, "check"); code != 1 || !strings.Contains(stderr, "problems") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	// Live, the same.
	s := startAdminServerOn(t, dir)
	_ = s
	stdout, _, err = runCommand(t, "--data", dir, "check", "--json")
	if err == nil || !strings.Contains(stdout, `"feed 42: belongs to no channel"`) {
		t.Fatalf("live check: %v\n%s", err, stdout)
	}
}

func TestChannelRetentionFlags(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		var got map[string]any
		mustJSON(t, dir, &got, "channel", "create", "--name", "r", "--max-entries", "100", "--max-age", "30d", "--json")
		if got["max_entries"] != 100.0 || got["max_age"] != "720h0m0s" {
			t.Fatalf("create: %v", got)
		}
		out := mustRun(t, dir, "channel", "show", "1")
		if !strings.Contains(out, "Max entries:") || !strings.Contains(out, "720h0m0s") {
			t.Fatalf("show:\n%s", out)
		}
		got = nil
		mustJSON(t, dir, &got, "channel", "update", "1", "--max-entries", "0", "--max-age", "90m", "--json")
		if _, ok := got["max_entries"]; ok || got["max_age"] != "1h30m0s" {
			t.Fatalf("update: %v", got)
		}
		got = nil
		mustJSON(t, dir, &got, "channel", "update", "1", "--max-age", "0", "--json")
		if _, ok := got["max_age"]; ok {
			t.Fatalf("update --max-age 0: %v", got)
		}
		for _, args := range []string{
			"channel create --name x --max-age soon",
			"channel create --name x --max-age -5m",
			"channel update 1 --max-entries -1",
		} {
			if msg := mustFail(t, dir, strings.Fields(args)...); !strings.Contains(msg, "max-") {
				t.Errorf("%s: %s", args, msg)
			}
		}
	})
}

func TestParseMaxAge(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "0d": 0, "30d": 720 * time.Hour, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute,
	} {
		if got, err := parseMaxAge(in); err != nil || got != want {
			t.Errorf("parseMaxAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// serve applies retention in the background and logs what it deleted.
func TestServePrunes(t *testing.T) {
	old := pruneInterval
	pruneInterval = 10 * time.Millisecond
	t.Cleanup(func() { pruneInterval = old })
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "capped", "--max-entries", "3")
	appendOffline(t, dir, 1, 10)

	cfg := DefaultConfig()
	cfg.DataDir, cfg.Listeners.MQTT, cfg.Listeners.WS, cfg.Listeners.HTTP = dir, "127.0.0.1:0", off, off
	logs := &syncBuffer{}
	s, err := openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	count := func() int {
		es, err := s.db.Entries(context.Background(), 1, channels.EntryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	waitFor(t, func() bool { return count() == 3 })
	waitFor(t, func() bool { return strings.Contains(logs.String(), "retention: deleted old entries") })
	if !strings.Contains(logs.String(), "deleted=7") {
		t.Fatalf("logs:\n%s", logs.String())
	}
	// New entries keep their numbering and are pruned in turn.
	appendN(t, s.db, 1, 2)
	waitFor(t, func() bool { return count() == 3 })
	if c, _ := s.db.FindChannel(context.Background(), 1); c.LastEntryID != 12 {
		t.Fatalf("last entry %d", c.LastEntryID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestChannelRateLimitFlag(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		var got map[string]any
		mustJSON(t, dir, &got, "channel", "create", "--name", "r", "--rate-limit", "15s", "--json")
		if got["rate_limit"] != "15s" {
			t.Fatalf("create: %v", got)
		}
		if out := mustRun(t, dir, "channel", "show", "1"); !strings.Contains(out, "Rate limit:") {
			t.Fatalf("show:\n%s", out)
		}
		got = nil
		mustJSON(t, dir, &got, "channel", "update", "1", "--rate-limit", "0", "--json")
		if _, ok := got["rate_limit"]; ok {
			t.Fatalf("update --rate-limit 0: %v", got)
		}
		if msg := mustFail(t, dir, "channel", "update", "1", "--rate-limit", "-1s"); !strings.Contains(msg, "rate-limit") {
			t.Errorf("negative: %s", msg)
		}
	})
}
