package storage_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

func TestDevice_CRUD(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")

	d := MustCreateDevice(t, db, "user1", auth.Grant{ChannelID: c.ID, Publish: true, Subscribe: true})
	if d.ID != 1 || !d.CreatedAt.Equal(now) {
		t.Fatalf("created device = %+v", d)
	}
	got, err := db.FindDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("FindDevice =\n%+v\nwant\n%+v", got, d)
	}

	got.Username, got.ClientID, got.PasswordHash = "user2", "user2", "newhash"
	got.Channels = nil
	if err := db.UpdateDevice(ctx, got); err != nil {
		t.Fatal(err)
	}
	if again, _ := db.FindDevice(ctx, d.ID); again.Username != "user2" || again.PasswordHash != "newhash" || len(again.Channels) != 0 {
		t.Fatalf("after update = %+v", again)
	}
	// The old username is free again, the new one is taken.
	MustCreateDevice(t, db, "user1")
	wantCode(t, db.CreateDevice(ctx, &auth.Device{Username: "user2"}), channels.ECONFLICT)

	list, err := db.ListDevices(ctx)
	if err != nil || len(list) != 2 || list[0].ID != 1 || list[1].ID != 2 {
		t.Fatalf("ListDevices = %v, %v", list, err)
	}

	if err := db.DeleteDevice(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	_, err = db.FindDevice(ctx, d.ID)
	wantCode(t, err, channels.ENOTFOUND)
	MustCreateDevice(t, db, "user2") // freed by the delete
}

func TestDevice_Errors(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	a := MustCreateDevice(t, db, "a")
	MustCreateDevice(t, db, "b")

	wantCode(t, db.CreateDevice(ctx, &auth.Device{}), channels.EINVALID)
	wantCode(t, db.CreateDevice(ctx, &auth.Device{Username: "a"}), channels.ECONFLICT)
	// A stale ID on a new device must not let it take that device's name.
	wantCode(t, db.CreateDevice(ctx, &auth.Device{ID: a.ID, Username: "a"}), channels.ECONFLICT)
	wantCode(t, db.CreateDevice(ctx, &auth.Device{Username: "c", Channels: []auth.Grant{{ChannelID: 7}}}), channels.ENOTFOUND)

	a.Username = "b"
	wantCode(t, db.UpdateDevice(ctx, a), channels.ECONFLICT)
	wantCode(t, db.UpdateDevice(ctx, &auth.Device{ID: 99, Username: "z"}), channels.ENOTFOUND)
	wantCode(t, db.DeleteDevice(ctx, 99), channels.ENOTFOUND)
	_, err := db.FindDevice(ctx, 99)
	wantCode(t, err, channels.ENOTFOUND)

	c := MustCreateChannel(t, db, "x")
	a.Username = "a"
	a.Channels = []auth.Grant{{ChannelID: c.ID, Publish: true}, {ChannelID: c.ID, Subscribe: true}}
	wantCode(t, db.UpdateDevice(ctx, a), channels.EINVALID)

	// Failed updates changed nothing.
	if got, _ := db.FindDevice(ctx, a.ID); got.Username != "a" || len(got.Channels) != 0 {
		t.Fatalf("device after failed updates = %+v", got)
	}
}
