package storage_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
	bolt "go.etcd.io/bbolt"
)

// now is the fixed clock of test databases.
var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// MustOpenDB opens a new database in a temporary directory and closes it
// when the test ends.
func MustOpenDB(tb testing.TB) *storage.DB {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "feedmq.db"))
}

// MustOpenPath opens the database at path with the fixed clock and closes
// it when the test ends (Close is idempotent, so tests may close it first).
func MustOpenPath(tb testing.TB, path string) *storage.DB {
	tb.Helper()
	db, err := storage.Open(path, storage.Options{Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Error(err)
		}
	})
	return db
}

// MustReopen closes db and opens its file again.
func MustReopen(tb testing.TB, db *storage.DB) *storage.DB {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	return MustOpenPath(tb, db.Path())
}

// NewChannel returns a valid channel that is not stored yet.
func NewChannel(name string) *channels.Channel {
	return &channels.Channel{
		Name:     name,
		Fields:   channels.DefaultFields(),
		WriteKey: "WRITEKEY00000001",
		ReadKey:  "READKEY000000001",
	}
}

func MustCreateChannel(tb testing.TB, db *storage.DB, name string) *channels.Channel {
	tb.Helper()
	c := NewChannel(name)
	if err := db.CreateChannel(context.Background(), c); err != nil {
		tb.Fatal(err)
	}
	return c
}

// MustAppend stores an entry that sets field1 to v.
func MustAppend(tb testing.TB, db *storage.DB, channelID uint64, v string) *channels.Entry {
	tb.Helper()
	e := &channels.Entry{ChannelID: channelID}
	e.SetValue(0, v)
	if err := db.AppendEntry(context.Background(), e); err != nil {
		tb.Fatal(err)
	}
	return e
}

func MustCreateDevice(tb testing.TB, db *storage.DB, username string, grants ...auth.Grant) *auth.Device {
	tb.Helper()
	d := &auth.Device{Name: username, ClientID: username, Username: username, PasswordHash: "hash-" + username, Channels: grants}
	if err := db.CreateDevice(context.Background(), d); err != nil {
		tb.Fatal(err)
	}
	return d
}

// wantCode fails the test unless err carries the application error code.
func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := channels.ErrorCode(err); got != code {
		tb.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func TestOpen_CreatesDirectoryAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "feedmq.db")
	db := MustOpenPath(t, path)
	if db.Path() != path {
		t.Fatalf("Path() = %q, want %q", db.Path(), path)
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got&^want != 0 {
			t.Errorf("%s: mode %v, want at most %v", p, got, want)
		}
	}
}

func TestOpen_Locked(t *testing.T) {
	db := MustOpenDB(t)
	start := time.Now()
	_, err := storage.Open(db.Path(), storage.Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), db.Path()) || !strings.Contains(err.Error(), "is feedmq serve running?") {
		t.Errorf("message %q should name the file and the likely cause", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v despite a 100ms timeout", d)
	}
}

// boltWrite edits a closed database file behind the storage package.
func boltWrite(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestOpen_NewerSchema(t *testing.T) {
	db := MustOpenDB(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, 2))
	})
	_, err := storage.Open(db.Path(), storage.Options{})
	if err == nil || !strings.Contains(err.Error(), "schema version 2") || !strings.Contains(err.Error(), "upgrade feedmq") {
		t.Fatalf("Open: %v, want a newer-schema error", err)
	}
}

func TestOpen_ForeignDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	boltWrite(t, path, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("widgets"))
		return err
	})
	_, err := storage.Open(path, storage.Options{})
	if err == nil || !strings.Contains(err.Error(), "not a feedmq database") {
		t.Fatalf("Open: %v, want a not-a-feedmq-database error", err)
	}
}

func TestOpen_NotBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("junk", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Open(path, storage.Options{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open: %v, want an error naming the file", err)
	}
}

// TestReopen checks that everything survives a close: channels, devices,
// entries, and the sequences that number them.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "weather")
	d := MustCreateDevice(t, db, "dev1", auth.Grant{ChannelID: c.ID, Publish: true})
	for i := 0; i < 3; i++ {
		MustAppend(t, db, c.ID, "v")
	}

	db = MustReopen(t, db)
	got, err := db.FindChannel(ctx, c.ID)
	if err != nil || got.Name != "weather" || got.LastEntryID != 3 {
		t.Fatalf("FindChannel after reopen = %+v, %v", got, err)
	}
	if gd, err := db.FindDevice(ctx, d.ID); err != nil || gd.Username != "dev1" || len(gd.Channels) != 1 {
		t.Fatalf("FindDevice after reopen = %+v, %v", gd, err)
	}
	if e := MustAppend(t, db, c.ID, "v"); e.ID != 4 {
		t.Fatalf("entry after reopen has ID %d, want 4", e.ID)
	}
	if c2 := MustCreateChannel(t, db, "second"); c2.ID != 2 {
		t.Fatalf("channel after reopen has ID %d, want 2", c2.ID)
	}
	if list, err := db.Entries(ctx, c.ID, channels.EntryFilter{}); err != nil || len(list) != 4 {
		t.Fatalf("Entries after reopen: %d entries, %v", len(list), err)
	}
}
