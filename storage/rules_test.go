package storage_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

func TestRules_DeviceRecordKeepsRules(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	rules := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "home/#"}, {Access: auth.AccessDeny, Pattern: "home/secret"},
		{Access: auth.AccessRead, Pattern: "tele/%c/#"}, {Access: auth.AccessWrite, Pattern: "cmnd/x"}}
	d := &auth.Device{Name: "a", ClientID: "a", Username: "a", PasswordHash: "h", Rules: rules}
	if err := db.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	db = MustReopen(t, db)
	got, err := db.FindDevice(ctx, d.ID)
	if err != nil || !reflect.DeepEqual(got.Rules, rules) {
		t.Fatalf("after reopen: %+v, %v; want rules %v", got, err, rules)
	}
	got.Rules = nil
	if err := db.UpdateDevice(ctx, got); err != nil {
		t.Fatal(err)
	}
	if again, _ := db.FindDevice(ctx, d.ID); again.Rules != nil {
		t.Fatalf("rules after clearing: %v", again.Rules)
	}
}

// A device record written before rules existed loads without rules, and
// check finds nothing wrong with it.
func TestRules_OldDeviceRecord(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	MustCreateDevice(t, db, "old")
	db.Close()
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("devices")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 1},
			[]byte(`{"id":1,"name":"old","client_id":"old","username":"old","password_hash":"h","created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`))
	})
	db = MustOpenPath(t, db.Path())
	d, err := db.FindDevice(ctx, 1)
	if err != nil || d.Rules != nil || d.Name != "old" {
		t.Fatalf("old record: %+v, %v", d, err)
	}
	if rep, err := db.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

func TestRules_SetRules(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	if anon, every, err := db.SharedRules(ctx); err != nil || anon != nil || every != nil {
		t.Fatalf("new database: %v, %v, %v", anon, every, err)
	}
	a := MustCreateDevice(t, db, "a")
	b := MustCreateDevice(t, db, "b")
	anon := []auth.Rule{{Access: auth.AccessRead, Pattern: "public/#"}}
	every := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "tele/%c/#"}, {Access: auth.AccessDeny, Pattern: "x"}}
	ra := []auth.Rule{{Access: auth.AccessWrite, Pattern: "a/#"}}
	changed, err := db.SetRules(ctx, auth.RulesChange{Anonymous: &anon, Everyone: &every, Devices: map[uint64][]auth.Rule{a.ID: ra}})
	if err != nil || len(changed) != 1 || changed[0].ID != a.ID || !reflect.DeepEqual(changed[0].Rules, ra) {
		t.Fatalf("SetRules = %+v, %v", changed, err)
	}
	db = MustReopen(t, db)
	gotAnon, gotEvery, err := db.SharedRules(ctx)
	if err != nil || !reflect.DeepEqual(gotAnon, anon) || !reflect.DeepEqual(gotEvery, every) {
		t.Fatalf("after reopen: %v, %v, %v", gotAnon, gotEvery, err)
	}
	if d, _ := db.FindDevice(ctx, a.ID); !reflect.DeepEqual(d.Rules, ra) || d.PasswordHash != "hash-a" {
		t.Fatalf("device a: %+v", d)
	}
	// Only the lists given change.
	none := []auth.Rule{}
	if _, err := db.SetRules(ctx, auth.RulesChange{Anonymous: &none}); err != nil {
		t.Fatal(err)
	}
	if gotAnon, gotEvery, _ := db.SharedRules(ctx); gotAnon != nil || !reflect.DeepEqual(gotEvery, every) {
		t.Fatalf("after clearing anonymous: %v, %v", gotAnon, gotEvery)
	}
	// A missing device changes nothing at all.
	_, err = db.SetRules(ctx, auth.RulesChange{Everyone: &none, Devices: map[uint64][]auth.Rule{b.ID: ra, 99: ra}})
	if channels.ErrorCode(err) != channels.ENOTFOUND || !errors.Is(err, auth.ErrDeviceNotFound) {
		t.Fatalf("missing device: %v", err)
	}
	if _, gotEvery, _ := db.SharedRules(ctx); !reflect.DeepEqual(gotEvery, every) {
		t.Fatalf("a failed change wrote everyone's rules: %v", gotEvery)
	}
	if d, _ := db.FindDevice(ctx, b.ID); d.Rules != nil {
		t.Fatalf("a failed change wrote device b's rules: %v", d.Rules)
	}
	if rep, err := db.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
	// The rules travel with a backup.
	path := t.TempDir() + "/copy.db"
	if _, _, err := db.BackupFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	cp, err := storage.Open(path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if _, gotEvery, err := cp.SharedRules(ctx); err != nil || !reflect.DeepEqual(gotEvery, every) {
		t.Fatalf("copy: %v, %v", gotEvery, err)
	}
}

// A file written before the access bucket existed opens read-only with no
// rules, and gets the bucket at the next writing open.
func TestRules_FileWithoutBucket(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	db.Close()
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("access")) })
	ro, err := storage.Open(db.Path(), storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if anon, every, err := ro.SharedRules(ctx); err != nil || anon != nil || every != nil {
		t.Fatalf("read-only without the bucket: %v, %v, %v", anon, every, err)
	}
	if rep, err := ro.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
	ro.Close()
	db = MustOpenPath(t, db.Path())
	every := []auth.Rule{{Access: auth.AccessRead, Pattern: "a"}}
	if _, err := db.SetRules(ctx, auth.RulesChange{Everyone: &every}); err != nil {
		t.Fatal(err)
	}
}

func TestRules_Corrupt(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	MustCreateDevice(t, db, "a")
	every := []auth.Rule{{Access: auth.AccessRead, Pattern: "a"}}
	if _, err := db.SetRules(ctx, auth.RulesChange{Everyone: &every}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("devices")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 1},
			[]byte(`{"id":1,"name":"a","client_id":"a","username":"a","password_hash":"h","rules":[{"access":"all","pattern":"x"}]}`)); err != nil {
			return err
		}
		b := tx.Bucket([]byte("access"))
		if err := b.Put([]byte("rules"), []byte(`{"anonymous":[{"access":"read","pattern":"channels/#"}]}`)); err != nil {
			return err
		}
		return b.Put([]byte("stray"), []byte(`{}`))
	})
	db = MustOpenPath(t, db.Path())
	if _, err := db.FindDevice(ctx, 1); err == nil || !strings.Contains(err.Error(), `access "all"`) {
		t.Fatalf("device with an unknown access: %v", err)
	}
	rep, err := db.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"device 1: record does not decode", `access: unknown key "stray"`, "access: anonymous rules: topic pattern \"channels/#\""} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}
