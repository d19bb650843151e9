package loadgen

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync is fdatasync, what feedmq's log commits with.
func datasync(f *os.File) error {
	for {
		if err := unix.Fdatasync(int(f.Fd())); err != unix.EINTR {
			return err
		}
	}
}
