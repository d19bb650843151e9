package admin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/storetest"
	"github.com/feedmq/feedmq/storage"
)

// txStore is the database seen through a Transactor: it records each
// store call and whether it was made inside the transaction.
type txStore struct {
	*storage.DB
	mu    sync.Mutex
	calls []string // "name" inside the transaction, "name (outside)" not
}

func (s *txStore) note(ctx context.Context, name string) {
	if !storetest.InTx(ctx) {
		name += " (outside)"
	}
	s.mu.Lock()
	s.calls = append(s.calls, name)
	s.mu.Unlock()
}

// take returns the calls since the last take.
func (s *txStore) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

func (s *txStore) CreateChannel(ctx context.Context, c *channels.Channel) error {
	s.note(ctx, "CreateChannel")
	return s.DB.CreateChannel(ctx, c)
}
func (s *txStore) UpdateChannel(ctx context.Context, c *channels.Channel) error {
	s.note(ctx, "UpdateChannel")
	return s.DB.UpdateChannel(ctx, c)
}
func (s *txStore) DeleteChannel(ctx context.Context, id uint64) error {
	s.note(ctx, "DeleteChannel")
	return s.DB.DeleteChannel(ctx, id)
}
func (s *txStore) ClearChannel(ctx context.Context, id uint64) error {
	s.note(ctx, "ClearChannel")
	return s.DB.ClearChannel(ctx, id)
}
func (s *txStore) FindChannel(ctx context.Context, id uint64) (*channels.Channel, error) {
	s.note(ctx, "FindChannel")
	return s.DB.FindChannel(ctx, id)
}
func (s *txStore) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	s.note(ctx, "ListChannels")
	return s.DB.ListChannels(ctx)
}
func (s *txStore) CreateDevice(ctx context.Context, d *auth.Device) error {
	s.note(ctx, "CreateDevice")
	return s.DB.CreateDevice(ctx, d)
}
func (s *txStore) UpdateDevice(ctx context.Context, d *auth.Device) error {
	s.note(ctx, "UpdateDevice")
	return s.DB.UpdateDevice(ctx, d)
}
func (s *txStore) DeleteDevice(ctx context.Context, id uint64) error {
	s.note(ctx, "DeleteDevice")
	return s.DB.DeleteDevice(ctx, id)
}
func (s *txStore) FindDevice(ctx context.Context, id uint64) (*auth.Device, error) {
	s.note(ctx, "FindDevice")
	return s.DB.FindDevice(ctx, id)
}
func (s *txStore) ListDevices(ctx context.Context) ([]*auth.Device, error) {
	s.note(ctx, "ListDevices")
	return s.DB.ListDevices(ctx)
}
func (s *txStore) SharedRules(ctx context.Context) ([]auth.Rule, []auth.Rule, error) {
	s.note(ctx, "SharedRules")
	return s.DB.SharedRules(ctx)
}
func (s *txStore) SetRules(ctx context.Context, c auth.RulesChange) ([]*auth.Device, error) {
	s.note(ctx, "SetRules")
	return s.DB.SetRules(ctx, c)
}
func (s *txStore) Bindings(ctx context.Context) ([]channels.Binding, error) {
	s.note(ctx, "Bindings")
	return s.DB.Bindings(ctx)
}
func (s *txStore) CreateBinding(ctx context.Context, b *channels.Binding) error {
	s.note(ctx, "CreateBinding")
	return s.DB.CreateBinding(ctx, b)
}
func (s *txStore) DeleteBinding(ctx context.Context, id uint64) error {
	s.note(ctx, "DeleteBinding")
	return s.DB.DeleteBinding(ctx, id)
}

// txLocal is a Local whose stores go through txStore and whose changes
// run in a storetest.Transactor.
type txLocal struct {
	*admin.Local
	store   *txStore
	tx      *storetest.Transactor
	revokes *revokes
	binds   [][]channels.Binding
}

