package storage_test

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
	bolt "go.etcd.io/bbolt"
)

func newBinding(ch uint64, topic string) *channels.Binding {
	return &channels.Binding{ChannelID: ch, Topic: topic, Fields: [8]string{"$.temperature", "$.humidity"}, Status: "$.battery", CreatedAt: "$.time"}
}

func TestBindings_CreateListDeleteReopen(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	if list, err := db.Bindings(ctx); err != nil || len(list) != 0 {
		t.Fatalf("new database: %v, %v", list, err)
	}
	c1, c2 := MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b")
	b1, b2, b3 := newBinding(c1.ID, "zigbee2mqtt/a"), newBinding(c2.ID, "tele/+/SENSOR"), newBinding(c1.ID, "x/#")
	for _, b := range []*channels.Binding{b1, b2, b3} {
		if err := db.CreateBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if b1.ID != 1 || b2.ID != 2 || b3.ID != 3 || b1.Created.IsZero() {
		t.Fatalf("IDs %d %d %d, created %v", b1.ID, b2.ID, b3.ID, b1.Created)
	}
	db = MustReopen(t, db)
	list, err := db.Bindings(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("after reopen: %v, %v", list, err)
	}
	if list[0] != *b1 || list[1] != *b2 || list[2] != *b3 {
		t.Fatalf("after reopen: %+v; want %+v %+v %+v", list, b1, b2, b3)
	}
	if err := db.DeleteBinding(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteBinding(ctx, 2); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Fatalf("second delete: %v", err)
	}
	// IDs are never reused.
	b4 := newBinding(c2.ID, "y")
	if err := db.CreateBinding(ctx, b4); err != nil || b4.ID != 4 {
		t.Fatalf("after a delete: ID %d, %v", b4.ID, err)
	}
	// Deleting a channel deletes its bindings, and only its.
	if err := db.DeleteChannel(ctx, c1.ID); err != nil {
		t.Fatal(err)
	}
	list, _ = db.Bindings(ctx)
	if len(list) != 1 || list[0].ID != 4 {
		t.Fatalf("after deleting channel %d: %+v", c1.ID, list)
	}
	if rep, err := db.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

// A file without the bindings bucket (every file older feedmq versions
// wrote) reads as no bindings, read-only too, and checks clean.
func TestBindings_FileWithoutBucket(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	MustCreateChannel(t, db, "c")
	db.Close()
	ro, err := storage.Open(db.Path(), storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if list, err := ro.Bindings(ctx); err != nil || len(list) != 0 {
		t.Fatalf("%v, %v", list, err)
	}
	if rep, err := ro.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

func TestBindings_Check(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	if err := db.CreateBinding(ctx, newBinding(c.ID, "a")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	key := func(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("bindings"))
		for _, kv := range []struct {
			k []byte
			v string
		}{
			{key(2), `{"id":2,"channel_id":99,"topic":"a","fields":["$.x","","","","","","",""]}`},
			{key(3), `{"id":4,"channel_id":1,"topic":"a","fields":["$.x","","","","","","",""]}`},
			{key(5), `{"id":5,"channel_id":1,"topic":"channels/1/publish","fields":["$.x","","","","","","",""]}`},
			{key(6), `not json`},
			{[]byte("x"), `{}`},
		} {
			if err := b.Put(kv.k, []byte(kv.v)); err != nil {
				return err
			}
		}
		return nil
	})
	db = MustOpenPath(t, db.Path())
	rep, err := db.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, want := range []string{
		"binding 2: channel 99 does not exist",
		"binding 3: record has ID 4",
		"binding 5: topic",
		"binding 6: record does not decode",
		"bindings: key 78 is not an 8-byte ID",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("check misses %q in:\n%s", want, all)
		}
	}
	if len(rep.Problems) != 5 {
		t.Errorf("%d problems:\n%s", len(rep.Problems), all)
	}
}
