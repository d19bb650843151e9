//go:build linux && (amd64 || arm64)

package datasync

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// aio submits a Log's direct writes with Linux native AIO and waits for
// each in the Go poller, on an eventfd the kernel signals when a write
// completes. A pwrite with O_DSYNC keeps its thread in the kernel for the
// whole write and cache flush (a fifth of a millisecond and more on a
// virtual disk); Go's scheduler takes the P of a goroutine that long in a
// system call and hands it to another thread, and its monitor thread,
// having taken one, goes on waking every 20 µs while appends continue.
// Measured at 100 QoS 1 publishers, that thread alone was a tenth of the
// broker's CPU. A submitted write holds no thread, so none of that
// happens, and a goroutine waiting on the poller costs the runtime
// nothing (a garbage collection does not wait for it either, as it would
// for a write made outside the runtime's knowledge).
//
// The iocb layout below is the little-endian one, hence the build tags.
type aio struct {
	ctx   uintptr  // aio_context_t
	ev    *os.File // the eventfd, in the poller
	evfd  int      // its descriptor (ev.Fd would make it blocking)
	raw   syscall.RawConn
	seq   uint64 // aio_data of the write in flight
	cb    iocb
	cbs   [1]*iocb
	evs   [1]ioEvent
	zero  unix.Timespec
	done  bool  // the write in flight completed
	res   int64 // its result: bytes written, or -errno
	err   error // io_getevents failed
	check func(uintptr) bool
}

// iocb and ioEvent are struct iocb and struct io_event of
// <linux/aio_abi.h> (little-endian).
type iocb struct {
	data      uint64
	key       uint32
	rwFlags   int32
	opcode    uint16
	reqprio   int16
	fildes    uint32
	buf       uint64
	nbytes    uint64
	offset    int64
	reserved2 uint64
	flags     uint32
	resfd     uint32
}

type ioEvent struct {
	data uint64
	obj  uint64
	res  int64
	res2 int64
}

const (
	iocbCmdPwrite = 1
	iocbFlagResfd = 1 << 0
)

// newAIO returns nil where native AIO cannot be set up (a kernel without
// it, the system's aio-max-nr used up); the Log then blocks in pwrite.
func newAIO() *aio {
	if noAIO {
		return nil
	}
	a := &aio{}
	if _, _, e := syscall.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&a.ctx)), 0); e != 0 {
		return nil
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		a.destroy()
		return nil
	}
	// A non-blocking descriptor goes into the runtime's poller.
	a.evfd = fd
	a.ev = os.NewFile(uintptr(fd), "aio-eventfd")
	raw, err := a.ev.SyscallConn()
	if err != nil {
		a.ev.Close()
		a.destroy()
		return nil
	}
	a.raw = raw
	a.cbs[0] = &a.cb
	a.check = a.reap
	return a
}

// noAIO turns native AIO off for every Log opened after it is set (tests).
var noAIO bool

// write writes b at off through fd (O_DIRECT) and waits for the result.
// ok is false when the write could not be submitted at all: nothing was
// written, and the caller writes it another way (and should close a).
func (a *aio) write(fd uintptr, b []byte, off int64) (n int, ok bool, err error) {
	a.seq++
	a.cb = iocb{
		data:   a.seq,
		opcode: iocbCmdPwrite,
		fildes: uint32(fd),
		buf:    uint64(uintptr(unsafe.Pointer(&b[0]))),
		nbytes: uint64(len(b)),
		offset: off,
		flags:  iocbFlagResfd,
		resfd:  uint32(a.evfd),
	}
	for {
		r, _, e := syscall.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&a.cbs[0])))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || r != 1 {
			return 0, false, nil
		}
		break
	}
	// The poller is asked only after a first look at the ring: it
	// forgets, as its wait begins, a completion signalled before (one
	// made inside io_submit, as an extending write's is).
	a.done, a.err = false, nil
	if werr := a.raw.Read(a.check); werr != nil {
		// The poller failed us (it does not, short of a closed
		// descriptor); the write is in flight, so wait in the kernel.
		for !a.done && a.err == nil {
			a.getEvent(nil)
		}
	}
	// The kernel wrote from b until the event was reaped; b's address
	// in the iocb is no reference the collector sees.
	runtime.KeepAlive(b)
	if a.err != nil {
		return 0, true, a.err
	}
	if a.res < 0 {
		return 0, true, syscall.Errno(-a.res)
	}
	return int(a.res), true, nil
}

// reap is the poller's check: true once the write in flight completed
// (or reaping failed).
func (a *aio) reap(uintptr) bool {
	a.getEvent(&a.zero)
	return a.done || a.err != nil
}

// getEvent takes one completion from the ring, waiting up to timeout
// (nil: until one comes).
func (a *aio) getEvent(timeout *unix.Timespec) {
	for {
		r, _, e := syscall.Syscall6(unix.SYS_IO_GETEVENTS, a.ctx, 1, 1, uintptr(unsafe.Pointer(&a.evs[0])), uintptr(unsafe.Pointer(timeout)), 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			a.err = e
			return
		}
		if r == 1 && a.evs[0].data == a.seq {
			a.done, a.res = true, a.evs[0].res
			return
		}
		if r == 1 {
			continue // a stale completion; there are none, but never take one for this write
		}
		return
	}
}

func (a *aio) close() error {
	err := a.ev.Close()
	return errors.Join(err, a.destroy())
}

func (a *aio) destroy() error {
	if _, _, e := syscall.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0); e != 0 {
		return e
	}
	return nil
}