func newTxLocal(t *testing.T, lim auth.Limits) *txLocal {
	t.Helper()
	tl := newTestLocal(t, lim)
	st := &txStore{DB: tl.db}
	l := &txLocal{Local: tl.Local, store: st, tx: new(storetest.Transactor), revokes: tl.revokes}
	l.Channels, l.Devices, l.Rules, l.BindingStore, l.Tx = st, st, st, st, l.tx
	if err := l.WatchBindings(t.Context(), func(bs []channels.Binding) { l.binds = append(l.binds, bs) }); err != nil {
		t.Fatal(err)
	}
	st.take()
	return l
}

// Each change, limit checks included, runs in exactly one transaction
// and makes every store call inside it; reads that change nothing take
// none.
func TestLocalChangesRunInTransactions(t *testing.T) {
	ctx := t.Context()
	l := newTxLocal(t, auth.Limits{MaxDevices: 5, MaxChannelsPerDevice: 3, MaxBindings: 5, MaxBindingsPerChannel: 2})
	var ch, ch2 *channels.Channel
	var cr *auth.Credentials
	var b *channels.Binding
	name := "renamed"
	ops := []struct {
		name string
		op   func() error
		want []string // the store calls, in order
	}{
		{"create channel", func() (err error) {
			ch, err = l.CreateChannel(ctx, auth.ChannelSpec{Name: "a", Fields: [8]string{"t", "h"}})
			return err
		}, []string{"CreateChannel"}},
		{"create second channel", func() (err error) {
			ch2, err = l.CreateChannel(ctx, auth.ChannelSpec{Name: "b"})
			return err
		}, []string{"CreateChannel"}},
		{"update channel", func() error {
			_, err := l.UpdateChannel(ctx, ch.ID, auth.ChannelUpdate{Name: &name})
			return err
		}, []string{"FindChannel", "UpdateChannel"}},
		{"regenerate key", func() error { _, err := l.RegenerateKey(ctx, ch.ID, true); return err },
			[]string{"FindChannel", "UpdateChannel"}},
		// A clear checks nothing: it is the store's own transaction.
		{"clear channel", func() error { return l.ClearChannel(ctx, ch.ID) }, []string{"ClearChannel (outside)"}},
		{"create device", func() (err error) {
			cr, err = l.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Grants: []auth.Grant{pubsub(ch.ID)}})
			return err
		}, []string{"ListDevices", "CreateDevice"}},
		{"update device", func() error {
			_, err := l.UpdateDevice(ctx, cr.Device.ID, auth.DeviceUpdate{Name: &name})
			return err
		}, []string{"FindDevice", "UpdateDevice"}},
		{"authorize device", func() error {
			_, err := l.AuthorizeDevice(ctx, cr.Device.ID, []auth.Grant{sub(ch2.ID)})
			return err
		}, []string{"FindDevice", "UpdateDevice"}},
		{"deauthorize device", func() error {
			_, err := l.DeauthorizeDevice(ctx, cr.Device.ID, ch2.ID)
			return err
		}, []string{"FindDevice", "UpdateDevice"}},
		{"reset password", func() error { _, err := l.ResetPassword(ctx, cr.Device.ID); return err },
			[]string{"FindDevice", "UpdateDevice"}},
		{"bind", func() (err error) { b, err = l.Bind(ctx, txBinding(ch.ID)); return err },
			[]string{"FindChannel", "Bindings", "CreateBinding"}},
		{"unbind", func() error { return l.Unbind(ctx, b.ID) }, []string{"DeleteBinding"}},
		{"allow device rules", func() error {
			_, err := l.AllowRules(ctx, auth.DeviceRules(cr.Device.ID), []auth.Rule{{Access: auth.AccessRead, Pattern: "x/#"}})
			return err
		}, []string{"FindDevice", "SetRules"}},
		{"allow anonymous rules", func() error {
			_, err := l.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeAnonymous}, []auth.Rule{{Access: auth.AccessRead, Pattern: "y/#"}})
			return err
		}, []string{"SharedRules", "SetRules"}},
		{"disallow rules", func() error {
			_, err := l.DisallowRules(ctx, auth.RuleTarget{Scope: auth.ScopeAnonymous}, []string{"y/#"})
			return err
		}, []string{"SharedRules", "SetRules"}},
		{"import ACL", func() error {
			_, err := l.ImportACL(ctx, &auth.ACL{Everyone: []auth.Rule{{Access: auth.AccessRead, Pattern: "z/#"}}}, admin.ACLImportOptions{})
			return err
		}, []string{"ListDevices", "SharedRules", "SetRules"}},
		{"delete device", func() error { return l.DeleteDevice(ctx, cr.Device.ID) }, []string{"DeleteDevice"}},
		{"delete channel", func() error { return l.DeleteChannel(ctx, ch2.ID) }, []string{"DeleteChannel"}},
	}
	for _, o := range ops {
		before := l.tx.Calls()
		if err := o.op(); err != nil {
			t.Fatalf("%s: %v", o.name, err)
		}
		want := 1
		if o.name == "clear channel" {
			want = 0 // the store's own transaction, see above
		}
		if n := l.tx.Calls() - before; n != want {
			t.Errorf("%s ran in %d transactions, want %d", o.name, n, want)
		}
		if got := l.store.take(); !slices.Equal(got, o.want) {
			t.Errorf("%s made store calls %v, want %v", o.name, got, o.want)
		}
	}
	// Reads take no transaction.
	before := l.tx.Calls()
	if _, err := l.ListChannels(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Bindings(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	if n := l.tx.Calls() - before; n != 0 {
		t.Errorf("reads ran %d transactions", n)
	}
}

// A limit refusal or a bad change is fn's error: Atomically returns it
// and nothing outside the store changes.
func TestLocalLimitRefusedInTransaction(t *testing.T) {
	ctx := t.Context()
	l := newTxLocal(t, auth.Limits{MaxDevices: 1})
	if _, err := l.CreateDevice(ctx, auth.DeviceSpec{Name: "one"}); err != nil {
		t.Fatal(err)
	}
	_, err := l.CreateDevice(ctx, auth.DeviceSpec{Name: "two"})
	wantCode(t, err, channels.ELIMIT)
	if got := l.store.take(); !slices.Equal(got, []string{"ListDevices", "CreateDevice", "ListDevices"}) {
		t.Fatalf("store calls %v", got)
	}
	if l.tx.Calls() != 2 {
		t.Fatalf("%d transactions, want 2", l.tx.Calls())
	}
}

// When the commit fails after the change's store calls succeeded, the
// change reports the failure and memory stays as it was: the registry,
// the bindings watcher and the revocations follow only committed
// changes. (The fake cannot roll the database back; a real store does.)
func TestLocalCommitFailureLeavesMemoryAlone(t *testing.T) {
	ctx := t.Context()
	l := newTxLocal(t, auth.Limits{})
	ch, err := l.CreateChannel(ctx, auth.ChannelSpec{Name: "a", Fields: [8]string{"t", "h"}})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := l.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Grants: []auth.Grant{pub(ch.ID)}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Bind(ctx, txBinding(ch.ID))
	if err != nil {
		t.Fatal(err)
	}
	watched := len(l.binds)
	lost := fmt.Errorf("commit: %w", channels.ErrCommitUnknown)
	l.tx.FailCommits(lost)
	fails := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, channels.ErrCommitUnknown) {
			t.Fatalf("%s: %v, want the commit's failure", what, err)
		}
	}
	c2, err := l.CreateChannel(ctx, auth.ChannelSpec{Name: "b"})
	fails("create channel", err)
	if c2 != nil {
		t.Fatalf("create channel returned %+v with its error", c2)
	}
	if _, ok := l.Registry.Channel(ch.ID + 1); ok {
		t.Fatal("an uncommitted channel is in the registry")
	}
	name := "renamed"
	_, err = l.UpdateChannel(ctx, ch.ID, auth.ChannelUpdate{Name: &name})
	fails("update channel", err)
	if c, _ := l.Registry.Channel(ch.ID); c.Name != "a" {
		t.Fatalf("registry has the uncommitted name %q", c.Name)
	}
	_, err = l.ResetPassword(ctx, cr.Device.ID)
	fails("reset password", err)
	fails("delete device", l.DeleteDevice(ctx, cr.Device.ID))
	l.revokes.want(t)
	mustLogin(t, &testLocal{Local: l.Local}, cr)
	fails("unbind", l.Unbind(ctx, b.ID))
	_, err = l.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeAnonymous}, []auth.Rule{{Access: auth.AccessRead, Pattern: "y/#"}})
	fails("allow rules", err)
	if r := l.Registry.AnonymousRules(); len(r) != 0 {
		t.Fatalf("registry has uncommitted anonymous rules %v", r)
	}
	_, err = l.ImportACL(ctx, &auth.ACL{Anonymous: []auth.Rule{{Access: auth.AccessRead, Pattern: "z/#"}}}, admin.ACLImportOptions{})
	fails("import ACL", err)
	if r := l.Registry.AnonymousRules(); len(r) != 0 {
		t.Fatalf("registry has uncommitted anonymous rules %v", r)
	}
	fails("delete channel", l.DeleteChannel(ctx, ch.ID))
	if _, ok := l.Registry.Channel(ch.ID); !ok {
		t.Fatal("registry dropped a channel whose deletion did not commit")
	}
	if len(l.binds) != watched {
		t.Fatalf("the bindings watcher was told of an uncommitted change: %v", l.binds[watched:])
	}
}

