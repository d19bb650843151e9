package admin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/storetest"
)

// twoServers is two Locals over one store, as two servers sharing a
// database: other makes changes, this learns of them only by Apply.
type twoServers struct {
	other, this *admin.Local
	revokes     *revokes // this's
	resets      *resets  // this's
	binds       *bindLog // this's watcher
}

type resets struct {
	mu  sync.Mutex
	ids []uint64
}

func (r *resets) reset(id uint64) { r.mu.Lock(); r.ids = append(r.ids, id); r.mu.Unlock() }
func (r *resets) get() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

type bindLog struct {
	mu   sync.Mutex
	last []channels.Binding
	n    int
}

func (b *bindLog) watch(bs []channels.Binding) { b.mu.Lock(); b.last, b.n = bs, b.n+1; b.mu.Unlock() }
func (b *bindLog) ids() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []uint64
	for _, x := range b.last {
		ids = append(ids, x.ID)
	}
	return ids
}

func newTwoServers(t *testing.T) *twoServers {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	ctx := context.Background()
	other, err := admin.NewLocal(ctx, db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	this, err := admin.NewLocal(ctx, db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	s := &twoServers{other: other, this: this, revokes: &revokes{}, resets: &resets{}, binds: &bindLog{}}
	this.Revoke, this.ChannelReset = s.revokes.revoke, s.resets.reset
	other.Revoke = func(uint64) {}
	if err := this.WatchBindings(ctx, s.binds.watch); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *twoServers) apply(t *testing.T, c channels.Change) {
	t.Helper()
	if err := s.this.Apply(context.Background(), c); err != nil {
		t.Fatalf("Apply(%+v): %v", c, err)
	}
}

// Every kind of change another server makes reaches this server's memory
// through Apply, and applying it again changes nothing.
func TestApplyEveryKind(t *testing.T) {
	ctx := context.Background()
	s := newTwoServers(t)
	reg := s.this.Registry
	twice := func(c channels.Change) { s.apply(t, c); s.apply(t, c) }

	// Channel created, then its write key regenerated.
	ch, err := s.other.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Channel(ch.ID); ok {
		t.Fatal("the registry knew of a channel before Apply")
	}
	twice(channels.Change{Kind: channels.ChangeChannel, ID: ch.ID})
	if got, ok := reg.ChannelByWriteKey(ch.WriteKey); !ok || got.Name != "c" {
		t.Fatalf("channel not applied: %v %v", got, ok)
	}
	ch2, err := s.other.RegenerateKey(ctx, ch.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	twice(channels.Change{Kind: channels.ChangeChannel, ID: ch.ID})
	if _, ok := reg.ChannelByWriteKey(ch.WriteKey); ok {
		t.Fatal("the old write key still works after Apply")
	}
	if _, ok := reg.ChannelByWriteKey(ch2.WriteKey); !ok {
		t.Fatal("the new write key does not work after Apply")
	}

	// Device created with a grant: it can authenticate here.
	cr, err := s.other.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Grants: []auth.Grant{{ChannelID: ch.ID, Publish: true}}})
	if err != nil {
		t.Fatal(err)
	}
	dev := cr.Device
	twice(channels.Change{Kind: channels.ChangeDevice, ID: dev.ID})
	if id, err := reg.Authenticate(dev.ClientID, dev.Username, cr.Password); err != nil || id != dev.ID {
		t.Fatalf("Authenticate after Apply = %d, %v", id, err)
	}
	if err := reg.CanPublish(dev.ID, ch.ID, ""); err != nil {
		t.Fatalf("grant not applied: %v", err)
	}
	s.revokes.want(t) // a new device revokes nothing

	// Grant removed: no revoke (credentials unchanged), right gone.
	if _, err := s.other.DeauthorizeDevice(ctx, dev.ID, ch.ID); err != nil {
		t.Fatal(err)
	}
	twice(channels.Change{Kind: channels.ChangeDevice, ID: dev.ID})
	if err := reg.CanPublish(dev.ID, ch.ID, ""); err == nil {
		t.Fatal("removed grant still allows publishing")
	}
	s.revokes.want(t)

	// Password reset elsewhere: the old password fails, connections are
	// closed once however often the change is applied.
	cr2, err := s.other.ResetPassword(ctx, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	twice(channels.Change{Kind: channels.ChangeDevice, ID: dev.ID, Revoke: true})
	if _, err := reg.Authenticate(dev.ClientID, dev.Username, cr.Password); err == nil {
		t.Fatal("the old password works after Apply")
	}
	if _, err := reg.Authenticate(dev.ClientID, dev.Username, cr2.Password); err != nil {
		t.Fatalf("the new password fails after Apply: %v", err)
	}
	s.revokes.want(t, dev.ID)

	// Shared rules.
	rules := []auth.Rule{{Access: auth.AccessRead, Pattern: "sensors/#"}}
	if _, err := s.other.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeAnonymous}, rules); err != nil {
		t.Fatal(err)
	}
	if _, err := s.other.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, rules); err != nil {
		t.Fatal(err)
	}
	twice(channels.Change{Kind: channels.ChangeRules})
	if !slices.Equal(reg.AnonymousRules(), rules) || !slices.Equal(reg.CommonRules(), rules) {
		t.Fatalf("rules after Apply: %v, %v", reg.AnonymousRules(), reg.CommonRules())
	}

	// Bindings reach the watcher.
	if _, err := s.other.UpdateChannel(ctx, ch.ID, auth.ChannelUpdate{Fields: map[int]string{1: "t"}}); err != nil {
		t.Fatal(err)
	}
	b, err := s.other.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "zigbee/+", Fields: [8]string{"$.t"}})
	if err != nil {
		t.Fatal(err)
	}
	twice(channels.Change{Kind: channels.ChangeBindings})
	if got := s.binds.ids(); !slices.Equal(got, []uint64{b.ID}) {
		t.Fatalf("watcher has bindings %v, want [%d]", got, b.ID)
	}

	// Account: the user API key regenerated elsewhere is the one that
	// works here.
	if _, err := s.this.Account(ctx); err != nil { // loads the copy
		t.Fatal(err)
	}
	info, err := s.other.RegenerateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	twice(channels.Change{Kind: channels.ChangeAccount})
	if err := s.this.VerifyUserKey(ctx, info.UserAPIKey); err != nil {
		t.Fatalf("new user key refused after Apply: %v", err)
	}

	// Cleared: the channel's sequence restarts.
	if err := s.other.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	s.apply(t, channels.Change{Kind: channels.ChangeCleared, ID: ch.ID})
	if got := s.resets.get(); !slices.Equal(got, []uint64{ch.ID}) {
		t.Fatalf("resets after a clear = %v", got)
	}

	// Channel deleted: gone from the registry with its bindings, and its
	// sequence restarted.
	if err := s.other.DeleteChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	s.apply(t, channels.Change{Kind: channels.ChangeChannel, ID: ch.ID, Deleted: true})
	if _, ok := reg.Channel(ch.ID); ok {
		t.Fatal("deleted channel still in the registry")
	}
	if got := s.binds.ids(); len(got) != 0 {
		t.Fatalf("watcher still has bindings %v of a deleted channel", got)
	}
	if got := s.resets.get(); !slices.Equal(got, []uint64{ch.ID, ch.ID}) {
		t.Fatalf("resets after a deletion = %v", got)
	}

	// Device deleted: forgotten and revoked, once.
	if err := s.other.DeleteDevice(ctx, dev.ID); err != nil {
		t.Fatal(err)
	}
	twice(channels.Change{Kind: channels.ChangeDevice, ID: dev.ID, Deleted: true, Revoke: true})
	if reg.HasDevice(dev.ID) {
		t.Fatal("deleted device still in the registry")
	}
	s.revokes.want(t, dev.ID, dev.ID)
}

