package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

var _ auth.Store = (*DB)(nil)

// deviceRecord is the stored form of a device; like channelRecord it keeps
// the file format independent of the domain type.
type deviceRecord struct {
	ID   uint64 `json:"id"`
	Name string `json:"name"`
	// Description is absent in records written before it existed.
	Description  string        `json:"description,omitempty"`
	ClientID     string        `json:"client_id"`
	Username     string        `json:"username"`
	PasswordHash string        `json:"password_hash"`
	Grants       []grantRecord `json:"grants,omitempty"`
	// Rules are absent in records written before access rules existed.
	Rules     []ruleRecord `json:"rules,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
}

type grantRecord struct {
	ChannelID uint64 `json:"channel_id"`
	Publish   bool   `json:"publish,omitempty"`
	Subscribe bool   `json:"subscribe,omitempty"`
}

func newDeviceRecord(d *auth.Device) *deviceRecord {
	r := &deviceRecord{
		ID: d.ID, Name: d.Name, Description: d.Description, ClientID: d.ClientID, Username: d.Username,
		PasswordHash: d.PasswordHash, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	for _, g := range d.Channels {
		r.Grants = append(r.Grants, grantRecord(g))
	}
	r.Rules = newRuleRecords(d.Rules)
	return r
}

func (r *deviceRecord) device() (*auth.Device, error) {
	d := &auth.Device{
		ID: r.ID, Name: r.Name, Description: r.Description, ClientID: r.ClientID, Username: r.Username,
		PasswordHash: r.PasswordHash, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	for _, g := range r.Grants {
		d.Channels = append(d.Channels, auth.Grant(g))
	}
	rules, err := rulesOf(r.Rules)
	if err != nil {
		return nil, err
	}
	d.Rules = rules
	return d, nil
}

// CreateDevice assigns d.ID and stores d. ECONFLICT when the username is
// taken; ENOTFOUND when a grant names a missing channel.
func (db *DB) CreateDevice(ctx context.Context, d *auth.Device) error {
	if d.Username == "" {
		return channels.Errorf(channels.EINVALID, "device username is required")
	}
	if err := d.CheckStorable(); err != nil {
		return err
	}
	return db.update(ctx, "create device", func(tx *bolt.Tx) error {
		if err := checkDevice(tx, d, 0); err != nil {
			return err
		}
		id, err := tx.Bucket(devicesBucket).NextSequence()
		if err != nil {
			return err
		}
		d.ID = id
		d.CreatedAt = db.now().UTC()
		d.UpdatedAt = d.CreatedAt
		return putDevice(tx, d)
	})
}

// UpdateDevice replaces device d.ID, keeping its stored CreatedAt.
func (db *DB) UpdateDevice(ctx context.Context, d *auth.Device) error {
	if d.Username == "" {
		return channels.Errorf(channels.EINVALID, "device username is required")
	}
	if err := d.CheckStorable(); err != nil {
		return err
	}
	return db.update(ctx, "update device", func(tx *bolt.Tx) error {
		old, err := findDevice(tx, d.ID)
		if err != nil {
			return err
		}
		if err := checkDevice(tx, d, d.ID); err != nil {
			return err
		}
		if err := deleteUsername(tx, old); err != nil {
			return err
		}
		d.CreatedAt = old.CreatedAt
		d.UpdatedAt = db.now().UTC()
		return putDevice(tx, d)
	})
}

// DeleteDevice removes a device and frees its username.
func (db *DB) DeleteDevice(ctx context.Context, id uint64) error {
	return db.update(ctx, "delete device", func(tx *bolt.Tx) error {
		d, err := findDevice(tx, id)
		if err != nil {
			return err
		}
		if err := tx.Bucket(devicesBucket).Delete(itob(id)); err != nil {
			return fmt.Errorf("delete device %d: %w", id, err)
		}
		return deleteUsername(tx, d)
	})
}

// FindDevice returns one device.
func (db *DB) FindDevice(ctx context.Context, id uint64) (*auth.Device, error) {
	var d *auth.Device
	// Devices are never in the write-ahead log: no need to wait for it.
	err := db.read(ctx, "find device", func(tx *bolt.Tx, _ *tailSnap) (err error) {
		d, err = findDevice(tx, id)
		return err
	})
	return d, err
}

// ListDevices returns all devices ordered by ID.
func (db *DB) ListDevices(ctx context.Context) ([]*auth.Device, error) {
	var list []*auth.Device
	err := db.read(ctx, "list devices", func(tx *bolt.Tx, _ *tailSnap) error {
		list = list[:0]
		return tx.Bucket(devicesBucket).ForEach(func(k, v []byte) error {
			d, err := decodeDevice(btoi(k), v)
			if err != nil {
				return err
			}
			list = append(list, d)
			return nil
		})
	})
	return list, err
}

// checkDevice enforces, inside the transaction that writes d, the rules
// only the store can check atomically: a unique username and grants to
// existing channels, once each. self is the ID d is stored under, 0 for a
// new device, whose ID field the caller may not have cleared.
func checkDevice(tx *bolt.Tx, d *auth.Device, self uint64) error {
	if v := tx.Bucket(usernamesBucket).Get([]byte(d.Username)); v != nil && btoi(v) != self {
		return channels.Errorf(channels.ECONFLICT, "username %q is taken", d.Username)
	}
	seen := make(map[uint64]bool, len(d.Channels))
	for _, g := range d.Channels {
		if seen[g.ChannelID] {
			return channels.Errorf(channels.EINVALID, "channel %d is granted twice", g.ChannelID)
		}
		seen[g.ChannelID] = true
		if tx.Bucket(channelsBucket).Get(itob(g.ChannelID)) == nil {
			return channelNotFound(g.ChannelID)
		}
	}
	return nil
}

// revokeGrants removes every grant to a channel. Devices are collected
// first because bbolt forbids writing to a bucket while iterating it.
func revokeGrants(tx *bolt.Tx, channelID uint64) error {
	var changed []*auth.Device
	err := tx.Bucket(devicesBucket).ForEach(func(k, v []byte) error {
		d, err := decodeDevice(btoi(k), v)
		if err != nil {
			return err
		}
		if _, ok := d.Grant(channelID); ok {
			d.Channels = removeGrant(d.Channels, channelID)
			changed = append(changed, d)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range changed {
		if err := putDevice(tx, d); err != nil {
			return err
		}
	}
	return nil
}

func removeGrant(grants []auth.Grant, channelID uint64) []auth.Grant {
	out := grants[:0]
	for _, g := range grants {
		if g.ChannelID != channelID {
			out = append(out, g)
		}
	}
	return out
}

func findDevice(tx *bolt.Tx, id uint64) (*auth.Device, error) {
	v := tx.Bucket(devicesBucket).Get(itob(id))
	if v == nil {
		return nil, &channels.Error{Code: channels.ENOTFOUND, Message: fmt.Sprintf("device %d not found", id), Err: auth.ErrDeviceNotFound}
	}
	return decodeDevice(id, v)
}

func decodeDevice(id uint64, v []byte) (*auth.Device, error) {
	var r deviceRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode device %d: %w", id, err)
	}
	d, err := r.device()
	if err != nil {
		return nil, fmt.Errorf("decode device %d: %w", id, err)
	}
	return d, nil
}

// putDevice writes d and its username index entry.
func putDevice(tx *bolt.Tx, d *auth.Device) error {
	v, err := json.Marshal(newDeviceRecord(d))
	if err != nil {
		return fmt.Errorf("encode device %d: %w", d.ID, err)
	}
	if err := tx.Bucket(devicesBucket).Put(itob(d.ID), v); err != nil {
		return fmt.Errorf("put device %d: %w", d.ID, err)
	}
	if err := tx.Bucket(usernamesBucket).Put([]byte(d.Username), itob(d.ID)); err != nil {
		return fmt.Errorf("index username of device %d: %w", d.ID, err)
	}
	return nil
}

func deleteUsername(tx *bolt.Tx, d *auth.Device) error {
	if err := tx.Bucket(usernamesBucket).Delete([]byte(d.Username)); err != nil {
		return fmt.Errorf("unindex username of device %d: %w", d.ID, err)
	}
	return nil
}