// txBinding binds two JSON paths of free topic z/a to fields 1 and 2.
func txBinding(ch uint64) channels.Binding {
	return channels.Binding{ChannelID: ch, Topic: "z/a", Fields: [8]string{"$.t", "$.h"}}
}

func (s *txStore) Account(ctx context.Context) (*auth.Account, error) {
	s.note(ctx, "Account")
	return s.DB.Account(ctx)
}
func (s *txStore) PutAccount(ctx context.Context, a *auth.Account) error {
	s.note(ctx, "PutAccount")
	return s.DB.PutAccount(ctx, a)
}

// Two servers sharing a store and its transactions: each keeps a copy of
// the owner account, but a change reads the account in the transaction,
// so one server's change does not overwrite another's; the first use
// creates the user API key once; AccountChanged makes a server read the
// other's change.
func TestLocalAccountAcrossServers(t *testing.T) {
	ctx := t.Context()
	tl := newTestLocal(t, auth.Limits{})
	st := &txStore{DB: tl.db}
	tx := new(storetest.Transactor)
	server := func() *admin.Local {
		l, err := admin.NewLocal(ctx, tl.db, auth.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		l.Channels, l.Devices, l.Rules, l.BindingStore, l.Accounts, l.Tx = st, st, st, st, st, tx
		return l
	}
	a, b := server(), server()
	var wg sync.WaitGroup
	infos := make([]*auth.AccountInfo, 2)
	for i, l := range []*admin.Local{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := l.Account(ctx)
			if err != nil {
				t.Error(err)
			}
			infos[i] = info
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if infos[0].UserAPIKey == "" || infos[0].UserAPIKey != infos[1].UserAPIKey {
		t.Fatalf("servers starting together hold user keys %q and %q", infos[0].UserAPIKey, infos[1].UserAPIKey)
	}
	for _, c := range st.take() {
		if c != "Account" && c != "PutAccount" {
			t.Fatalf("store call %s", c)
		}
	}

	ra, err := a.RegenerateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetPassword(ctx, "a long enough password"); err != nil {
		t.Fatal(err)
	}
	if got := st.take(); !slices.Equal(got, []string{"Account", "PutAccount", "Account", "PutAccount"}) {
		t.Fatalf("store calls %v, want the account read and written in each transaction", got)
	}
	stored, err := tl.db.Account(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored.UserAPIKey != ra.UserAPIKey || stored.PasswordHash == "" {
		t.Fatalf("stored account has key %q (want %q, the other server's) and password set %v",
			stored.UserAPIKey, ra.UserAPIKey, stored.PasswordHash != "")
	}
	// b learnt the new key with its own change; a reads the password
	// once told the account changed.
	if err := b.VerifyUserKey(ctx, ra.UserAPIKey); err != nil {
		t.Fatalf("b: %v", err)
	}
	if err := a.VerifyPassword(ctx, "a long enough password"); err == nil {
		t.Fatal("a checked a password it was not told of: it read the store on every check")
	}
	a.AccountChanged()
	if err := a.VerifyPassword(ctx, "a long enough password"); err != nil {
		t.Fatalf("a after AccountChanged: %v", err)
	}
}
