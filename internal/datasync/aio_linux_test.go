//go:build linux && (amd64 || arm64)

package datasync

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func openAIO(t *testing.T) (*aio, *os.File) {
	t.Helper()
	a := newAIO()
	if a == nil {
		t.Skip("no native AIO here")
	}
	t.Cleanup(func() { a.close() })
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT|syscall.O_DSYNC, 0o600)
	if err != nil {
		t.Skipf("no O_DIRECT on the file system of %s", path)
	}
	t.Cleanup(func() { f.Close() })
	return a, f
}

// A write the kernel refuses comes back as its error, after the wait, and
// the next write is not confused by it.
func TestAIOWriteError(t *testing.T) {
	a, f := openAIO(t)
	b := aligned(2 * Block)
	// Misaligned memory: O_DIRECT refuses it with EINVAL.
	if _, ok, err := a.write(f.Fd(), b[1:Block+1], 0); !ok || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("misaligned write: submitted %v, %v", ok, err)
	}
	for i := range 3 {
		b[0] = byte(i + 1)
		if n, ok, err := a.write(f.Fd(), b[:Block], int64(i)*Block); !ok || err != nil || n != Block {
			t.Fatalf("write %d: %d, submitted %v, %v", i, n, ok, err)
		}
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3*Block || got[0] != 1 || got[Block] != 2 || got[2*Block] != 3 {
		t.Fatalf("file after the writes: %d bytes", len(got))
	}
}

// A write that cannot be submitted (a bad descriptor) says so, and the Log
// then writes with pwrite.
func TestAIONotSubmitted(t *testing.T) {
	a, _ := openAIO(t)
	if _, ok, _ := a.write(^uintptr(0)>>1, aligned(Block), 0); ok {
		t.Fatal("a write to a bad descriptor was submitted")
	}
	l, path := openLog(t, true)
	if !l.Async() {
		t.Skip("the Log does not use native AIO here")
	}
	l.dfd = ^uintptr(0) >> 1 // io_submit fails with EBADF
	if err := l.Write([]byte("still written"), 0); err != nil {
		t.Fatal(err)
	}
	if l.Async() {
		t.Fatal("still submitting after io_submit failed")
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got[:13]) != "still written" {
		t.Fatalf("file: %q, %v", got[:min(len(got), 13)], err)
	}
}

// A commit allocates nothing, waiting in the poller included.
func TestLogAsyncAllocs(t *testing.T) {
	l, _ := openLog(t, true)
	if !l.Async() {
		t.Skip("the Log does not use native AIO here")
	}
	rec := make([]byte, 120)
	off := int64(0)
	allocs := testing.AllocsPerRun(200, func() {
		if err := l.Write(rec, off); err != nil {
			t.Fatal(err)
		}
		off += int64(len(rec))
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per write", allocs)
	}
}
