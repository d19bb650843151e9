package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

// MaxImportedID is the largest entry_id an import keeps. Appends number on
// from the highest, so an ID near the top of the range would make them
// wrap to 0 (an entry recovery skips); this bound also keeps IDs exact
// as JSON numbers in a browser.
const MaxImportedID = 1<<53 - 1

// ImportEntries stores a batch of entries brought in from elsewhere (an
// export file, another server) in one transaction: all of them or none.
// Each keeps its CreatedAt, which must be set.
//
// With keepIDs each entry keeps its ID; the IDs must rise through the
// batch and lie above the channel's last entry_id, which becomes the
// batch's highest (gaps are allowed, IDs are never reused). Without, the
// entries are numbered on from the last entry_id, as appends are.
//
// Entries must come in time order, none older than the channel's newest
// entry, so that a feed stays ordered by time as well as by ID: retention
// by age and reads by time rely on it.
//
// The import runs on the writer goroutine after everything logged is in
// bbolt, so no append is numbered meanwhile and the next one continues
// after the batch. Readers see the batch whole or not at all, and those
// paging through a feed meanwhile go on undisturbed: existing IDs do not
// change. Subscribers hear nothing of imported entries.
func (db *DB) ImportEntries(ctx context.Context, channelID uint64, es []channels.Entry, keepIDs bool) error {
	for i := range es {
		e := &es[i]
		switch {
		case e.ChannelID != channelID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch is for channel %d, not %d", i+1, e.ChannelID, channelID)
		case e.Set&unknownValues != 0:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch sets unknown values (mask %#x)", i+1, e.Set)
		case !e.HasValues():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch sets no value", i+1)
		case e.CreatedAt.IsZero():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has no created_at", i+1)
		case keepIDs && e.ID == 0:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has no entry_id to keep", i+1)
		case keepIDs && e.ID > MaxImportedID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has entry_id %d, above the largest one kept (%d)", i+1, e.ID, uint64(MaxImportedID))
		}
		e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Second)
	}
	if len(es) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.w.appendAfter(ctx, func() error {
		return db.bolt.Update(func(tx *bolt.Tx) error {
			return importInto(tx, channelID, es, keepIDs)
		})
	})
	if err != nil && !keepIDs {
		for i := range es {
			es[i].ID = 0 // nothing was stored, no ID taken
		}
	}
	return wrap("import entries", err)
}

func importInto(tx *bolt.Tx, channelID uint64, es []channels.Entry, keepIDs bool) error {
	feed := feedBucket(tx, channelID)
	if feed == nil {
		return channelNotFound(channelID)
	}
	feed.FillPercent = 1 // keys only grow, as in applyWAL
	seq := feed.Sequence()
	var prev int64
	prevWhat := ""
	if k, v := feed.Cursor().Last(); k != nil {
		created, _, _, err := decodeHeader(v)
		if err != nil {
			return fmt.Errorf("entry %d of channel %d: %w", btoi(k), channelID, err)
		}
		prev, prevWhat = created, fmt.Sprintf("the channel's newest entry (%d)", btoi(k))
	}
	for i := range es {
		e := &es[i]
		if t := e.CreatedAt.Unix(); prevWhat != "" && t < prev {
			return channels.Errorf(channels.ECONFLICT, "entry %d of the batch (created_at %s) is older than %s, created %s; entries must come in time order",
				i+1, e.CreatedAt.Format(channels.TimeFormat), prevWhat, time.Unix(prev, 0).UTC().Format(channels.TimeFormat))
		}
		prev, prevWhat = e.CreatedAt.Unix(), fmt.Sprintf("entry %d of the batch", i+1)
		if keepIDs {
			if e.ID <= seq {
				return channels.Errorf(channels.ECONFLICT, "entry %d of the batch has entry_id %d, not above the channel's last entry_id %d; IDs are kept only in rising order into a channel without entries",
					i+1, e.ID, seq)
			}
		} else {
			e.ID = seq + 1
		}
		seq = e.ID
		// bbolt keeps the value slices until the commit: one each.
		if err := feed.Put(itob(e.ID), encodeEntry(nil, e)); err != nil {
			return fmt.Errorf("put entry %d of channel %d: %w", e.ID, channelID, err)
		}
	}
	return feed.SetSequence(seq)
}
