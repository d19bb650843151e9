package storage

import (
	"fmt"
	"io/fs"
)

func errSymlink(path string) error {
	return fmt.Errorf("%s is a symbolic link; feedmq does not follow links to its database files: replace it with the file itself, or give --data the directory the files are in", path)
}

// checkDataFile refuses anything but a regular file.
func checkDataFile(path string, fi fs.FileInfo) error {
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory, not a feedmq file; move it away", path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s); move it away", path, fi.Mode().Type())
	}
	return nil
}
