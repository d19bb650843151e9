package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// ImportEntries stores a batch of entries brought in from elsewhere (an
// export file, another server) in one transaction: all of them or none,
// as the bbolt store does. Each keeps its CreatedAt, which must be set.
//
// With keepIDs each entry keeps its ID; the IDs must rise through the
// batch and lie above the channel's last entry_id, which becomes the
// batch's highest. Without, the entries are numbered on from the last
// entry_id, as appends are: the channel's row is locked as an append
// locks it, so no append of any process is numbered meanwhile.
//
// Entries must come in time order, none older than the channel's newest
// entry, so that a feed stays ordered by time as well as by ID. The
// channel's rate limit does not apply (the entries are history), and
// nothing is announced: subscribers hear nothing of imported entries.
func (db *DB) ImportEntries(ctx context.Context, channelID uint64, es []channels.Entry, keepIDs bool) error {
	for i := range es {
		e := &es[i]
		switch {
		case e.ChannelID != channelID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch is for channel %d, not %d", i+1, e.ChannelID, channelID)
		case e.Set>>channels.NumValues != 0:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch sets unknown values (mask %#x)", i+1, e.Set)
		case !e.HasValues():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch sets no value", i+1)
		case e.CreatedAt.IsZero():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has no created_at", i+1)
		case keepIDs && e.ID == 0:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has no entry_id to keep", i+1)
		case keepIDs && e.ID > storage.MaxImportedID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has entry_id %d, above the largest one kept (%d)",
				i+1, e.ID, uint64(storage.MaxImportedID))
		}
		if err := checkEntry(e); channels.ErrorCode(err) == channels.ENOTFOUND {
			return err // a channel ID no row can hold: not found, as any other
		} else if err != nil {
			return channels.Errorf(channels.EINVALID, "entry %d of the batch: %s", i+1, channels.ErrorMessage(err))
		}
	}
	if len(es) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var last int64
		err := tx.QueryRow(ctx, "SELECT last_entry_id FROM channels WHERE id = $1 FOR NO KEY UPDATE", clampID(channelID)).Scan(&last)
		if err == pgx.ErrNoRows {
			return channelNotFound(channelID)
		} else if err != nil {
			return err
		}
		var newest *int64
		var newestID int64
		err = tx.QueryRow(ctx, `SELECT created_at, entry_id FROM entries WHERE channel_id = $1
			ORDER BY entry_id DESC LIMIT 1`, int64(channelID)).Scan(&newest, &newestID)
		if err != nil && err != pgx.ErrNoRows {
			return err
		}
		seq := uint64(last)
		var prev int64
		prevWhat := ""
		if newest != nil {
			prev, prevWhat = *newest, "the channel's newest entry ("+itoa(newestID)+")"
		}
		for i := range es {
			e := &es[i]
			if t := e.CreatedAt.Unix(); prevWhat != "" && t < prev {
				return channels.Errorf(channels.ECONFLICT, "entry %d of the batch (created_at %s) is older than %s, created %s; entries must come in time order",
					i+1, e.CreatedAt.Format(channels.TimeFormat), prevWhat, time.Unix(prev, 0).UTC().Format(channels.TimeFormat))
			}
			prev, prevWhat = e.CreatedAt.Unix(), "entry "+itoa(int64(i+1))+" of the batch"
			if keepIDs {
				if e.ID <= seq {
					return channels.Errorf(channels.ECONFLICT, "entry %d of the batch has entry_id %d, not above the channel's last entry_id %d; IDs are kept only in rising order into a channel without entries",
						i+1, e.ID, seq)
				}
			} else {
				e.ID = seq + 1
			}
			seq = e.ID
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"}, entryCopyColumns, pgx.CopyFromRows(entryRows(channelID, es))); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE channels SET last_entry_id = $2 WHERE id = $1", int64(channelID), int64(seq))
		return err
	})
	if err != nil && !keepIDs {
		for i := range es {
			es[i].ID = 0 // nothing was stored, no ID taken
		}
	}
	return wrap("import entries", err)
}

// entryCopyColumns are the entries columns entryRows fills, in order.
var entryCopyColumns = []string{"channel_id", "entry_id", "created_at", "field1", "field2", "field3", "field4",
	"field5", "field6", "field7", "field8", "latitude", "longitude", "elevation", "status"}

// entryRows are es as rows of entryCopyColumns; unset values are NULL.
func entryRows(channelID uint64, es []channels.Entry) [][]any {
	rows := make([][]any, len(es))
	for i := range es {
		e := &es[i]
		row := make([]any, 0, 3+channels.NumValues)
		row = append(row, int64(channelID), int64(e.ID), e.CreatedAt.Unix())
		for v := 0; v < channels.NumValues; v++ {
			if s, ok := e.Value(v); ok {
				row = append(row, s)
			} else {
				row = append(row, nil)
			}
		}
		rows[i] = row
	}
	return rows
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
