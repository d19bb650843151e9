package storage_test

import (
	"context"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

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

// A device's description survives a reopen and an update; records written
// before descriptions existed decode without one and store none.
func TestDevice_Description(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	plain := MustCreateDevice(t, db, "plain")
	d := &auth.Device{Name: "esp32", Description: "garden\nsensor", ClientID: "u", Username: "u", PasswordHash: "h"}
	if err := db.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	db = MustReopen(t, db)
	got, err := db.FindDevice(ctx, d.ID)
	if err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("after reopen %+v, %v; want %+v", got, err, d)
	}
	got.Description = ""
	if err := db.UpdateDevice(ctx, got); err != nil {
		t.Fatal(err)
	}
	db = MustReopen(t, db)
	if again, err := db.FindDevice(ctx, d.ID); err != nil || again.Description != "" {
		t.Fatalf("after clearing %+v, %v", again, err)
	}
	db.Close()
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		for _, id := range []uint64{plain.ID, d.ID} {
			if v := tx.Bucket([]byte("devices")).Get(binary.BigEndian.AppendUint64(nil, id)); strings.Contains(string(v), "description") {
				t.Errorf("record of a device without description mentions it: %s", v)
			}
		}
		return nil
	})
}
