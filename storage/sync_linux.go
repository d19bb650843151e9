package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes a file's data without its timestamps: the log is
// rewritten in place, so its size rarely changes and this is all a
// commit needs.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
