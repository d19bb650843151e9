//go:build linux

package storage_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/storage"
)

// openFiles lists this process's descriptors open on files under dir.
func openFiles(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, fd.Name()+" "+target)
		}
	}
	return open
}

// An Open refused because a log file is not a log leaves no descriptor
// open on it (nor on anything else in the directory).
func TestOpenRefusedLeavesNoDescriptor(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "feedmq.db")
	MustOpenPath(t, path).Close()
	for _, stray := range storage.WALPaths(path) {
		if err := os.WriteFile(stray, []byte(strings.Repeat("not a feedmq log. ", 4)), 0o600); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if db, err := storage.Open(path, storage.Options{}); err == nil {
				db.Close()
				t.Fatalf("open with %s not a log succeeded", stray)
			}
		}
		if open := openFiles(t, dir); len(open) > 0 {
			t.Fatalf("after refused opens (%s not a log), descriptors still open: %v", filepath.Base(stray), open)
		}
		if err := os.Remove(stray); err != nil {
			t.Fatal(err)
		}
	}
}
