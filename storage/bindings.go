package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

var _ channels.BindingStore = (*DB)(nil)

// Bindings live in their own top-level bucket:
//
//	bindings   8-byte big-endian binding id -> JSON binding record
//
// IDs come from the bucket's NextSequence and are never reused. Like the
// account bucket, it came after schema version 1 without a new version:
// older feedmq versions ignore it, so it is created on the first binding
// and a file without it simply has none.
var bindingsBucket = []byte("bindings")

// bindingRecord is the stored form of channels.Binding, separate so that
// renaming a domain field cannot silently change the file format.
type bindingRecord struct {
	ID        uint64                     `json:"id"`
	ChannelID uint64                     `json:"channel_id"`
	Topic     string                     `json:"topic"`
	Fields    [channels.NumFields]string `json:"fields"`
	Status    string                     `json:"status,omitempty"`
	Latitude  string                     `json:"latitude,omitempty"`
	Longitude string                     `json:"longitude,omitempty"`
	Elevation string                     `json:"elevation,omitempty"`
	CreatedAt string                     `json:"created_at_path,omitempty"`
	Created   time.Time                  `json:"created"`
}

func newBindingRecord(b *channels.Binding) bindingRecord {
	return bindingRecord{ID: b.ID, ChannelID: b.ChannelID, Topic: b.Topic, Fields: b.Fields,
		Status: b.Status, Latitude: b.Latitude, Longitude: b.Longitude, Elevation: b.Elevation,
		CreatedAt: b.CreatedAt, Created: b.Created}
}

func (r *bindingRecord) binding() channels.Binding {
	return channels.Binding{ID: r.ID, ChannelID: r.ChannelID, Topic: r.Topic, Fields: r.Fields,
		Status: r.Status, Latitude: r.Latitude, Longitude: r.Longitude, Elevation: r.Elevation,
		CreatedAt: r.CreatedAt, Created: r.Created}
}

func decodeBinding(id uint64, v []byte) (channels.Binding, error) {
	var r bindingRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return channels.Binding{}, fmt.Errorf("decode binding %d: %w", id, err)
	}
	return r.binding(), nil
}

// Bindings returns every binding, in ID order.
func (db *DB) Bindings(ctx context.Context) ([]channels.Binding, error) {
	var list []channels.Binding
	err := db.view(ctx, "list bindings", func(tx *bolt.Tx) error {
		list = list[:0]
		b := tx.Bucket(bindingsBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			bd, err := decodeBinding(btoi(k), v)
			if err != nil {
				return err
			}
			list = append(list, bd)
			return nil
		})
	})
	return list, err
}

// CreateBinding checks b (Validate), assigns b.ID, stamps b.Created and
// stores b, in one transaction with the check that its channel exists.
func (db *DB) CreateBinding(ctx context.Context, b *channels.Binding) error {
	if err := b.Validate(); err != nil {
		return err
	}
	return db.update(ctx, "create binding", func(tx *bolt.Tx) error {
		if tx.Bucket(channelsBucket).Get(itob(b.ChannelID)) == nil {
			return channelNotFound(b.ChannelID)
		}
		bucket, err := tx.CreateBucketIfNotExists(bindingsBucket)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bindingsBucket, err)
		}
		id, err := bucket.NextSequence()
		if err != nil {
			return err
		}
		b.ID, b.Created = id, db.now().UTC().Truncate(time.Second)
		v, err := json.Marshal(newBindingRecord(b))
		if err != nil {
			return fmt.Errorf("encode binding %d: %w", id, err)
		}
		return bucket.Put(itob(id), v)
	})
}

// DeleteBinding removes binding id.
func (db *DB) DeleteBinding(ctx context.Context, id uint64) error {
	return db.update(ctx, "delete binding", func(tx *bolt.Tx) error {
		b := tx.Bucket(bindingsBucket)
		if b == nil || b.Get(itob(id)) == nil {
			return bindingNotFound(id)
		}
		return b.Delete(itob(id))
	})
}

func bindingNotFound(id uint64) error {
	return channels.Errorf(channels.ENOTFOUND, "binding %d not found", id)
}

// deleteBindings removes the bindings of channel id, in the transaction
// that deletes the channel: none may outlive it.
func deleteBindings(tx *bolt.Tx, channelID uint64) error {
	b := tx.Bucket(bindingsBucket)
	if b == nil {
		return nil
	}
	var gone [][]byte
	err := b.ForEach(func(k, v []byte) error {
		bd, err := decodeBinding(btoi(k), v)
		if err != nil {
			return err
		}
		if bd.ChannelID == channelID {
			gone = append(gone, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range gone {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("delete binding %d: %w", btoi(k), err)
		}
	}
	return nil
}

// checkBindings adds to rep what is wrong with the bindings: records that
// do not decode or carry another ID, bindings of missing channels, and
// bindings that would no longer pass Validate.
func checkBindings(tx *bolt.Tx, rep *CheckReport) {
	b := tx.Bucket(bindingsBucket)
	if b == nil {
		return
	}
	chans := tx.Bucket(channelsBucket)
	_ = b.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			rep.add("bindings: key %x is not an 8-byte ID", k)
			return nil
		}
		id := btoi(k)
		if v == nil {
			rep.add("binding %d is a bucket", id)
			return nil
		}
		bd, err := decodeBinding(id, v)
		if err != nil {
			rep.add("binding %d: record does not decode: %v", id, err)
			return nil
		}
		if bd.ID != id {
			rep.add("binding %d: record has ID %d", id, bd.ID)
		}
		if chans.Get(itob(bd.ChannelID)) == nil {
			rep.add("binding %d: channel %d does not exist", id, bd.ChannelID)
		}
		if err := bd.Validate(); err != nil {
			rep.add("binding %d: %s", id, channels.ErrorMessage(err))
		}
		return nil
	})
}
