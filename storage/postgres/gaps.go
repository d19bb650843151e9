package postgres

import (
	"context"
	"fmt"

	"github.com/feedmq/feedmq/channels"
)

// FillGap returns the entries of a channel with afterID < id <= upTo,
// oldest first, in one range read: what a node of a cluster missed of
// another node's live entries. IDs the store no longer holds (cleared,
// pruned, or the channel deleted) are simply absent. The caller bounds
// the range.
func (db *DB) FillGap(ctx context.Context, channel, afterID, upTo uint64) ([]channels.Entry, error) {
	if upTo <= afterID {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, "SELECT "+entryCols+` FROM entries
		WHERE channel_id = $1 AND entry_id > $2 AND entry_id <= $3 ORDER BY entry_id`,
		clampID(channel), clampID(afterID), clampID(upTo))
	if err != nil {
		return nil, fmt.Errorf("fill gap: %w", err)
	}
	defer rows.Close()
	var out []channels.Entry
	for rows.Next() {
		out = append(out, channels.Entry{ChannelID: channel})
		if err := scanEntry(rows, &out[len(out)-1]); err != nil {
			return nil, fmt.Errorf("fill gap: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fill gap: %w", err)
	}
	return out, nil
}

// LastIDs returns every channel's last entry ID, in one read: what a
// node of a cluster compares its sequencers with after missing messages.
func (db *DB) LastIDs(ctx context.Context) (map[uint64]uint64, error) {
	rows, err := db.pool.Query(ctx, "SELECT id, last_entry_id FROM channels")
	if err != nil {
		return nil, fmt.Errorf("read last entry ids: %w", err)
	}
	defer rows.Close()
	m := make(map[uint64]uint64)
	for rows.Next() {
		var id, last int64
		if err := rows.Scan(&id, &last); err != nil {
			return nil, fmt.Errorf("read last entry ids: %w", err)
		}
		m[uint64(id)] = uint64(last)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read last entry ids: %w", err)
	}
	return m, nil
}
