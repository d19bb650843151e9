package admin

import (
	"context"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// accountState is a Local's copy of the owner account. The HTTP API checks
// the user API key on every request, so the account is read from the
// database once and then kept here, updated by the Local's own writes.
// Nothing else writes it while the Local runs: a server holds the
// database, so admin commands reach its Local through the socket, and an
// offline change is read at the next start.
type accountState struct {
	mu sync.Mutex
	// acct is nil until first loaded; it is replaced, never changed in
	// place, so a copy of the pointer may be read outside mu.
	acct *auth.Account
	// token is the one-time setup token, "" when none is open. It lives
	// only in memory: a restart ends it.
	token string
	// now is the clock; nil means time.Now.
	now func() time.Time
	// hash hashes a new password; nil means auth.HashOwnerPassword.
	// Tests make it cheaper (verifying reads the cost from the hash).
	hash func(ctx context.Context, password string) (string, error)
}

// hashPassword checks and hashes a new console password.
func (l *Local) hashPassword(ctx context.Context, password string) (string, error) {
	if l.account.hash != nil {
		return l.account.hash(ctx, password)
	}
	return auth.HashOwnerPassword(ctx, password)
}

// Errors of the owner account. Each wraps its sentinel so that callers
// (and Clients, across the socket) test it with errors.Is.
var (
	errBadPassword = &channels.Error{Code: channels.EFORBIDDEN, Message: "wrong console password", Err: auth.ErrBadPassword}
	errNoPassword  = &channels.Error{Code: channels.EFORBIDDEN, Err: auth.ErrBadPassword,
		Message: "no console password is set; set one with feedmq account set-password or the setup link serve logs"}
	errMissingKey = &channels.Error{Code: channels.EFORBIDDEN, Message: "user API key is missing", Err: auth.ErrBadUserKey}
	errBadUserKey = &channels.Error{Code: channels.EFORBIDDEN, Message: "wrong user API key", Err: auth.ErrBadUserKey}
	// One message for a wrong, a spent and an expired token: which one
	// it was is no business of whoever holds a wrong one.
	errSetupToken = &channels.Error{Code: channels.EFORBIDDEN, Err: auth.ErrSetupToken,
		Message: "the setup link is not valid: it was used already, or serve restarted since it logged it"}
	errPasswordSet = &channels.Error{Code: channels.EFORBIDDEN, Err: auth.ErrSetupToken,
		Message: "a console password is set already; sign in with it, or change it with feedmq account set-password"}
)

// loadAccount returns the owner account, reading it on first use and
// creating its user API key when it has none. l.account.mu must be held.
func (l *Local) loadAccount(ctx context.Context) (*auth.Account, error) {
	if a := l.account.acct; a != nil {
		return a, nil
	}
	if l.Tx != nil {
		// Servers sharing the store may start together: one of them
		// creates the key, and the others read it.
		return l.changeAccount(ctx, func(a *auth.Account) (*auth.Account, error) { return a, nil })
	}
	a, err := l.readAccount(ctx)
	if err != nil {
		return nil, err
	}
	l.account.acct = a
	return a, nil
}

// readAccount reads the stored account, creating its user API key when
// it has none.
func (l *Local) readAccount(ctx context.Context) (*auth.Account, error) {
	a, err := l.Accounts.Account(ctx)
	if err != nil {
		return nil, err
	}
	if a.UserAPIKey == "" {
		a.UserAPIKey = auth.NewAPIKey()
		if err := l.Accounts.PutAccount(ctx, a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// changeAccount stores next(the current account) and makes it the
// current account; next must not change its argument. With a store
// several servers share (Tx), the account is read inside the transaction
// rather than taken from the copy kept here, so that another server's
// change to it is not overwritten. l.account.mu must be held.
func (l *Local) changeAccount(ctx context.Context, next func(*auth.Account) (*auth.Account, error)) (*auth.Account, error) {
	if l.Tx == nil {
		a, err := l.loadAccount(ctx)
		if err != nil {
			return nil, err
		}
		n, err := next(a)
		if err != nil {
			return nil, err
		}
		if err := l.putAccount(ctx, n); err != nil {
			return nil, err
		}
		return n, nil
	}
	var n *auth.Account
	err := l.Tx.Atomically(ctx, func(ctx context.Context) error {
		a, err := l.readAccount(ctx)
		if err != nil {
			return err
		}
		if n, err = next(a); err != nil || n == a {
			return err
		}
		return l.Accounts.PutAccount(ctx, n)
	})
	if err != nil {
		return nil, err
	}
	l.account.acct = n
	return n, nil
}

// AccountChanged drops the copy of the owner account kept here, so that
// the next use reads the store: another server sharing it changed the
// account.
func (l *Local) AccountChanged() {
	l.account.mu.Lock()
	l.account.acct = nil
	l.account.mu.Unlock()
}

// currentAccount is loadAccount taking the lock.
func (l *Local) currentAccount(ctx context.Context) (*auth.Account, error) {
	l.account.mu.Lock()
	defer l.account.mu.Unlock()
	return l.loadAccount(ctx)
}

// putAccount stores a and makes it the current account. l.account.mu
// must be held.
func (l *Local) putAccount(ctx context.Context, a *auth.Account) error {
	if err := l.Accounts.PutAccount(ctx, a); err != nil {
		return err
	}
	l.account.acct = a
	return nil
}

func accountInfo(a *auth.Account) *auth.AccountInfo {
	info := &auth.AccountInfo{UserAPIKey: a.UserAPIKey, PasswordSet: a.PasswordHash != ""}
	if !a.PasswordChangedAt.IsZero() {
		t := a.PasswordChangedAt
		info.PasswordChangedAt = &t
	}
	return info
}

// Account returns the owner account, creating its user API key on first
// use.
func (l *Local) Account(ctx context.Context) (*auth.AccountInfo, error) {
	a, err := l.currentAccount(ctx)
	if err != nil {
		return nil, err
	}
	return accountInfo(a), nil
}

// RegenerateUserKey replaces the user API key.
func (l *Local) RegenerateUserKey(ctx context.Context) (*auth.AccountInfo, error) {
	l.account.mu.Lock()
	defer l.account.mu.Unlock()
	n, err := l.changeAccount(ctx, func(a *auth.Account) (*auth.Account, error) {
		next := *a
		for next.UserAPIKey == a.UserAPIKey {
			next.UserAPIKey = auth.NewAPIKey()
		}
		return &next, nil
	})
	if err != nil {
		return nil, err
	}
	return accountInfo(n), nil
}

// VerifyUserKey checks key against the user API key in constant time.
func (l *Local) VerifyUserKey(ctx context.Context, key string) error {
	a, err := l.currentAccount(ctx)
	if err != nil {
		return err
	}
	switch {
	case key == "":
		return errMissingKey
	case !auth.KeysEqual(key, a.UserAPIKey):
		return errBadUserKey
	}
	return nil
}

// SetPassword sets the console password. The hash is computed before the
// lock is taken: it takes a good fraction of a second, and the lock
// guards every API key check.
func (l *Local) SetPassword(ctx context.Context, password string) error {
	hash, err := l.hashPassword(ctx, password)
	if err != nil {
		return err
	}
	l.account.mu.Lock()
	defer l.account.mu.Unlock()
	return l.setPasswordHash(ctx, hash)
}

// setPasswordHash stores hash as the console password, stamps the change
// and closes any setup token. l.account.mu must be held.
func (l *Local) setPasswordHash(ctx context.Context, hash string) error {
	_, err := l.changeAccount(ctx, func(a *auth.Account) (*auth.Account, error) {
		next := *a
		next.PasswordHash = hash
		// Sessions signed in before PasswordChangedAt end, so it must
		// move forward even when the clock has not (coarse clocks, or
		// a clock set back): a session from just before the change
		// must not survive.
		now := time.Now
		if l.account.now != nil {
			now = l.account.now
		}
		next.PasswordChangedAt = now().UTC().Round(0)
		if !next.PasswordChangedAt.After(a.PasswordChangedAt) {
			next.PasswordChangedAt = a.PasswordChangedAt.Add(time.Nanosecond)
		}
		return &next, nil
	})
	if err != nil {
		return err
	}
	l.account.token = ""
	return nil
}

// VerifyPassword checks a console password. The comparison runs on the
// hash, in constant time; at most two hashes run at once (see
// auth.VerifyOwnerPassword), so a flood of attempts waits rather than
// taking memory.
func (l *Local) VerifyPassword(ctx context.Context, password string) error {
	a, err := l.currentAccount(ctx)
	if err != nil {
		return err
	}
	if a.PasswordHash == "" {
		return errNoPassword
	}
	ok, err := auth.VerifyOwnerPassword(ctx, a.PasswordHash, password)
	if err != nil {
		return err
	}
	if !ok {
		return errBadPassword
	}
	return nil
}

// NewSetupToken opens a one-time setup token for choosing the first
// console password and returns it, or "" when a password is set. A new
// token replaces the previous one. It is a Local's own: it exists only
// in the memory of the server that logged it.
func (l *Local) NewSetupToken() (string, error) {
	l.account.mu.Lock()
	defer l.account.mu.Unlock()
	a, err := l.loadAccount(context.Background())
	if err != nil {
		return "", err
	}
	if a.PasswordHash != "" {
		l.account.token = ""
		return "", nil
	}
	l.account.token = auth.NewSetupToken()
	return l.account.token, nil
}

// checkSetupToken reports why token cannot set the first password now.
// l.account.mu must be held.
func (l *Local) checkSetupToken(ctx context.Context, token string) error {
	a, err := l.loadAccount(ctx)
	if err != nil {
		return err
	}
	if a.PasswordHash != "" {
		return errPasswordSet
	}
	if l.account.token == "" || !auth.KeysEqual(token, l.account.token) {
		return errSetupToken
	}
	return nil
}

// RedeemSetupToken sets the first console password with the setup token
// and spends it. An invalid password leaves the token open, so the user
// can try another.
func (l *Local) RedeemSetupToken(ctx context.Context, token, password string) error {
	l.account.mu.Lock()
	err := l.checkSetupToken(ctx, token)
	l.account.mu.Unlock()
	if err != nil {
		return err
	}
	hash, err := l.hashPassword(ctx, password)
	if err != nil {
		return err
	}
	l.account.mu.Lock()
	defer l.account.mu.Unlock()
	// Another redeem or a set-password may have won meanwhile.
	if err := l.checkSetupToken(ctx, token); err != nil {
		return err
	}
	return l.setPasswordHash(ctx, hash)
}

// Socket arguments of the account operations.
type passwordArgs struct {
	Password string `json:"password"`
}

type userKeyArgs struct {
	Key string `json:"key"`
}

type redeemArgs struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

func (r *Client) Account(ctx context.Context) (*auth.AccountInfo, error) {
	return callPtr[auth.AccountInfo](ctx, r, opAccountGet, nil)
}

func (r *Client) RegenerateUserKey(ctx context.Context) (*auth.AccountInfo, error) {
	return callPtr[auth.AccountInfo](ctx, r, opAccountRegenerate, nil)
}

// checkText refuses a password that is not UTF-8 before it is sent:
// encoding/json would replace the bad bytes, and the server would judge
// another password.
func checkText(password string) error {
	if !utf8.ValidString(password) {
		return auth.CheckOwnerPassword(password)
	}
	return nil
}

func (r *Client) SetPassword(ctx context.Context, password string) error {
	if err := checkText(password); err != nil {
		return err
	}
	_, err := call[struct{}](ctx, r, opAccountSetPassword, passwordArgs{Password: password})
	return err
}

func (r *Client) VerifyPassword(ctx context.Context, password string) error {
	if !utf8.ValidString(password) {
		return errBadPassword // no stored password has invalid UTF-8
	}
	_, err := call[struct{}](ctx, r, opAccountVerifyPassword, passwordArgs{Password: password})
	return err
}

func (r *Client) VerifyUserKey(ctx context.Context, key string) error {
	_, err := call[struct{}](ctx, r, opAccountVerifyUserKey, userKeyArgs{Key: key})
	return err
}

func (r *Client) RedeemSetupToken(ctx context.Context, token, password string) error {
	if err := checkText(password); err != nil {
		return err
	}
	_, err := call[struct{}](ctx, r, opAccountRedeemSetup, redeemArgs{Token: token, Password: password})
	return err
}
