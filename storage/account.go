package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/feedmq/feedmq/auth"
	bolt "go.etcd.io/bbolt"
)

var _ auth.AccountStore = (*DB)(nil)

// The owner account is one JSON record in its own bucket. The bucket came
// after schema version 1 without a new version: older feedmq versions
// ignore it, and a file they wrote simply has no account yet. So Open
// creates it when it can write, and readers treat a missing bucket as no
// account.
var (
	accountBucket = []byte("account")
	ownerKey      = []byte("owner")
)

// accountRecord is the stored form of auth.Account, separate so that
// renaming a domain field cannot silently change the file format.
type accountRecord struct {
	UserAPIKey        string    `json:"user_api_key,omitempty"`
	PasswordHash      string    `json:"password_hash,omitempty"`
	PasswordChangedAt time.Time `json:"password_changed_at,omitzero"`
}

// Account returns the stored owner account, or a zero Account when none
// has been stored.
func (db *DB) Account(ctx context.Context) (*auth.Account, error) {
	a := &auth.Account{}
	err := db.view(ctx, "read account", func(tx *bolt.Tx) error {
		b := tx.Bucket(accountBucket)
		if b == nil {
			return nil
		}
		v := b.Get(ownerKey)
		if v == nil {
			return nil
		}
		r, err := decodeAccount(v)
		if err != nil {
			return err
		}
		*a = auth.Account{UserAPIKey: r.UserAPIKey, PasswordHash: r.PasswordHash, PasswordChangedAt: r.PasswordChangedAt}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// PutAccount replaces the stored owner account.
func (db *DB) PutAccount(ctx context.Context, a *auth.Account) error {
	if err := a.CheckStorable(); err != nil {
		return err
	}
	v, err := json.Marshal(accountRecord{UserAPIKey: a.UserAPIKey, PasswordHash: a.PasswordHash, PasswordChangedAt: a.PasswordChangedAt})
	if err != nil {
		return err
	}
	return db.update(ctx, "write account", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(accountBucket)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", accountBucket, err)
		}
		return b.Put(ownerKey, v)
	})
}

func decodeAccount(v []byte) (*accountRecord, error) {
	var r accountRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("account record does not decode: %w", err)
	}
	return &r, nil
}

// checkAccount reports an account bucket that holds anything but one
// record that decodes.
func checkAccount(tx *bolt.Tx, rep *CheckReport) {
	b := tx.Bucket(accountBucket)
	if b == nil {
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		switch {
		case string(k) != string(ownerKey):
			rep.add("account: unknown key %q", k)
		case v == nil:
			rep.add("account: the owner record is a bucket")
		default:
			if _, err := decodeAccount(v); err != nil {
				rep.add("%v", err)
			}
		}
		return nil
	})
}
