// Package datasync makes a file's data durable without its timestamps:
// what feedmq's write-ahead log commits with, and what `feedmq bench disk`
// measures.
package datasync

import (
	"os"

	"golang.org/x/sys/unix"
)

// File flushes f's data (fdatasync): a log rewritten in place rarely
// changes size, so this is all a commit needs.
func File(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
