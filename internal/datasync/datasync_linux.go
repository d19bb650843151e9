// Package datasync makes a file's data durable without its timestamps:
// what feedmq's write-ahead log commits with, and what `feedmq bench disk`
// measures.
package datasync

import (
	"fmt"
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

// openDirect opens f's file a second time with O_DIRECT|O_DSYNC, through
// /proc/self/fd so that it is the same file whatever its path has become.
// nil when that cannot be had (no /proc, a file system without O_DIRECT).
func openDirect(f *os.File) *os.File {
	d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY|unix.O_DIRECT|unix.O_DSYNC, 0)
	if err != nil {
		return nil
	}
	return d
}
