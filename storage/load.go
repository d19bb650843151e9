package storage

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage/dbcopy"
	bolt "go.etcd.io/bbolt"
)

var _ dbcopy.Destination = (*DB)(nil)

// The methods below serve "feedmq db copy": they store what another
// database holds under the IDs it has there, which the everyday writes
// (CreateChannel and the like) assign themselves. No running server uses
// them.

// LoadChannel stores c under c.ID, keeping its CreatedAt and UpdatedAt,
// with an empty feed. The channels' ID counter is raised to c.ID.
func (db *DB) LoadChannel(ctx context.Context, c *channels.Channel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.ID == 0 {
		return channels.Errorf(channels.EINVALID, "a loaded channel needs its ID")
	}
	return db.update(ctx, "load channel", func(tx *bolt.Tx) error {
		b := tx.Bucket(channelsBucket)
		key := itob(c.ID)
		if b.Get(key) != nil || tx.Bucket(feedsBucket).Bucket(key) != nil {
			return channels.Errorf(channels.ECONFLICT, "channel %d exists", c.ID)
		}
		if _, err := tx.Bucket(feedsBucket).CreateBucket(key); err != nil {
			return fmt.Errorf("create feed of channel %d: %w", c.ID, err)
		}
		if err := raiseSequence(b, c.ID); err != nil {
			return err
		}
		return putChannel(tx, c)
	})
}

// LoadEntries stores es, entries of channelID, under their own IDs, which
// must rise and lie above the channel's last entry_id, all or none. Unlike
// ImportEntries it keeps entries in any time order, as appends may leave
// it (a back-dated entry); reads learn the order as they do after appends.
func (db *DB) LoadEntries(ctx context.Context, channelID uint64, es []channels.Entry) error {
	for i := range es {
		e := &es[i]
		switch {
		case e.ChannelID != channelID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch is for channel %d, not %d", i+1, e.ChannelID, channelID)
		case e.Set&unknownValues != 0 || !e.HasValues():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch sets no value or unknown values", i+1)
		case e.ID == 0 || e.ID > MaxImportedID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has entry_id %d, outside 1..%d", i+1, e.ID, uint64(MaxImportedID))
		case e.CreatedAt.IsZero():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has no created_at", i+1)
		}
	}
	if len(es) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return wrap("load entries", db.w.appendAfter(ctx, func() error {
		return db.bolt.Update(func(tx *bolt.Tx) error {
			feed := feedBucket(tx, channelID)
			if feed == nil {
				return channelNotFound(channelID)
			}
			feed.FillPercent = 1 // keys only grow
			seq := feed.Sequence()
			for i := range es {
				if es[i].ID <= seq {
					return channels.Errorf(channels.ECONFLICT, "entry %d of the batch has entry_id %d, not above %d", i+1, es[i].ID, seq)
				}
				seq = es[i].ID
				if err := feed.Put(itob(seq), encodeEntry(nil, &es[i])); err != nil {
					return fmt.Errorf("put entry %d of channel %d: %w", seq, channelID, err)
				}
			}
			return feed.SetSequence(seq)
		})
	}))
}

// RaiseLastEntryID sets the channel's last entry_id to id when it is
// lower, so that appends number on after entries retention deleted.
func (db *DB) RaiseLastEntryID(ctx context.Context, channelID, id uint64) error {
	if id > MaxImportedID {
		return channels.Errorf(channels.EINVALID, "entry_id %d is above %d", id, uint64(MaxImportedID))
	}
	return wrap("raise last entry_id", db.w.appendAfter(ctx, func() error {
		return db.bolt.Update(func(tx *bolt.Tx) error {
			feed := feedBucket(tx, channelID)
			if feed == nil {
				return channelNotFound(channelID)
			}
			return raiseSequence(feed, id)
		})
	}))
}

