//go:build !linux

package loadgen

import "syscall"

// bindNoPort is Linux's; elsewhere bind chooses the source port.
var bindNoPort func(network, address string, c syscall.RawConn) error
