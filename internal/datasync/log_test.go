package datasync

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func openLog(t *testing.T, direct bool) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLog(f)
	t.Cleanup(func() { l.Close(); f.Close() })
	if direct && !l.Direct() {
		t.Skipf("no O_DIRECT on the file system of %s", path)
	}
	if !direct {
		l.Close()
	}
	return l, path
}

// model is what a file written by a Log must hold: b at off, and in
// direct mode zeros after it up to the block boundary.
type model struct {
	b      []byte
	direct bool
}

func (m *model) write(b []byte, off int64) {
	end := int(off) + len(b)
	if m.direct {
		end = (end + Block - 1) &^ (Block - 1)
	}
	if end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	n := copy(m.b[off:], b)
	clear(m.b[int(off)+n : end])
}

func (m *model) check(t *testing.T, path, step string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, m.b) {
		i := 0
		for i < min(len(got), len(m.b)) && got[i] == m.b[i] {
			i++
		}
		t.Fatalf("%s: file differs from the model at byte %d (file %d bytes, model %d)", step, i, len(got), len(m.b))
	}
}

// Appends of every size, start-overs at 0 and writes at any offset keep
// every byte before each write and put the written ones in place; the
// direct mode zeros the rest of the last block, the buffered one leaves it.
func TestLogWritesKeepWhatIsBefore(t *testing.T) {
	eachMode(t, func(t *testing.T, direct bool) {
		l, path := openLog(t, direct)
		m := &model{direct: direct}
		rng := rand.New(rand.NewPCG(1, 2))
		var end int64
		for i := range 400 {
			var off int64
			switch r := rng.IntN(10); {
			case r == 0:
				off, end = 0, 0 // a start-over
			case r == 1 && len(m.b) > 0:
				off = rng.Int64N(int64(len(m.b)))
			default:
				off = end
			}
			size := rng.IntN(300)
			if rng.IntN(20) == 0 {
				size = rng.IntN(3 * Block)
			}
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(rng.IntN(255) + 1)
			}
			if err := l.Write(b, off); err != nil {
				t.Fatalf("write %d (%d bytes at %d): %v", i, size, off, err)
			}
			m.write(b, off)
			end = max(end, off+int64(size))
			m.check(t, path, "write")
		}
	})
}

// After Truncate the block a Log holds is stale: what the next write
// keeps before its offset comes from the file, not from the copy.
func TestLogTruncateForgetsBlock(t *testing.T) {
	eachMode(t, func(t *testing.T, direct bool) {
		l, path := openLog(t, direct)
		m := &model{direct: direct}
		full := bytes.Repeat([]byte{0xaa}, Block)
		if err := l.Write(full, 0); err != nil {
			t.Fatal(err)
		}
		m.write(full, 0)
		if err := l.Truncate(10); err != nil {
			t.Fatal(err)
		}
		m.b = m.b[:10]
		if err := l.Write([]byte("after"), 20); err != nil {
			t.Fatal(err)
		}
		m.write([]byte("after"), 20)
		m.check(t, path, "write after truncate")
	})
}

// A file system that took O_DIRECT at open but refuses a write with
// EINVAL gets that write, and every later one, through the page cache.
func TestLogFallsBackOnEINVAL(t *testing.T) {
	l, path := openLog(t, true)
	m := &model{direct: true}
	if err := l.Write([]byte("header"), 0); err != nil {
		t.Fatal(err)
	}
	m.write([]byte("header"), 0)
	saved := directWrite
	t.Cleanup(func() { directWrite = saved })
	directWrite = func(*os.File, []byte, int64) (int, error) { return 0, syscall.EINVAL }
	if err := l.Write([]byte("record"), 6); err != nil {
		t.Fatal(err)
	}
	if l.Direct() {
		t.Fatal("still direct after EINVAL")
	}
	// The fallback wrote the whole staged block, so it zeroed the rest.
	m.write([]byte("record"), 6)
	m.check(t, path, "fallback write")
	m.direct = false
	if err := l.Write([]byte("more"), 12); err != nil {
		t.Fatal(err)
	}
	m.write([]byte("more"), 12)
	m.check(t, path, "write after the fallback")
}

