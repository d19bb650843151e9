package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/storage"
	bolt "go.etcd.io/bbolt"
)

func TestAccount_PutAndReopen(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	a, err := db.Account(ctx)
	if err != nil || *a != (auth.Account{}) {
		t.Fatalf("new database: account %+v, %v; want a zero account", a, err)
	}
	changed := time.Date(2026, 12, 6, 7, 0, 0, 123456789, time.UTC)
	want := auth.Account{UserAPIKey: "USERKEY000000001", PasswordHash: "$argon2id$v=19$x", PasswordChangedAt: changed}
	if err := db.PutAccount(ctx, &want); err != nil {
		t.Fatal(err)
	}
	db = MustReopen(t, db)
	got, err := db.Account(ctx)
	if err != nil || *got != want {
		t.Fatalf("after reopen: %+v, %v; want %+v (nanoseconds kept)", got, err, want)
	}
	// PutAccount replaces the whole record.
	if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000002"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Account(ctx); *got != (auth.Account{UserAPIKey: "USERKEY000000002"}) {
		t.Fatalf("after replace: %+v", got)
	}
	if rep, err := db.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

// A file written before the account bucket existed opens read-only (no
// account) and gets the bucket at the next writing open.
func TestAccount_FileWithoutBucket(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	MustCreateChannel(t, db, "c")
	db.Close()
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("account")) })

	ro, err := storage.Open(db.Path(), storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open without an account bucket: %v", err)
	}
	if a, err := ro.Account(ctx); err != nil || *a != (auth.Account{}) {
		t.Fatalf("account %+v, %v; want a zero account", a, err)
	}
	if rep, err := ro.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
	if err := ro.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000001"}); err == nil {
		t.Fatal("PutAccount on a read-only database succeeded")
	}
	ro.Close()

	db = MustOpenPath(t, db.Path())
	if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000001"}); err != nil {
		t.Fatal(err)
	}
	if a, _ := db.Account(ctx); a.UserAPIKey != "USERKEY000000001" {
		t.Fatalf("account %+v", a)
	}
}

func TestAccount_Corrupt(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000001"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("account"))
		if err := b.Put([]byte("owner"), []byte(`{"user_api_key":`)); err != nil {
			return err
		}
		return b.Put([]byte("stray"), []byte(`{}`))
	})
	db = MustOpenPath(t, db.Path())
	if _, err := db.Account(ctx); err == nil || !strings.Contains(err.Error(), "account record does not decode") {
		t.Fatalf("Account of a damaged record: %v", err)
	}
	rep, err := db.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"account record does not decode", `account: unknown key "stray"`} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(rep.Problems) != 2 {
		t.Errorf("got %d problems:\n%s", len(rep.Problems), all)
	}
	// A new record repairs it.
	if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000002"}); err != nil {
		t.Fatal(err)
	}
	if a, err := db.Account(ctx); err != nil || a.UserAPIKey != "USERKEY000000002" {
		t.Fatalf("after repair: %+v, %v", a, err)
	}
}

// The account travels with a backup.
func TestAccount_Backup(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	want := auth.Account{UserAPIKey: "USERKEY000000001", PasswordHash: "h", PasswordChangedAt: now}
	if err := db.PutAccount(ctx, &want); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/copy.db"
	if _, _, err := db.BackupFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	cp, err := storage.Open(path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if got, err := cp.Account(ctx); err != nil || *got != want {
		t.Fatalf("account in the copy: %+v, %v", got, err)
	}
}
