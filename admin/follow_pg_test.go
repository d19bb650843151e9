package admin_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage/postgres"
)

func openPG(t *testing.T, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// pgWait polls cond for up to 5 s.
func pgWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Two servers on one PostgreSQL database: every change one makes reaches
// the other's memory through the store's notifications alone (the poll
// is off), and the notices of a server's own changes do not revoke again.
func TestFollowPostgresNotifications(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	other, err := admin.NewLocal(ctx, openPG(t, url), auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	other.Revoke = func(uint64) {}
	db := openPG(t, url)
	this, err := admin.NewLocal(ctx, db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	rv, rs, bl := &revokes{}, &resets{}, &bindLog{}
	this.Revoke, this.ChannelReset = rv.revoke, rs.reset
	if err := this.WatchBindings(ctx, bl.watch); err != nil {
		t.Fatal(err)
	}
	stop, err := this.Follow(ctx, db, admin.FollowOptions{Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	reg := this.Registry
	revoked := func() []uint64 { rv.mu.Lock(); defer rv.mu.Unlock(); return slices.Clone(rv.ids) }
	// Notices come in commit order: once a marker made after a change is
	// applied, so is the change.
	markers := 0
	settle := func() {
		t.Helper()
		markers++
		c, err := other.CreateChannel(ctx, auth.ChannelSpec{Name: fmt.Sprintf("marker%d", markers)})
		if err != nil {
			t.Fatal(err)
		}
		pgWait(t, "a marker channel", func() bool { _, ok := reg.Channel(c.ID); return ok })
	}

	ch, err := other.CreateChannel(ctx, auth.ChannelSpec{Name: "c", Fields: [8]string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	pgWait(t, "the channel", func() bool { _, ok := reg.ChannelByWriteKey(ch.WriteKey); return ok })
	cr, err := other.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Grants: []auth.Grant{{ChannelID: ch.ID, Publish: true}}})
	if err != nil {
		t.Fatal(err)
	}
	d := cr.Device
	pgWait(t, "the device", func() bool { return reg.CanPublish(d.ID, ch.ID, "") == nil })

	cr2, err := other.ResetPassword(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	pgWait(t, "the revocation", func() bool { return slices.Equal(revoked(), []uint64{d.ID}) })
	if _, err := reg.Authenticate(d.ClientID, d.Username, cr2.Password); err != nil {
		t.Fatalf("new password refused: %v", err)
	}

	rules := []auth.Rule{{Access: auth.AccessRead, Pattern: "a/#"}}
	if _, err := other.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, rules); err != nil {
		t.Fatal(err)
	}
	pgWait(t, "the rules", func() bool { return slices.Equal(reg.CommonRules(), rules) })
	b, err := other.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "z/+", Fields: [8]string{"$.t"}})
	if err != nil {
		t.Fatal(err)
	}
	pgWait(t, "the binding", func() bool { return slices.Equal(bl.ids(), []uint64{b.ID}) })
	if err := other.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	pgWait(t, "the clear", func() bool { return slices.Equal(rs.get(), []uint64{ch.ID}) })
	info, err := other.RegenerateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pgWait(t, "the user key", func() bool { return this.VerifyUserKey(ctx, info.UserAPIKey) == nil })

	// Deleting the channel takes the device's grant and the binding.
	if err := other.DeleteChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	pgWait(t, "the deletion", func() bool {
		_, has := reg.Channel(ch.ID)
		return !has && len(bl.ids()) == 0 && reg.CanPublish(d.ID, ch.ID, "") != nil
	})

	// This server's own reset and deletion: revoked once each, by the
	// change itself, not again by its notice.
	if _, err := this.ResetPassword(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	settle()
	if err := this.DeleteDevice(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	settle()
	if got := revoked(); !slices.Equal(got, []uint64{d.ID, d.ID, d.ID}) {
		t.Fatalf("revocations %v; want the remote reset, the own reset and the own deletion", got)
	}
	// Everything came by notification: the version is confirmed as is.
	before := this.Reloads()
	if err := this.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if this.Reloads() != before {
		t.Fatal("Confirm reloaded although every notification was applied")
	}
}