// A failed direct write is reported and leaves the Log writing directly:
// an I/O error is the disk's, not the file system's refusal of O_DIRECT.
func TestLogFailedWrite(t *testing.T) {
	l, path := openLog(t, true)
	m := &model{direct: true}
	if err := l.Write([]byte("0123456789"), 0); err != nil {
		t.Fatal(err)
	}
	m.write([]byte("0123456789"), 0)
	saved := directWrite
	t.Cleanup(func() { directWrite = saved })
	eio := errors.New("input/output error")
	directWrite = func(*os.File, []byte, int64) (int, error) { return 0, eio }
	if err := l.Write([]byte("lost"), 3); !errors.Is(err, eio) {
		t.Fatalf("write on a failing disk: %v", err)
	}
	directWrite = saved
	if !l.Direct() {
		t.Fatal("an I/O error turned direct writes off")
	}
	if err := l.Write([]byte("ok"), 10); err != nil {
		t.Fatal(err)
	}
	m.write([]byte("ok"), 10)
	m.check(t, path, "write after a failed one")
}

func TestLogNegativeOffset(t *testing.T) {
	eachMode(t, func(t *testing.T, direct bool) {
		l, _ := openLog(t, direct)
		if err := l.Write([]byte("x"), -1); err == nil {
			t.Fatal("a negative offset was taken")
		}
	})
}

func eachMode(t *testing.T, fn func(t *testing.T, direct bool)) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct", false: "buffered"}[direct], func(t *testing.T) { fn(t, direct) })
	}
}

// An empty write has nothing to make durable; it must not fail or panic,
// at a block boundary or not.
func TestLogEmptyWrite(t *testing.T) {
	eachMode(t, func(t *testing.T, direct bool) {
		l, path := openLog(t, direct)
		m := &model{direct: direct}
		if err := l.Write([]byte("head"), 0); err != nil {
			t.Fatal(err)
		}
		m.write([]byte("head"), 0)
		for _, off := range []int64{0, 2, Block, 3 * Block} {
			if err := l.Write(nil, off); err != nil {
				t.Fatalf("empty write at %d: %v", off, err)
			}
		}
		m.check(t, path, "empty writes")
	})
}

// A direct write that fails may leave its blocks damaged on the disk,
// the bytes before its offset too (a torn or failed write of a whole
// block). The next write at that offset, the one that ends the log there
// (the log's clearTail), must put those bytes back as they were, as a
// write through the page cache did, whose cached page kept them.
func TestLogFailedWriteKeepsWhatIsBefore(t *testing.T) {
	for _, size := range []int{10, 2*Block + 100} {
		l, path := openLog(t, true)
		m := &model{direct: true}
		first := bytes.Repeat([]byte{0x5a}, 100)
		if err := l.Write(first, 0); err != nil {
			t.Fatal(err)
		}
		m.write(first, 0)
		saved := directWrite
		directWrite = func(d *os.File, b []byte, off int64) (int, error) {
			// The disk garbles what it was given, then reports it.
			if _, err := saved(d, aligned(len(b)), off); err != nil {
				t.Fatal(err)
			}
			return 0, syscall.EIO
		}
		err := l.Write(bytes.Repeat([]byte{0x77}, size), 100)
		directWrite = saved
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("failing write: %v", err)
		}
		end := make([]byte, size)
		if err := l.Write(end, 100); err != nil {
			t.Fatal(err)
		}
		m.write(end, 100)
		m.check(t, path, "rewrite after a failed write")
	}
	// A later write further on in that block keeps them too; what lies
	// between is whatever the failure left.
	l, path := openLog(t, true)
	first := bytes.Repeat([]byte{0x5a}, 100)
	if err := l.Write(first, 0); err != nil {
		t.Fatal(err)
	}
	saved := directWrite
	directWrite = func(d *os.File, b []byte, off int64) (int, error) {
		saved(d, aligned(len(b)), off)
		return 0, syscall.EIO
	}
	l.Write([]byte("refused"), 100)
	directWrite = saved
	if err := l.Write([]byte("next"), 150); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:100], first) || string(got[150:154]) != "next" {
		t.Fatalf("write further on after a failed one: file starts %q, holds %q at 150", got[:100], got[150:154])
	}
}
