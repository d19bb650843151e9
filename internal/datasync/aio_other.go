//go:build !(linux && (amd64 || arm64))

package datasync

// aio: native AIO is used on little-endian 64-bit Linux only (see
// aio_linux.go); elsewhere a Log's direct writes block in pwrite.
type aio struct{}

func newAIO() *aio { return nil }

var noAIO bool

func (*aio) write(uintptr, []byte, int64) (int, bool, error) { return 0, false, nil }

func (*aio) close() error { return nil }
