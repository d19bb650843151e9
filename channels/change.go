package channels

import "context"

// Optional store interfaces for stores that several processes share (a
// database server rather than a file one process holds). A store one
// process owns needs neither: every change goes through that process.

// ChangeKind says what a Change is about.
type ChangeKind uint8

// The kinds of Change. Every kind but ChangeResync names one record by
// Change.ID; a receiver reloads that record from the store.
const (
	// ChangeChannel: channel ID was created, updated or (Deleted) deleted.
	ChangeChannel ChangeKind = iota + 1
	// ChangeDevice: device ID was created, updated or (Deleted) deleted;
	// Revoke says its credentials changed, so its live connections must
	// be closed.
	ChangeDevice
	// ChangeCleared: the feed of channel ID was cleared; its numbering
	// restarted at 1, so whatever a receiver knows of its entries (the
	// last ID it delivered) is void.
	ChangeCleared
	// ChangeRules: the shared access rule lists (anonymous, everyone)
	// changed. A device's own rules change with the device.
	ChangeRules
	// ChangeBindings: the bindings of free topics to channels changed.
	ChangeBindings
	// ChangeAccount: the owner account (its password or user API key)
	// changed.
	ChangeAccount
	// ChangeResync: changes may have been missed (the notifier lost its
	// connection, or fell behind): the receiver reloads everything.
	ChangeResync
)

// String names the kind for logs.
func (k ChangeKind) String() string {
	switch k {
	case ChangeChannel:
		return "channel"
	case ChangeDevice:
		return "device"
	case ChangeCleared:
		return "cleared"
	case ChangeRules:
		return "rules"
	case ChangeBindings:
		return "bindings"
	case ChangeAccount:
		return "account"
	case ChangeResync:
		return "resync"
	}
	return "unknown"
}

// Change is one committed change to the configuration a store shares
// between processes.
type Change struct {
	// Version is the store's configuration version once the change was
	// committed (ConfigVersion); versions increase with every commit that
	// changes configuration, so a receiver that saw Version v is behind
	// exactly when ConfigVersion returns more than v.
	Version uint64
	Kind    ChangeKind
	// ID is the channel or device the change is about (0 for the kinds
	// that name no record).
	ID uint64
	// Deleted: the channel or device no longer exists.
	Deleted bool
	// Revoke: the device's credentials were reset or the device deleted;
	// connections authenticated with the old ones must be closed.
	Revoke bool
}

// ChangeNotifier is implemented by stores that several processes share,
// so that each learns of the others' configuration changes (channels,
// devices, rules, bindings, account) and keeps its in-memory view of them
// current.
type ChangeNotifier interface {
	// Changes returns the changes committed from now on, by any process,
	// in commit order. The channel is closed when ctx ends or when the
	// notifier loses its connection to the store; changes made meanwhile
	// are not replayed, so a receiver then compares ConfigVersion with
	// the last Version it saw, reloads everything when behind, and calls
	// Changes again. A notifier that falls behind sends ChangeResync
	// rather than blocking writers.
	Changes(ctx context.Context) (<-chan Change, error)
	// ConfigVersion returns the current configuration version: the
	// Version of the latest committed change, 0 before any.
	ConfigVersion(ctx context.Context) (uint64, error)
}

// Transactor is implemented by stores that several processes share, so
// that a check and the writes it guards (a device limit, then the new
// device) happen as one against every process.
type Transactor interface {
	// Atomically runs fn in one transaction, serialised with every other
	// Atomically call on the store from any process. Store calls fn makes
	// with the context it is given join the transaction; fn must make
	// none with another context. When fn returns an error nothing it
	// wrote is kept and Atomically returns that error. An error in the
	// chain of ErrCommitUnknown means the outcome is unknown. fn runs
	// once (Atomically does not retry it), and whatever it must do
	// outside the store (update caches, close connections) waits until
	// Atomically has returned nil.
	Atomically(ctx context.Context, fn func(ctx context.Context) error) error
}
