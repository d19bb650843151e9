//go:build unix

package storage

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes the lock bbolt takes (flock) on an existing database file
// without opening it as a database, which works even on a damaged file.
// It fails with ErrLocked while any process has the file open.
func lockFile(path string) (unlock func(), err error) {
	f, err := openDataFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("database %s is %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock database %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
