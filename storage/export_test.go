package storage

import "time"

// Test hooks for the entry codec, which is unexported because nothing
// outside storage should depend on the file format.
var (
	EncodeEntry = encodeEntry
	DecodeEntry = decodeEntry
)

// SetPruneBatch makes Prune delete at most n entries per transaction until
// the test ends.
func SetPruneBatch(tb interface{ Cleanup(func()) }, n int) {
	old := pruneBatch
	pruneBatch = n
	tb.Cleanup(func() { pruneBatch = old })
}

// LockFile takes the lock Restore takes on a database file.
var LockFile = lockFile

// SetCheckpointDelay sets how long appends may stay only in the write-ahead
// log, for databases opened until the test ends.
func SetCheckpointDelay(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := checkpointDelay
	checkpointDelay = d
	tb.Cleanup(func() { checkpointDelay = old })
}

// WALPath is where the write-ahead log of the database at path lives.
var WALPath = walPath
