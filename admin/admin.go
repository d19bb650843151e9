// Package admin owns feedmq's administrative operations: channels, their
// keys and feeds, devices and their grants, and database backup and check.
// Service is what every front (the CLI today) calls. Local performs the
// operations on an open database; Client performs them through the admin
// socket of a running server, whose Handler serves them with a Local. Open
// picks one for a data directory.
package admin

import (
	"context"
	"path/filepath"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// Service is every administrative operation. Errors carry a channels
// error code (channels.ErrorCode) whether they come from a Local or
// across the socket.
type Service interface {
	CreateChannel(ctx context.Context, spec auth.ChannelSpec) (*channels.Channel, error)
	UpdateChannel(ctx context.Context, id uint64, u auth.ChannelUpdate) (*channels.Channel, error)
	RegenerateKey(ctx context.Context, id uint64, write bool) (*channels.Channel, error)
	DeleteChannel(ctx context.Context, id uint64) error
	ClearChannel(ctx context.Context, id uint64) error
	Channel(ctx context.Context, id uint64) (*channels.Channel, error)
	ListChannels(ctx context.Context) ([]*channels.Channel, error)
	Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error)
	// ImportEntries stores a batch of at most MaxImportBatch entries
	// brought in from elsewhere, atomically (see Local.ImportEntries).
	ImportEntries(ctx context.Context, id uint64, es []channels.Entry, keepIDs bool) (*ImportResult, error)

	CreateDevice(ctx context.Context, spec auth.DeviceSpec) (*auth.Credentials, error)
	UpdateDevice(ctx context.Context, id uint64, u auth.DeviceUpdate) (*auth.Device, error)
	AuthorizeDevice(ctx context.Context, id uint64, grants []auth.Grant) (*auth.Device, error)
	DeauthorizeDevice(ctx context.Context, id, ch uint64) (*auth.Device, error)
	ResetPassword(ctx context.Context, id uint64) (*auth.Credentials, error)
	DeleteDevice(ctx context.Context, id uint64) error
	Device(ctx context.Context, id uint64) (*auth.Device, error)
	ListDevices(ctx context.Context) ([]*auth.Device, error)
	// Bind makes publishes on free topics matching b.Topic feed b's
	// channel; it returns the stored binding, with its ID.
	Bind(ctx context.Context, b channels.Binding) (*channels.Binding, error)
	// Unbind deletes a binding.
	Unbind(ctx context.Context, id uint64) error
	// Bindings lists the bindings of a channel, or every binding for
	// channel 0.
	Bindings(ctx context.Context, channel uint64) ([]channels.Binding, error)

	// DeviceActivity returns the running broker's view of each device
	// that has a live connection or has published since it started;
	// empty when no server runs.
	DeviceActivity(ctx context.Context) (map[uint64]auth.Activity, error)

	// AllowRules adds access rules to a device's list, the anonymous
	// connections' or everyone's; a rule on a pattern the list has
	// replaces that rule's access. It returns the list after the change.
	AllowRules(ctx context.Context, target auth.RuleTarget, rules []auth.Rule) ([]auth.Rule, error)
	// DisallowRules removes the rules on patterns from a list: ENOTFOUND
	// (auth.ErrNoRule) and no change when one has none.
	DisallowRules(ctx context.Context, target auth.RuleTarget, patterns []string) ([]auth.Rule, error)
	// AccessRules returns every list of access rules.
	AccessRules(ctx context.Context) (*auth.AccessRules, error)
	// ImportACL applies a parsed Mosquitto ACL file, all or nothing.
	ImportACL(ctx context.Context, acl *auth.ACL, o ACLImportOptions) (*ACLImportResult, error)

	// Account returns the owner account, creating its user API key on
	// first use.
	Account(ctx context.Context) (*auth.AccountInfo, error)
	// RegenerateUserKey replaces the user API key; the old one stops
	// working at once.
	RegenerateUserKey(ctx context.Context) (*auth.AccountInfo, error)
	// SetPassword sets the console password and ends every console
	// session signed in before.
	SetPassword(ctx context.Context, password string) error
	// VerifyPassword checks a console password: EFORBIDDEN when wrong or
	// when none is set.
	VerifyPassword(ctx context.Context, password string) error
	// VerifyUserKey checks a user API key: EFORBIDDEN when wrong.
	VerifyUserKey(ctx context.Context, key string) error
	// RedeemSetupToken sets the first console password with the one-time
	// token a starting server logged; the token is spent on success.
	// EFORBIDDEN when the token is wrong, spent, or a password is set.
	RedeemSetupToken(ctx context.Context, token, password string) error

	// Backup writes a consistent copy of the database to path, which
	// must be absolute (a server does not share the caller's working
	// directory) and must not exist.
	Backup(ctx context.Context, path string) (*BackupResult, error)
	// Check checks the database for damage and broken invariants.
	Check(ctx context.Context) (*storage.CheckReport, error)
}

// Conn is a Service that its user closes when done.
type Conn interface {
	Service
	Close() error
}

// BackupResult describes a backup copy.
type BackupResult struct {
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	storage.Stats
}

// DBPath and SocketPath are the database and the admin socket of a data
// directory.
func DBPath(dataDir string) string     { return filepath.Join(dataDir, "feedmq.db") }
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "feedmq.sock") }
