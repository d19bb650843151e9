package postgres

import (
	"context"
	"fmt"
	"time"
)

// pruneBatch is how many entries one pruning statement deletes at most,
// so that no statement runs long.
var pruneBatch = 1000

// pruneLock is the key of the advisory lock the pruning process holds:
// with several processes on one database, one prunes at a time and the
// others skip their turn.
const pruneLock = 0x66656564_6d710002 // "feedmq" 2

// Prune applies the retention of every channel (max_entries and max_age)
// as of now and returns how many entries it deleted. As on bbolt, entries
// go from the oldest entry ID on: max_entries keeps the newest that many,
// and max_age deletes entries older than now-max_age up to the first
// younger one (created_at may come from a payload, so an old-dated entry
// behind a younger one waits for it). IDs are never reused. When another
// process is pruning the database, Prune returns 0 at once.
func (db *DB) Prune(ctx context.Context, now time.Time) (int, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	defer conn.Release()
	var mine bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(pruneLock)).Scan(&mine); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if !mine {
		return 0, nil
	}
	defer func() {
		// A session lock outlives the statement: give it back, or drop
		// the connection rather than keep it locked.
		if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(pruneLock)); err != nil {
			conn.Conn().Close(context.Background())
		}
	}()
	rows, err := conn.Query(ctx, "SELECT id, max_entries, max_age_us FROM channels WHERE max_entries > 0 OR max_age_us > 0 ORDER BY id")
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	type policy struct{ id, maxEntries, maxAgeUS int64 }
	var list []policy
	for rows.Next() {
		var p policy
		if err := rows.Scan(&p.id, &p.maxEntries, &p.maxAgeUS); err != nil {
			rows.Close()
			return 0, fmt.Errorf("prune: %w", err)
		}
		list = append(list, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	total := 0
	for _, p := range list {
		cutoff := now.Add(-time.Duration(p.maxAgeUS) * time.Microsecond).Unix()
		// A pass deletes nothing appended after it began: under appends
		// faster than its batches, the excess it chases would otherwise
		// grow as fast as it shrinks. The next pass takes the rest.
		var upto int64
		if err := conn.QueryRow(ctx, "SELECT coalesce(max(entry_id), 0) FROM entries WHERE channel_id = $1", p.id).Scan(&upto); err != nil {
			return total, fmt.Errorf("prune channel %d: %w", p.id, err)
		}
		for upto > 0 {
			// bound: the oldest ID to keep. By count, the max_entries-th
			// newest; by age, the first entry not older than cutoff (or
			// past the newest when every entry is older).
			tag, err := conn.Exec(ctx, `
WITH bound AS (
	SELECT greatest(
		CASE WHEN $2::bigint > 0 THEN (SELECT entry_id FROM entries WHERE channel_id = $1
			ORDER BY entry_id DESC OFFSET $2::bigint - 1 LIMIT 1) END,
		CASE WHEN $3::bigint > 0 THEN coalesce(
			(SELECT min(entry_id) FROM entries WHERE channel_id = $1 AND created_at >= $4),
			(SELECT max(entry_id) + 1 FROM entries WHERE channel_id = $1)) END
	) AS keep
)
DELETE FROM entries WHERE channel_id = $1 AND entry_id IN (
	SELECT entry_id FROM entries, bound WHERE channel_id = $1 AND entry_id < bound.keep AND entry_id <= $6
	ORDER BY entry_id LIMIT $5)`, p.id, p.maxEntries, p.maxAgeUS, cutoff, pruneBatch, upto)
			if err != nil {
				return total, fmt.Errorf("prune channel %d: %w", p.id, err)
			}
			n := int(tag.RowsAffected())
			total += n
			if n < pruneBatch {
				break
			}
		}
	}
	return total, nil
}
