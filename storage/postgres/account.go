package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

var _ auth.AccountStore = (*DB)(nil)

// Account returns the owner account, or a zero Account when none has
// been stored.
func (db *DB) Account(ctx context.Context) (*auth.Account, error) {
	a := &auth.Account{}
	var changed *time.Time
	err := db.q(ctx).QueryRow(ctx, "SELECT user_api_key, password_hash, password_changed_at FROM account").
		Scan(&a.UserAPIKey, &a.PasswordHash, &changed)
	if err == pgx.ErrNoRows {
		return a, nil
	} else if err != nil {
		return nil, wrap("read account", err)
	}
	if changed != nil {
		a.PasswordChangedAt = changed.UTC()
	}
	return a, nil
}

// PutAccount replaces the owner account.
func (db *DB) PutAccount(ctx context.Context, a *auth.Account) error {
	if err := a.CheckStorable(); err != nil {
		return err
	}
	var changed *time.Time
	if !a.PasswordChangedAt.IsZero() {
		// The column keeps microseconds. The stamp is rounded up, never
		// down: sessions signed in before it end, and one from the same
		// microsecond just before a change must not look newer than it.
		// A stamp moved on by a nanosecond so moves on too.
		t := a.PasswordChangedAt.UTC()
		if r := t.Truncate(time.Microsecond); r.Before(t) {
			t = r.Add(time.Microsecond)
		}
		changed = &t
	}
	return db.write(ctx, "write account", func(tx pgx.Tx) ([]channels.Change, error) {
		_, err := tx.Exec(ctx, `INSERT INTO account (user_api_key, password_hash, password_changed_at) VALUES ($1, $2, $3)
			ON CONFLICT (singleton) DO UPDATE SET user_api_key = $1, password_hash = $2, password_changed_at = $3`,
			a.UserAPIKey, a.PasswordHash, changed)
		if err != nil {
			return nil, err
		}
		return []channels.Change{{Kind: channels.ChangeAccount}}, nil
	})
}
