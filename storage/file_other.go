//go:build !unix

package storage

import "os"

// openDataFile opens the database file or a write-ahead log, refusing a
// link or anything but a regular file at path (see the unix version; here
// the check and the open are two steps).
func openDataFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil, errSymlink(path)
		}
		if err := checkDataFile(path, fi); err != nil {
			return nil, err
		}
	}
	return os.OpenFile(path, flag, perm)
}
