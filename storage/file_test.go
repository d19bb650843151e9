//go:build unix

package storage_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/storage"
)

// openWithin opens the database at path, failing the test if the open
// does not return within a generous time (a FIFO must not block it).
func openWithin(t *testing.T, path string, opts storage.Options) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		db, err := storage.Open(path, opts)
		if err == nil {
			db.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("open of %s hangs", path)
		return nil
	}
}

// Nothing in the data directory can make feedmq write through a link or
// block on a special file at the paths of its logs or its database: each
// is refused with an error that names the path, and the file a link
// points to is left as it was.
func TestOpenRefusesLinksAndSpecialFiles(t *testing.T) {
	victimDir := t.TempDir()
	for _, tt := range []struct {
		name, file string // file: the one replaced, relative to the data directory
		make       func(t *testing.T, path string)
		want       string
		victim     string // a file that must be unchanged afterwards
	}{
		{"SymlinkToEmptyFile", "feedmq.db-wal", symlinkTo(filepath.Join(victimDir, "empty"), true), "is a symbolic link", filepath.Join(victimDir, "empty")},
		{"SymlinkToMissingFile", "feedmq.db-wal2", symlinkTo(filepath.Join(victimDir, "missing"), false), "is a symbolic link", filepath.Join(victimDir, "missing")},
		{"DatabaseSymlink", "feedmq.db", symlinkTo(filepath.Join(victimDir, "db"), true), "is a symbolic link", filepath.Join(victimDir, "db")},
		{"HardLink", "feedmq.db-wal", hardLinkTo(filepath.Join(victimDir, "linked")), "hard links", filepath.Join(victimDir, "linked")},
		{"FIFO", "feedmq.db-wal2", mkfifo, "not a regular file", ""},
		{"DatabaseFIFO", "feedmq.db", mkfifo, "not a regular file", ""},
		{"Directory", "feedmq.db-wal", mkdir, "is a directory", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dbPath := filepath.Join(dir, "feedmq.db")
			if tt.file != "feedmq.db" {
				// A database that stopped cleanly (no logs left).
				MustOpenPath(t, dbPath).Close()
			}
			path := filepath.Join(dir, tt.file)
			tt.make(t, path)
			for _, ro := range []bool{false, true} {
				err := openWithin(t, dbPath, storage.Options{ReadOnly: ro, Timeout: 100 * time.Millisecond})
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
					t.Errorf("open (read-only %v) with %s: %v, want an error with %q and the path", ro, tt.name, err, tt.want)
				}
			}
			if tt.victim != "" {
				fi, err := os.Stat(tt.victim)
				if strings.Contains(tt.victim, "missing") {
					if err == nil {
						t.Errorf("%s was created through the link", tt.victim)
					}
				} else if err != nil || fi.Size() != 0 {
					t.Errorf("victim %s: %v, size %d; want it unchanged and empty", tt.victim, err, fi.Size())
				}
			}
		})
	}
}

func symlinkTo(target string, create bool) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		if create {
			if err := os.WriteFile(target, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
}

func hardLinkTo(target string) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		if err := os.WriteFile(target, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(target, path); err != nil {
			t.Skipf("no hard links here: %v", err)
		}
	}
}

func mkfifo(t *testing.T, path string) {
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
}