// LoadDevice stores d under d.ID with its times, grants and rules.
func (db *DB) LoadDevice(ctx context.Context, d *auth.Device) error {
	if d.Username == "" {
		return channels.Errorf(channels.EINVALID, "device username is required")
	}
	if d.ID == 0 {
		return channels.Errorf(channels.EINVALID, "a loaded device needs its ID")
	}
	if err := d.CheckStorable(); err != nil {
		return err
	}
	if err := auth.CheckRules(d.Rules); err != nil {
		return channels.Errorf(channels.EINVALID, "device %d: %v", d.ID, err)
	}
	return db.update(ctx, "load device", func(tx *bolt.Tx) error {
		b := tx.Bucket(devicesBucket)
		if b.Get(itob(d.ID)) != nil {
			return channels.Errorf(channels.ECONFLICT, "device %d exists", d.ID)
		}
		if err := checkDevice(tx, d, d.ID); err != nil {
			return err
		}
		if err := raiseSequence(b, d.ID); err != nil {
			return err
		}
		return putDevice(tx, d)
	})
}

// LoadBinding stores b under b.ID with its Created time.
func (db *DB) LoadBinding(ctx context.Context, b *channels.Binding) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if b.ID == 0 {
		return channels.Errorf(channels.EINVALID, "a loaded binding needs its ID")
	}
	v, err := json.Marshal(newBindingRecord(b))
	if err != nil {
		return fmt.Errorf("encode binding %d: %w", b.ID, err)
	}
	return db.update(ctx, "load binding", func(tx *bolt.Tx) error {
		if tx.Bucket(channelsBucket).Get(itob(b.ChannelID)) == nil {
			return channelNotFound(b.ChannelID)
		}
		bucket, err := tx.CreateBucketIfNotExists(bindingsBucket)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bindingsBucket, err)
		}
		if bucket.Get(itob(b.ID)) != nil {
			return channels.Errorf(channels.ECONFLICT, "binding %d exists", b.ID)
		}
		if err := raiseSequence(bucket, b.ID); err != nil {
			return err
		}
		return bucket.Put(itob(b.ID), v)
	})
}

// EntriesAfter returns up to n entries of channelID with IDs above
// afterID, lowest first.
func (db *DB) EntriesAfter(ctx context.Context, channelID, afterID uint64, n int) ([]channels.Entry, error) {
	var out []channels.Entry
	err := db.view(ctx, "read entries", func(tx *bolt.Tx) error {
		out = out[:0]
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		c := feed.Cursor()
		for k, v := c.Seek(itob(afterID + 1)); k != nil && len(out) < n; k, v = c.Next() {
			out = append(out, channels.Entry{ChannelID: channelID, ID: btoi(k)})
			if err := decodeEntry(&out[len(out)-1], v); err != nil {
				return fmt.Errorf("entry %d of channel %d: %w", btoi(k), channelID, err)
			}
		}
		return nil
	})
	return out, err
}

// IDCounters returns the highest channel, device and binding IDs handed out.
func (db *DB) IDCounters(ctx context.Context) (dbcopy.Counters, error) {
	var c dbcopy.Counters
	err := db.view(ctx, "read ID counters", func(tx *bolt.Tx) error {
		c.Channels = tx.Bucket(channelsBucket).Sequence()
		c.Devices = tx.Bucket(devicesBucket).Sequence()
		if b := tx.Bucket(bindingsBucket); b != nil {
			c.Bindings = b.Sequence()
		}
		return nil
	})
	return c, err
}

// RaiseIDCounters raises the ID counters to c where they are lower.
func (db *DB) RaiseIDCounters(ctx context.Context, c dbcopy.Counters) error {
	return db.update(ctx, "raise ID counters", func(tx *bolt.Tx) error {
		if err := raiseSequence(tx.Bucket(channelsBucket), c.Channels); err != nil {
			return err
		}
		if err := raiseSequence(tx.Bucket(devicesBucket), c.Devices); err != nil {
			return err
		}
		if c.Bindings == 0 {
			return nil
		}
		b, err := tx.CreateBucketIfNotExists(bindingsBucket)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bindingsBucket, err)
		}
		return raiseSequence(b, c.Bindings)
	})
}

func raiseSequence(b *bolt.Bucket, v uint64) error {
	if b.Sequence() >= v {
		return nil
	}
	return b.SetSequence(v)
}
