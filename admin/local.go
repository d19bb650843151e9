package admin

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// Local performs the operations on an open database. It applies the
// rules the stores cannot know (limits, device names, grant merging, key
// generation), writes the store and then updates the in-memory Registry,
// so a broker reading it sees a change the moment the call returns. The
// stores check a channel's settings and stamp CreatedAt and UpdatedAt in
// the transaction that writes, so Local does neither.
type Local struct {
	Channels channels.Store
	Devices  auth.Store
	// Rules keeps the rule lists; a device's own rules are also in its
	// Devices record.
	Rules auth.RuleStore
	// BindingStore keeps the bindings of free topics to channels.
	BindingStore channels.BindingStore
	// Accounts keeps the owner account.
	Accounts auth.AccountStore
	// Tx, when set, runs each change as one transaction of a store that
	// several servers share, serialised with their changes, so that a
	// limit check and the writes it guards hold against all of them.
	// Without it (bbolt, which one process owns) mu alone serialises
	// changes.
	Tx channels.Transactor
	// Registry answers the broker's per-packet questions; Local keeps it
	// in step with every committed change.
	Registry *auth.Registry
	Limits   auth.Limits
	// Revoke, when set, is called after a device's password is reset or
	// the device is deleted, so live connections that used the old
	// credentials can be closed. Set it before serving changes.
	Revoke func(deviceID uint64)
	// ChannelReset, when set, is called when a channel was cleared or
	// deleted by any server sharing the store (Apply), so that what the
	// broker knows of its entry IDs starts over. Delivered, when set,
	// returns how far the broker delivered each channel: a full reload
	// reads it before the store, and a channel whose last entry ID is
	// now lower was cleared unnoticed, so it is reset too. Set both
	// before Follow.
	ChannelReset func(channelID uint64)
	Delivered    func() map[uint64]uint64

	db      Store
	mu      sync.Mutex // serialises changes so limit checks cannot race
	account accountState
	// Activity, when set, returns the running broker's view of the
	// devices (DeviceActivity); serve sets it.
	Activity func() map[uint64]auth.Activity

	// bindWatch receives the bindings after each change, and binds is
	// the list it was last given (see WatchBindings).
	bindWatch func([]channels.Binding)
	binds     []channels.Binding

	// follow is what Apply and Follow know of a shared store (apply.go).
	follow followState
}

var _ Service = (*Local)(nil)

// Maintenance is what backup, check and import need of a store beyond the
// domain's interfaces. Both stores have it: the bbolt file
// (*storage.DB) and PostgreSQL (*postgres.DB), whose backup is a bbolt
// file too.
type Maintenance interface {
	// BackupFile writes a consistent copy to a new bbolt file at path,
	// never over an existing one, and returns its size and contents.
	BackupFile(ctx context.Context, path string) (int64, storage.Stats, error)
	// Check verifies the database; what is wrong is in the report, the
	// error is for a check that could not run.
	Check(ctx context.Context) (*storage.CheckReport, error)
	// ImportEntries stores a batch of entries brought in from elsewhere,
	// all or none (see storage.DB.ImportEntries).
	ImportEntries(ctx context.Context, channelID uint64, es []channels.Entry, keepIDs bool) error
}

// Store is a database Local keeps everything in.
type Store interface {
	channels.Store
	auth.Store
	auth.RuleStore
	channels.BindingStore
	auth.AccountStore
	Maintenance
	Close() error
}

// NewLocal returns a Local over db with the given limits and loads its
// Registry from the database.
func NewLocal(ctx context.Context, db Store, lim auth.Limits) (*Local, error) {
	return newLocalOver(ctx, db, db, db, lim)
}

// newLocalOver is NewLocal with channels and devices kept in cs and ds,
// which tests replace to make the stores fail.
func newLocalOver(ctx context.Context, cs channels.Store, ds auth.Store, db Store, lim auth.Limits) (*Local, error) {
	l := newLocal(db, lim)
	l.Channels, l.Devices = cs, ds
	if tx, ok := cs.(channels.Transactor); ok {
		l.Tx = tx
	}
	chs, err := cs.ListChannels(ctx)
	if err != nil {
		return nil, fmt.Errorf("load channels: %w", err)
	}
	for _, c := range chs {
		l.Registry.PutChannel(c)
	}
	devs, err := ds.ListDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	for _, d := range devs {
		l.Registry.PutDevice(d)
	}
	anon, every, err := l.Rules.SharedRules(ctx)
	if err != nil {
		return nil, fmt.Errorf("load access rules: %w", err)
	}
	l.Registry.SetAnonymousRules(anon)
	l.Registry.SetCommonRules(every)
	return l, nil
}

// newLocal returns a Local over db with an empty Registry.
func newLocal(db Store, lim auth.Limits) *Local {
	return &Local{Channels: db, Devices: db, Rules: db, BindingStore: db, Accounts: db, Registry: auth.NewRegistry(), Limits: lim, db: db}
}

// change runs op with mu held and, when the store has one, inside a
// transaction (Tx). op makes its store calls with the context it is
// given and returns what to do once the change is committed (update the
// registry, tell watchers, close revoked connections), which runs only
// then: a change whose commit fails leaves memory as it was.
func (l *Local) change(ctx context.Context, op func(ctx context.Context) (done func(), err error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var done func()
	run := func(ctx context.Context) error {
		var err error
		done, err = op(ctx)
		return err
	}
	var err error
	if l.Tx != nil {
		err = l.Tx.Atomically(ctx, run)
	} else {
		err = run(ctx)
	}
	if err == nil && done != nil {
		done()
	}
	return err
}

// Backup writes a consistent copy of the database from a read
// transaction, so writers go on meanwhile.
func (l *Local) Backup(ctx context.Context, path string) (*BackupResult, error) {
	if !filepath.IsAbs(path) {
		return nil, channels.Errorf(channels.EINVALID, "backup path %q is not absolute", path)
	}
	n, st, err := l.db.BackupFile(ctx, path)
	if err != nil {
		return nil, err
	}
	return &BackupResult{File: path, Bytes: n, Stats: st}, nil
}

// Check checks the database in a read transaction.
func (l *Local) Check(ctx context.Context) (*storage.CheckReport, error) {
	return l.db.Check(ctx)
}

// ownedLocal is a Local that Open opened and that closes its database.
type ownedLocal struct{ *Local }

func (o ownedLocal) Close() error { return o.db.Close() }
