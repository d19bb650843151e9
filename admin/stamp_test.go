package admin_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/storage"
)

// The store stamps CreatedAt and UpdatedAt, once, with its own clock; what
// the Local returns is what was stored.
func TestLocal_StoreStampsTimes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	db, err := storage.Open(filepath.Join(t.TempDir(), "db"), storage.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc, err := admin.NewLocal(ctx, db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	created := now
	c, err := svc.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	if err != nil || !c.CreatedAt.Equal(created) || !c.UpdatedAt.Equal(created) {
		t.Fatalf("create: %+v, %v", c, err)
	}
	cr, err := svc.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Grants: []auth.Grant{{ChannelID: c.ID, Publish: true}}})
	if err != nil || !cr.Device.CreatedAt.Equal(created) {
		t.Fatalf("create device: %+v, %v", cr, err)
	}
	now = now.Add(time.Hour)
	name := "renamed"
	if c, err = svc.UpdateChannel(ctx, c.ID, auth.ChannelUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}
	d, err := svc.AuthorizeDevice(ctx, cr.Device.ID, []auth.Grant{{ChannelID: c.ID, Subscribe: true}})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.FindChannel(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string][2]time.Time{
		"returned channel": {c.CreatedAt, c.UpdatedAt},
		"stored channel":   {stored.CreatedAt, stored.UpdatedAt},
		"returned device":  {d.CreatedAt, d.UpdatedAt},
	} {
		if !got[0].Equal(created) || !got[1].Equal(now) {
			t.Errorf("%s: created %v, updated %v; want %v, %v", what, got[0], got[1], created, now)
		}
	}
}
