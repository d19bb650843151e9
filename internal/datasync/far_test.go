package datasync

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
)

// Offsets past 2 and 4 GiB (a sparse file): the block arithmetic holds
// on 32-bit systems too.
func TestLogFarOffsets(t *testing.T) {
	eachMode(t, func(t *testing.T, direct bool) {
		l, path := openLog(t, direct)
		for _, base := range []int64{3 << 30, 4<<30 - 10, 5<<30 + Block - 3} {
			if err := l.Write([]byte("abc"), base); errors.Is(err, syscall.EFBIG) {
				t.Skipf("no files this big here: %v", err)
			} else if err != nil {
				t.Fatalf("write at %d: %v", base, err)
			}
			if err := l.Write([]byte("defghijklmnopqrst"), base+3); err != nil {
				t.Fatalf("write at %d: %v", base+3, err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 20)
			_, err = f.ReadAt(got, base)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if want := []byte("abcdefghijklmnopqrst"); !bytes.Equal(got, want) {
				t.Fatalf("at %d: %q, want %q", base, got, want)
			}
		}
	})
}
