//go:build unix

package storage

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// openDataFile opens the database file or a write-ahead log. Whoever can
// write to the data directory must not be able to make feedmq (often run
// by an administrator) write through a link or block on a special file:
// the last path element is never followed (O_NOFOLLOW), the open does not
// wait for a FIFO's other end (O_NONBLOCK, which regular files ignore), and
// anything but a regular file with a single link is refused.
func openDataFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, errSymlink(path)
		}
		if errors.Is(err, syscall.EISDIR) {
			return nil, fmt.Errorf("%s is a directory, not a feedmq file; move it away", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := checkDataFile(path, fi); err != nil {
		f.Close()
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		f.Close()
		return nil, fmt.Errorf("%s has %d hard links; feedmq does not write to a file that is also elsewhere: move it away", path, st.Nlink)
	}
	return f, nil
}
