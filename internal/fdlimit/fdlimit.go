// Package fdlimit reads and raises the open-file limit (RLIMIT_NOFILE).
// Every MQTT connection holds a file descriptor, in the broker and in the
// load generator alike, so this limit caps the connections a process can
// hold.
package fdlimit

// Reserve is the number of descriptors kept aside for everything that is
// not a connection: listeners, the database, the admin socket, logs.
const Reserve = 64

// Raise raises the soft open-file limit to want, or to the hard limit when
// want is 0. When want is above the hard limit it tries to raise the hard
// limit as well, which only a privileged process (CAP_SYS_RESOURCE) may
// do; that failure is returned with the limits left as they were. Raise
// never lowers a limit. It returns the soft and hard limits in force
// afterwards. On systems other than Linux it returns
// errors.ErrUnsupported.
func Raise(want uint64) (soft, hard uint64, err error) { return raise(want) }
