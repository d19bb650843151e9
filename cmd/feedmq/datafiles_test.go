//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Admin commands run on a data directory that someone else may be able to
// write to: a link at a log's path is refused, and its target is neither
// written nor created; so is a FIFO (which must not block the command).
func TestAdminRefusesLinkedLogs(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "W")
	victims := t.TempDir()
	empty := filepath.Join(victims, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(victims, "missing")
	wal, wal2 := filepath.Join(dir, "feedmq.db-wal"), filepath.Join(dir, "feedmq.db-wal2")
	if err := os.Symlink(empty, wal); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(missing, wal2); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"channel", "list"}, {"channel", "create", "--name", "X"}, {"check"}} {
		if msg := mustFail(t, dir, args...); !strings.Contains(msg, wal+" is a symbolic link") {
			t.Errorf("%s: %s", strings.Join(args, " "), msg)
		}
	}
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Errorf("the file the log link points to was changed: %v", err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("%s was created through the link", missing)
	}

	os.Remove(wal)
	os.Remove(wal2)
	if err := syscall.Mkfifo(wal2, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := runCommand(t, "--data", dir, "channel", "list")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), wal2+" is not a regular file") {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("channel list blocks on a FIFO at the log's path")
	}
	os.Remove(wal2)
	if out := mustRun(t, dir, "channel", "list"); !strings.Contains(out, "W") {
		t.Errorf("after the FIFO is gone: %q", out)
	}
}
