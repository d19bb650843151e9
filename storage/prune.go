package storage

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

// pruneBatch is how many entries one pruning transaction deletes at most.
// Appends wait for the write lock while it runs, so it stays small: a
// batch holds the lock about as long as an fsync.
var pruneBatch = 1000

// afterPruneBatch, when set (by tests only), runs after each pruning
// transaction, on the goroutine that called Prune.
var afterPruneBatch func()

// Prune applies the retention of every channel (MaxEntries and MaxAge, see
// channels.Channel) as of now and returns how many entries it deleted.
//
// Entries are deleted from the oldest entry ID on, which keeps each feed a
// run of consecutive entry IDs (but for gaps imported IDs left):
// MaxEntries keeps the newest MaxEntries entries, and MaxAge deletes
// entries older than now-MaxAge until it meets the first younger one. (created_at may come from the
// payload, so an old-dated entry behind a younger one waits for it.)
// Entry IDs are never reused: the feed's sequence stays.
//
// Each transaction deletes at most pruneBatch entries, so appends are never
// held up for long; Prune stops between batches when ctx is done.
func (db *DB) Prune(ctx context.Context, now time.Time) (int, error) {
	list, err := db.ListChannels(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, c := range list {
		if c.MaxEntries == 0 && c.MaxAge == 0 {
			continue
		}
		n, err := db.pruneChannel(ctx, c, now)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// pruneChannel deletes the entries of c beyond its retention, in batches.
func (db *DB) pruneChannel(ctx context.Context, c *channels.Channel, now time.Time) (int, error) {
	var cutoff int64 // entries created before this Unix second expire
	if c.MaxAge > 0 {
		cutoff = now.Add(-c.MaxAge).Unix()
	}
	total := 0
	keys := make([][]byte, 0, pruneBatch)
	// A pass deletes nothing appended after it began: under a stream of
	// appends faster than its batches (a fast disk), the excess it chases
	// would otherwise grow as fast as it shrinks and the pass never end.
	// The next pass takes the rest.
	var bound []byte
	for {
		var done bool
		err := db.update(ctx, "prune", func(tx *bolt.Tx) error {
			keys = keys[:0]
			feed := feedBucket(tx, c.ID)
			if feed == nil {
				done = true // deleted meanwhile
				return nil
			}
			// The oldest excess entries fall outside MaxEntries. They
			// are counted, not found by ID: imported IDs may leave gaps,
			// and the sequence minus MaxEntries would then delete
			// entries the limit keeps. feedLen bounds the count, so a
			// feed within the limit is not counted at all.
			var excess uint64
			if c.MaxEntries > 0 && feedLen(feed) > c.MaxEntries {
				if n := uint64(feed.Stats().KeyN); n > c.MaxEntries {
					excess = n - c.MaxEntries
				}
			}
			cur := feed.Cursor()
			if bound == nil {
				last, _ := cur.Last()
				if last == nil {
					done = true
					return nil
				}
				bound = bytes.Clone(last)
			}
			for k, v := cur.First(); k != nil && len(keys) < pruneBatch && bytes.Compare(k, bound) <= 0; k, v = cur.Next() {
				if uint64(len(keys)) >= excess && !expired(v, cutoff, c.MaxAge > 0) {
					break
				}
				keys = append(keys, k)
			}
			done = len(keys) < pruneBatch
			// Deleting after the walk: bbolt cursors may skip keys when
			// the bucket changes under them.
			for _, k := range keys {
				if err := feed.Delete(k); err != nil {
					return fmt.Errorf("delete entry %d of channel %d: %w", btoi(k), c.ID, err)
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(keys)
		if afterPruneBatch != nil {
			afterPruneBatch()
		}
		if done {
			return total, nil
		}
	}
}

// expired reports whether the stored entry v is too old to keep.
func expired(v []byte, cutoff int64, byAge bool) bool {
	if !byAge {
		return false
	}
	created, _, _, err := decodeHeader(v)
	// An entry that does not decode is left for check to report.
	return err == nil && created < cutoff
}
