package auth

import (
	"context"
	"time"
)

// Account is the owner of a self-hosted instance: one per database. Its
// user API key manages channels and devices over HTTP; its password signs
// in to the web console.
type Account struct {
	// UserAPIKey is 16 characters A-Z0-9, as ThingSpeak's.
	UserAPIKey string
	// PasswordHash is the console password hashed for humans (a slow,
	// salted hash); "" while no password is set.
	PasswordHash string
	// PasswordChangedAt is when the password was last set; console
	// sessions signed in before it are over.
	PasswordChangedAt time.Time
}

// AccountStore keeps the owner account. storage.DB implements it.
type AccountStore interface {
	// Account returns the stored account, or a zero Account when none
	// has been stored yet.
	Account(ctx context.Context) (*Account, error)
	// PutAccount replaces the stored account.
	PutAccount(ctx context.Context, a *Account) error
}

// AccountInfo is what may be shown of the owner account: never the
// password or its hash.
type AccountInfo struct {
	UserAPIKey        string     `json:"user_api_key"`
	PasswordSet       bool       `json:"password_set"`
	PasswordChangedAt *time.Time `json:"password_changed_at,omitempty"`
}
