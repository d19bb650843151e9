package storage

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// fakeVersion2 pretends the next schema version exists, with the given
// migration from version 1, until the test ends.
func fakeVersion2(t *testing.T, step migration) {
	oldLatest, oldSteps := latestVersion, migrations
	latestVersion = 2
	migrations = map[uint64]migration{}
	if step != nil {
		migrations[1] = step
	}
	t.Cleanup(func() { latestVersion, migrations = oldLatest, oldSteps })
}

func openV1(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "feedmq.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func version(t *testing.T, path string) (v uint64, marker bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		v = btoi(tx.Bucket(metaBucket).Get(schemaVersionKey))
		marker = tx.Bucket([]byte("migrated")) != nil
		return nil
	})
	return v, marker
}

func TestMigrate_RunsAtOpen(t *testing.T) {
	path := openV1(t)
	fakeVersion2(t, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("migrated"))
		return err
	})
	// Read-only opens cannot migrate and say so.
	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "older than this feedmq's") {
		t.Fatalf("read-only open of an old version: %v", err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if v, marker := version(t, path); v != 2 || !marker {
		t.Fatalf("after migration: version %d, marker %v", v, marker)
	}
	// A second open has nothing left to do.
	db, err = Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

// A failing migration leaves the file as it was: same version, no partial
// change.
func TestMigrate_FailureRollsBack(t *testing.T) {
	path := openV1(t)
	fakeVersion2(t, func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("migrated")); err != nil {
			return err
		}
		return errors.New("boom")
	})
	_, err := Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "migrate schema version 1 to 2: boom") {
		t.Fatalf("Open: %v", err)
	}
	if v, marker := version(t, path); v != 1 || marker {
		t.Fatalf("after failed migration: version %d, marker %v", v, marker)
	}
}

func TestMigrate_MissingStep(t *testing.T) {
	path := openV1(t)
	fakeVersion2(t, nil)
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "no migration from schema version 1 to 2") {
		t.Fatalf("Open: %v", err)
	}
}

// A new file is stamped with the latest version and needs no migration.
func TestMigrate_NewFileIsLatest(t *testing.T) {
	fakeVersion2(t, nil)
	path := openV1(t)
	if v, _ := version(t, path); v != 2 {
		t.Fatalf("new file has version %d", v)
	}
}
