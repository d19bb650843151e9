//go:build !linux

// Package datasync makes a file's data durable without its timestamps:
// what feedmq's write-ahead log commits with, and what `feedmq bench disk`
// measures.
package datasync

import "os"

// File flushes f (fsync where fdatasync is not available).
func File(f *os.File) error { return f.Sync() }

// openDirect: only Linux writes a log past the page cache.
func openDirect(*os.File) *os.File { return nil }
