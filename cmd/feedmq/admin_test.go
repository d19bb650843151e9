package main

import (
	"bytes"
	"context"
	"github.com/feedmq/feedmq/auth"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// Commands go through the socket when a server answers: the server holds
// the database lock, so a direct open could not succeed.
func TestAdminUsesSocket(t *testing.T) {
	s := startAdminServer(t)
	var c channelJSON
	mustJSON(t, s.dir, &c, "channel", "create", "--name", "Live", "--json")
	// The live registry knows the channel at once.
	if got, ok := s.svc.Registry.Channel(c.ID); !ok || got.WriteKey != c.WriteAPIKey {
		t.Fatalf("registry: %+v, %v", got, ok)
	}
	var d auth.DeviceJSON
	mustJSON(t, s.dir, &d, "device", "create", "--name", "dev", "--channel", "1:pub", "--json")
	id, err := s.svc.Registry.Authenticate(d.ClientID, d.Username, d.Password)
	if err != nil || id != d.ID {
		t.Fatalf("new device cannot authenticate: %d, %v", id, err)
	}
	if err := s.svc.Registry.CanPublish(id, 1, ""); err != nil {
		t.Fatal(err)
	}
	mustRun(t, s.dir, "device", "deauthorize", "1", "--channel", "1")
	if err := s.svc.Registry.CanPublish(id, 1, ""); err == nil {
		t.Fatal("deauthorized device may still publish")
	}
}

// Errors read the same whether the command ran locally or remotely.
func TestAdminErrorsIdentical(t *testing.T) {
	offline, remote := t.TempDir(), startAdminServer(t).dir
	mustRun(t, offline, "channel", "create", "--name", "seed")
	mustRun(t, remote, "channel", "create", "--name", "seed")
	for _, args := range []string{
		"channel show 9",
		"channel update 9 --name x",
		"device show 4",
		"device create --name x --channel 3",
		"channel create --name " + strings.Repeat("n", channels.MaxNameLen+1),
		"feed get 2",
	} {
		local := mustFail(t, offline, strings.Fields(args)...)
		sock := mustFail(t, remote, strings.Fields(args)...)
		if local != sock {
			t.Errorf("%s:\n local  %q\n socket %q", args, local, sock)
		}
	}
}

func TestAdminRemoteErrorCode(t *testing.T) {
	s := startAdminServer(t)
	a, err := admin.Dial(s.dir)
	if err != nil {
		t.Fatalf("dial: %v, %v", a, err)
	}
	defer a.Close()
	_, err = a.Channel(context.Background(), 5)
	if channels.ErrorCode(err) != channels.ENOTFOUND || err.Error() != "channel 5 not found" {
		t.Fatalf("got %v (code %s)", err, channels.ErrorCode(err))
	}
}

// A database held by a process that does not answer on the socket gives
// a clear error, not a hang.
func TestAdminLockedWithoutServer(t *testing.T) {
	dir := t.TempDir()
	db, err := storage.Open(filepath.Join(dir, "feedmq.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := mustFail(t, dir, "channel", "list")
	for _, want := range []string{"is locked by another process", "no feedmq serve answers on", "retry"} {
		if !strings.Contains(got, want) {
			t.Fatalf("error %q lacks %q", got, want)
		}
	}
}

// Only the create commands start a new database; the others point out a
// probably mistyped --data instead of creating one.
func TestAdminNoDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	for _, args := range []string{"channel list", "device list", "channel show 1", "feed get 1", "device delete 1"} {
		got := mustFail(t, dir, strings.Fields(args)...)
		if !strings.Contains(got, "no feedmq database in "+dir+"; give the --data directory of your instance") {
			t.Errorf("%s: got %q", args, got)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data directory created: %v", err)
	}
	mustRun(t, dir, "device", "create", "--name", "first")
	mustRun(t, dir, "device", "list")
}

// A socket file left by a crashed server does not stop admin commands.
func TestAdminStaleSocket(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "feedmq.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	mustRun(t, dir, "channel", "create", "--name", "x")
}

// serve opens the database, the broker and the admin socket, reports its
// listeners, and closes everything in order.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners.MQTT = "127.0.0.1:0"
	cfg.Listeners.WS = "127.0.0.1:0"
	cfg.Listeners.HTTP = "127.0.0.1:0"
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := openServer(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.addr("mqtt") == nil || s.addr("ws") == nil || s.addr("http") == nil {
		t.Fatal("mqtt, ws or http not bound")
	}
	if strings.Contains(logs.String(), "listener not implemented yet") {
		t.Fatalf("warning about an implemented listener:\n%s", logs.String())
	}
	fi, err := os.Stat(cfg.socketPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v", fi, err)
	}

	// An admin command reaches the live service.
	var d auth.DeviceJSON
	mustRun(t, dir, "channel", "create", "--name", "c")
	mustJSON(t, dir, &d, "device", "create", "--name", "d", "--channel", "1", "--json")
	if _, err := s.svc.Registry.Authenticate(d.ClientID, d.Username, d.Password); err != nil {
		t.Fatal(err)
	}

	// A second serve on the same directory is refused at once.
	if _, err := openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil ||
		!strings.Contains(err.Error(), "another feedmq serve is running on this data directory") {
		t.Fatalf("second serve: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.socketPath()); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	// After shutdown the data is there for offline commands.
	var list []auth.DeviceJSON
	if mustJSON(t, dir, &list, "device", "list", "--json"); len(list) != 1 {
		t.Fatalf("got %+v", list)
	}
}

func TestRunServe(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Listeners.MQTT, cfg.Listeners.WS, cfg.Listeners.HTTP = dir, "127.0.0.1:0", off, off
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, out, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	// The listener line appears once serving; admin commands then work.
	waitFor(t, func() bool { return strings.HasPrefix(out.String(), "mqtt listening on 127.0.0.1:") })
	mustRun(t, dir, "channel", "create", "--name", "c")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 1 {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Listeners.MQTT, cfg.Listeners.WS, cfg.Listeners.HTTP = dir, ln.Addr().String(), off, off
	if _, err := openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Fatal("serve started on a port in use")
	}
	// Everything opened was closed: the database is free again.
	mustRun(t, dir, "channel", "list")
}
