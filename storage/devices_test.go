package storage_test

import (
	"context"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/feedmq/feedmq/auth"
)

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
