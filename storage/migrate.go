package storage

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// A migration turns a database of schema version N into version N+1. Open
// runs every step from the file's version to latestVersion, and stamps the
// new version, in the one write transaction that opens the file: either
// the whole upgrade commits or the file stays as it was.
//
// To change the layout: bump SchemaVersion, add migrations[old] that
// rewrites the old layout, and test it on a file written by the old code.
type migration func(tx *bolt.Tx) error

// migrations maps version N to the step N -> N+1. Version 1 is the first
// layout, so there are none yet.
var migrations = map[uint64]migration{}

// latestVersion is SchemaVersion as a variable, so that white-box tests can
// exercise the migration machinery with a fake version 2.
var latestVersion uint64 = SchemaVersion

// migrate brings the file's schema version up to latestVersion. checkVersion
// has already refused versions it cannot handle.
func migrate(tx *bolt.Tx, meta *bolt.Bucket) error {
	v := btoi(meta.Get(schemaVersionKey))
	for ; v < latestVersion; v++ {
		step := migrations[v]
		if step == nil {
			return fmt.Errorf("no migration from schema version %d to %d", v, v+1)
		}
		if err := step(tx); err != nil {
			return fmt.Errorf("migrate schema version %d to %d: %w", v, v+1, err)
		}
		if err := meta.Put(schemaVersionKey, itob(v+1)); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	}
	return nil
}
