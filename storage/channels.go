package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

var (
	_ channels.Store        = (*DB)(nil)
	_ channels.EntryCounter = (*DB)(nil)
)

// channelRecord is the stored form of a channel. It is separate from
// channels.Channel so that renaming a domain field cannot silently change
// the file format. LastEntryID is not stored: the feed's sequence is the
// single source of truth for it.
type channelRecord struct {
	ID          uint64                     `json:"id"`
	Name        string                     `json:"name"`
	Description string                     `json:"description,omitempty"`
	Public      bool                       `json:"public,omitempty"`
	Fields      [channels.NumFields]string `json:"fields"`
	WriteKey    string                     `json:"write_key"`
	ReadKey     string                     `json:"read_key"`
	RateLimit   time.Duration              `json:"rate_limit,omitempty"`
	// Retention; absent in records written before it existed, which
	// decode as 0: keep everything.
	MaxEntries uint64        `json:"max_entries,omitempty"`
	MaxAge     time.Duration `json:"max_age,omitempty"`
	// Settings for scripts and the channel API; absent in records written
	// before they existed, which decode as unset.
	Latitude  string    `json:"latitude,omitempty"`
	Longitude string    `json:"longitude,omitempty"`
	Elevation string    `json:"elevation,omitempty"`
	Metadata  string    `json:"metadata,omitempty"`
	Tags      []string  `json:"tags,omitempty"`
	URL       string    `json:"url,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func newChannelRecord(c *channels.Channel) *channelRecord {
	return &channelRecord{
		ID: c.ID, Name: c.Name, Description: c.Description, Public: c.Public,
		Fields: c.Fields, WriteKey: c.WriteKey, ReadKey: c.ReadKey,
		RateLimit: c.RateLimit, MaxEntries: c.MaxEntries, MaxAge: c.MaxAge,
		Latitude: c.Latitude, Longitude: c.Longitude, Elevation: c.Elevation,
		Metadata: c.Metadata, Tags: c.Tags, URL: c.URL,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
	}
}

func (r *channelRecord) channel() *channels.Channel {
	return &channels.Channel{
		ID: r.ID, Name: r.Name, Description: r.Description, Public: r.Public,
		Fields: r.Fields, WriteKey: r.WriteKey, ReadKey: r.ReadKey,
		RateLimit: r.RateLimit, MaxEntries: r.MaxEntries, MaxAge: r.MaxAge,
		Latitude: r.Latitude, Longitude: r.Longitude, Elevation: r.Elevation,
		Metadata: r.Metadata, Tags: r.Tags, URL: r.URL,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

// CreateChannel assigns c.ID and stores c with an empty feed.
func (db *DB) CreateChannel(ctx context.Context, c *channels.Channel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return db.update(ctx, "create channel", func(tx *bolt.Tx) error {
		id, err := tx.Bucket(channelsBucket).NextSequence()
		if err != nil {
			return err
		}
		if _, err := tx.Bucket(feedsBucket).CreateBucket(itob(id)); err != nil {
			return fmt.Errorf("create feed of channel %d: %w", id, err)
		}
		c.ID, c.LastEntryID = id, 0
		c.CreatedAt = db.now().UTC()
		c.UpdatedAt = c.CreatedAt
		return putChannel(tx, c)
	})
}

// UpdateChannel replaces the settings of channel c.ID. CreatedAt stays as
// stored and LastEntryID is refreshed, so c mirrors the stored channel.
func (db *DB) UpdateChannel(ctx context.Context, c *channels.Channel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return db.update(ctx, "update channel", func(tx *bolt.Tx) error {
		old, err := findChannel(tx, c.ID)
		if err != nil {
			return err
		}
		c.CreatedAt, c.LastEntryID = old.CreatedAt, old.LastEntryID
		c.UpdatedAt = db.now().UTC()
		return putChannel(tx, c)
	})
}

// DeleteChannel removes the channel, its feed, its bindings and every
// grant to it in one transaction, so no device is left with a right to a
// missing channel and no topic feeds it.
func (db *DB) DeleteChannel(ctx context.Context, id uint64) error {
	// Exclusive: the writer must forget the channel's entry IDs with it.
	return db.w.exclusive(ctx, func() error {
		return db.deleteChannel(ctx, id)
	})
}

func (db *DB) deleteChannel(ctx context.Context, id uint64) error {
	db.w.tail.renumber(id)
	return db.update(ctx, "delete channel", func(tx *bolt.Tx) error {
		key := itob(id)
		if tx.Bucket(channelsBucket).Get(key) == nil {
			return channelNotFound(id)
		}
		if err := tx.Bucket(channelsBucket).Delete(key); err != nil {
			return fmt.Errorf("delete channel %d: %w", id, err)
		}
		if err := tx.Bucket(feedsBucket).DeleteBucket(key); err != nil {
			return fmt.Errorf("delete feed of channel %d: %w", id, err)
		}
		if err := deleteBindings(tx, id); err != nil {
			return err
		}
		return revokeGrants(tx, id)
	})
}

// FindChannel returns channel id with LastEntryID filled in.
func (db *DB) FindChannel(ctx context.Context, id uint64) (*channels.Channel, error) {
	var c *channels.Channel
	err := db.read(ctx, "find channel", func(tx *bolt.Tx, s *tailSnap) (err error) {
		c, err = findChannel(tx, id)
		if err == nil {
			c.LastEntryID = s.lastID(id, feedBucket(tx, id))
		}
		return err
	})
	return c, err
}

// ListChannels returns all channels ordered by ID.
func (db *DB) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	var list []*channels.Channel
	err := db.read(ctx, "list channels", func(tx *bolt.Tx, s *tailSnap) error {
		list = list[:0]
		feeds := tx.Bucket(feedsBucket)
		return tx.Bucket(channelsBucket).ForEach(func(k, v []byte) error {
			c, err := decodeChannel(btoi(k), v, feeds)
			if err != nil {
				return err
			}
			c.LastEntryID = s.lastID(c.ID, feeds.Bucket(k))
			list = append(list, c)
			return nil
		})
	})
	return list, err
}

func findChannel(tx *bolt.Tx, id uint64) (*channels.Channel, error) {
	v := tx.Bucket(channelsBucket).Get(itob(id))
	if v == nil {
		return nil, channelNotFound(id)
	}
	return decodeChannel(id, v, tx.Bucket(feedsBucket))
}

// decodeChannel decodes a channel record and reads its LastEntryID from
// the feed bucket's sequence.
func decodeChannel(id uint64, v []byte, feeds *bolt.Bucket) (*channels.Channel, error) {
	var r channelRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode channel %d: %w", id, err)
	}
	c := r.channel()
	feed := feeds.Bucket(itob(id))
	if feed == nil {
		return nil, fmt.Errorf("feed of channel %d is missing", id)
	}
	c.LastEntryID = feed.Sequence()
	return c, nil
}

func putChannel(tx *bolt.Tx, c *channels.Channel) error {
	v, err := json.Marshal(newChannelRecord(c))
	if err != nil {
		return fmt.Errorf("encode channel %d: %w", c.ID, err)
	}
	if err := tx.Bucket(channelsBucket).Put(itob(c.ID), v); err != nil {
		return fmt.Errorf("put channel %d: %w", c.ID, err)
	}
	return nil
}