// A change this server made itself comes back as a notice: applying it
// does not close the connections made with the new credentials.
func TestApplyOwnChangeHarmless(t *testing.T) {
	ctx := context.Background()
	s := newTwoServers(t)
	cr, err := s.this.CreateDevice(ctx, auth.DeviceSpec{Name: "d"})
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, channels.Change{Kind: channels.ChangeDevice, ID: cr.Device.ID})
	if _, err := s.this.ResetPassword(ctx, cr.Device.ID); err != nil {
		t.Fatal(err)
	}
	s.revokes.want(t, cr.Device.ID) // by the reset itself
	s.apply(t, channels.Change{Kind: channels.ChangeDevice, ID: cr.Device.ID, Revoke: true})
	s.apply(t, channels.Change{Kind: channels.ChangeResync})
	s.revokes.want(t, cr.Device.ID)
	if err := s.this.DeleteDevice(ctx, cr.Device.ID); err != nil {
		t.Fatal(err)
	}
	s.apply(t, channels.Change{Kind: channels.ChangeDevice, ID: cr.Device.ID, Deleted: true, Revoke: true})
	s.revokes.want(t, cr.Device.ID, cr.Device.ID) // the delete's own, not a third
}

// A resync reloads everything: what was created, changed and deleted
// while this server heard nothing, revoking exactly the devices whose
// credentials changed or that are gone.
func TestApplyResync(t *testing.T) {
	ctx := context.Background()
	s := newTwoServers(t)
	reg := s.this.Registry
	keepCh, err := s.this.CreateChannel(ctx, auth.ChannelSpec{Name: "keep"})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.this.CreateChannel(ctx, auth.ChannelSpec{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	keep, err := s.this.CreateDevice(ctx, auth.DeviceSpec{Name: "keep"})
	if err != nil {
		t.Fatal(err)
	}
	reset, err := s.this.CreateDevice(ctx, auth.DeviceSpec{Name: "reset"})
	if err != nil {
		t.Fatal(err)
	}
	del, err := s.this.CreateDevice(ctx, auth.DeviceSpec{Name: "del"})
	if err != nil {
		t.Fatal(err)
	}
	// Meanwhile, elsewhere:
	if err := s.other.DeleteChannel(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	added, err := s.other.CreateChannel(ctx, auth.ChannelSpec{Name: "added"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.other.ResetPassword(ctx, reset.Device.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.other.DeleteDevice(ctx, del.Device.ID); err != nil {
		t.Fatal(err)
	}
	newDev, err := s.other.CreateDevice(ctx, auth.DeviceSpec{Name: "new"})
	if err != nil {
		t.Fatal(err)
	}
	rules := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "x/#"}}
	if _, err := s.other.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, rules); err != nil {
		t.Fatal(err)
	}

	// This server delivered entries of keepCh up to 7, but the store's
	// feed was cleared meanwhile (its last ID is 0): reset as well.
	s.this.Delivered = func() map[uint64]uint64 { return map[uint64]uint64{keepCh.ID: 7, added.ID: 0} }
	s.apply(t, channels.Change{Kind: channels.ChangeResync})
	if _, ok := reg.Channel(gone.ID); ok {
		t.Error("channel deleted elsewhere survived a resync")
	}
	if _, ok := reg.Channel(added.ID); !ok {
		t.Error("channel created elsewhere missing after a resync")
	}
	if !reg.HasDevice(keep.Device.ID) || !reg.HasDevice(reset.Device.ID) || !reg.HasDevice(newDev.Device.ID) || reg.HasDevice(del.Device.ID) {
		t.Errorf("devices after a resync: %v", reg.DeviceIDs())
	}
	if _, err := reg.Authenticate(reset.Device.ClientID, reset.Device.Username, reset.Password); err == nil {
		t.Error("a password reset elsewhere still works after a resync")
	}
	if !slices.Equal(reg.CommonRules(), rules) {
		t.Errorf("rules after a resync: %v", reg.CommonRules())
	}
	ids := s.revokes.ids
	slices.Sort(ids)
	if want := []uint64{reset.Device.ID, del.Device.ID}; !slices.Equal(ids, want) {
		t.Errorf("revoked %v, want %v", ids, want)
	}
	if got := s.resets.get(); !slices.Equal(got, []uint64{keepCh.ID, gone.ID}) {
		t.Errorf("resets = %v, want [%d %d]", got, keepCh.ID, gone.ID)
	}
	// Again: nothing more happens.
	s.this.Delivered = nil
	s.apply(t, channels.Change{Kind: channels.ChangeResync})
	if got := len(s.revokes.ids); got != 2 {
		t.Errorf("a second resync revoked again: %v", s.revokes.ids)
	}
}

// Follow applies the notices as they come, and polls the version: a
// change whose notice was lost is picked up by the poll; a lost
// connection is followed by a reload.
func TestFollowNoticesAndPoll(t *testing.T) {
	ctx := context.Background()
	s := newTwoServers(t)
	var n storetest.Notifier
	stop, err := s.this.Follow(ctx, &n, admin.FollowOptions{Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A notice.
	c1, err := s.other.CreateChannel(ctx, auth.ChannelSpec{Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	n.Commit(channels.Change{Kind: channels.ChangeChannel, ID: c1.ID})
	waitFor("the notified channel", func() bool { _, ok := s.this.Registry.Channel(c1.ID); return ok })

	// No notice (the version moved while this server was not told): the
	// poll finds the version ahead and reloads.
	n.SetDown(true, nil)
	c2, err := s.other.CreateChannel(ctx, auth.ChannelSpec{Name: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	n.Commit(channels.Change{Kind: channels.ChangeChannel, ID: c2.ID})
	if err := s.this.Confirm(ctx); err == nil {
		t.Fatal("Confirm succeeded while the store was unreachable")
	}
	n.SetDown(false, nil)
	waitFor("the unnotified channel", func() bool { _, ok := s.this.Registry.Channel(c2.ID); return ok })
	if err := s.this.Confirm(ctx); err != nil {
		t.Fatalf("Confirm once current: %v", err)
	}

	// Current: Confirm reloads nothing.
	before := s.this.Reloads()
	for i := 0; i < 3; i++ {
		if err := s.this.Confirm(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.this.Reloads(); got != before {
		t.Fatalf("Confirm of a current version reloaded (%d -> %d)", before, got)
	}
}

// This server's clear restarts the channel's sequence at once; its notice,
// coming back later, does not restart it again (entries of the new feed
// may have been delivered meanwhile), while another server's clear does.
func TestApplyOwnClearResetsOnce(t *testing.T) {
	ctx := context.Background()
	s := newTwoServers(t)
	var n storetest.Notifier
	stop, err := s.this.Follow(ctx, &n, admin.FollowOptions{Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ch, err := s.this.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	markers := 0
	settle := func() { // notices are applied in order: wait for a later one
		t.Helper()
		markers++
		m, err := s.other.CreateChannel(ctx, auth.ChannelSpec{Name: fmt.Sprintf("m%d", markers)})
		if err != nil {
			t.Fatal(err)
		}
		n.Commit(channels.Change{Kind: channels.ChangeChannel, ID: m.ID})
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, ok := s.this.Registry.Channel(m.ID); ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("marker not applied")
			}
		}
	}
	if err := s.this.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	if got := s.resets.get(); !slices.Equal(got, []uint64{ch.ID}) {
		t.Fatalf("resets right after the own clear = %v", got)
	}
	n.Commit(channels.Change{Kind: channels.ChangeCleared, ID: ch.ID}) // its notice
	settle()
	if got := s.resets.get(); !slices.Equal(got, []uint64{ch.ID}) {
		t.Fatalf("the own clear's notice reset again: %v", got)
	}
	if err := s.other.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	n.Commit(channels.Change{Kind: channels.ChangeCleared, ID: ch.ID})
	settle()
	if got := s.resets.get(); !slices.Equal(got, []uint64{ch.ID, ch.ID}) {
		t.Fatalf("another server's clear: resets = %v", got)
	}
	// An own clear whose notice was lost: the reload that follows forgets
	// it, so the next remote clear is not taken for it.
	if err := s.this.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	n.Disconnect() // reconnects and reloads
	for deadline := time.Now().Add(5 * time.Second); s.this.Reloads() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no reload after the lost connection")
		}
	}
	n.Commit(channels.Change{Kind: channels.ChangeCleared, ID: ch.ID})
	settle()
	if got := s.resets.get(); !slices.Equal(got, []uint64{ch.ID, ch.ID, ch.ID, ch.ID}) {
		t.Fatalf("after a lost notice: resets = %v", got)
	}
}
