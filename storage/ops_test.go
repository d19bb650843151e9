package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
	bolt "go.etcd.io/bbolt"
)

// appendLoop appends to channel ch until stop is closed and returns the
// number of entries stored.
func appendLoop(t *testing.T, db *storage.DB, ch uint64, stop <-chan struct{}) func() int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				e := &channels.Entry{ChannelID: ch}
				e.SetValue(0, "x")
				if err := db.AppendEntry(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
				n.Add(1)
			}
		})
	}
	return func() int64 { wg.Wait(); return n.Load() }
}

// A backup taken while appends run is a consistent snapshot: it opens as a
// feedmq database, passes Check, and its counts match the reported Stats.
func TestBackup_ConsistentWhileAppending(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "busy")
	MustCreateDevice(t, db, "dev", auth.Grant{ChannelID: c.ID, Publish: true})
	for i := 0; i < 100; i++ {
		MustAppend(t, db, c.ID, "seed")
	}
	stop := make(chan struct{})
	wait := appendLoop(t, db, c.ID, stop)
	time.Sleep(20 * time.Millisecond)

	dir := t.TempDir()
	path := filepath.Join(dir, "copy.db")
	n, st, err := db.BackupFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n2, err := db.Backup(ctx, &buf)
	close(stop)
	appended := wait()
	if err != nil || n2 != int64(buf.Len()) {
		t.Fatalf("Backup: %d bytes, %v (buffer %d)", n2, err, buf.Len())
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != n || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v (reported %d bytes)", fi, err, n)
	}
	if st.Channels != 1 || st.Devices != 1 || st.Entries < 100 {
		t.Fatalf("stats %+v", st)
	}
	if appended == 0 {
		t.Fatal("no appends ran during the backup")
	}

	cp := MustOpenPath(t, path)
	rep, err := cp.Check(ctx)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check of copy: %+v, %v", rep, err)
	}
	list, err := cp.Entries(ctx, c.ID, channels.EntryFilter{})
	if err != nil || uint64(len(list)) != st.Entries {
		t.Fatalf("copy has %d entries (%v), stats say %d", len(list), err, st.Entries)
	}
	for i, e := range list {
		if e.ID != uint64(i+1) {
			t.Fatalf("entry %d has ID %d", i, e.ID)
		}
	}
	// Nothing temporary is left next to the copy once it is closed (an
	// open database has its write-ahead log beside it).
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("directory holds %v", files)
	}
}

func TestBackupFile_RefusesExisting(t *testing.T) {
	db := MustOpenDB(t)
	path := filepath.Join(t.TempDir(), "exists.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.BackupFile(context.Background(), path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("BackupFile over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("existing file changed")
	}
}

func TestBackup_Canceled(t *testing.T) {
	db := MustOpenDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Backup(ctx, &bytes.Buffer{}); err == nil {
		t.Fatal("canceled backup succeeded")
	}
}

func TestOpen_ReadOnly(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "v")
	db.Close()
	ro, err := storage.Open(db.Path(), storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if st, err := ro.Stats(ctx); err != nil || st.Entries != 1 || st.Channels != 1 {
		t.Fatalf("stats %+v, %v", st, err)
	}
	if err := ro.CreateChannel(ctx, NewChannel("x")); err == nil {
		t.Fatal("write to a read-only database succeeded")
	}
	// A missing file is not created.
	missing := filepath.Join(t.TempDir(), "none.db")
	if _, err := storage.Open(missing, storage.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("file created: %v", err)
	}
}

func TestCheck_Good(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "a")
	MustCreateChannel(t, db, "b")
	MustCreateDevice(t, db, "dev", auth.Grant{ChannelID: c.ID, Publish: true})
	for i := 0; i < 5; i++ {
		MustAppend(t, db, c.ID, "v")
	}
	rep, err := db.Check(context.Background())
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("%+v, %v", rep, err)
	}
	if rep.Channels != 2 || rep.Devices != 1 || rep.Entries != 5 {
		t.Fatalf("counts %+v", rep.Stats)
	}
}

// Damage a database behind feedmq's back and check that Check names every
// problem.
func TestCheck_Corrupt(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "a")
	MustCreateDevice(t, db, "dev", auth.Grant{ChannelID: c.ID, Publish: true})
	MustAppend(t, db, c.ID, "v")
	db.Close()
	key := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		feeds := tx.Bucket([]byte("feeds"))
		if _, err := feeds.CreateBucket(key(9)); err != nil { // orphan feed
			return err
		}
		feed := feeds.Bucket(key(c.ID))
		if err := feed.Put(key(1), []byte{0x02, 0xff, 0xff, 0xff, 0x7f}); err != nil { // undecodable
			return err
		}
		if err := feed.Put(key(50), []byte{0x02, 0x00}); err != nil { // beyond sequence
			return err
		}
		if err := feed.Put([]byte("short"), []byte{0x02, 0x00}); err != nil {
			return err
		}
		// A grant to a missing channel and a dangling username.
		devs := tx.Bucket([]byte("devices"))
		v := devs.Get(key(1))
		v = bytes.Replace(v, []byte(`"channel_id":1`), []byte(`"channel_id":7`), 1)
		if err := devs.Put(key(1), v); err != nil {
			return err
		}
		return tx.Bucket([]byte("usernames")).Put([]byte("ghost"), key(5))
	})
	db = MustOpenPath(t, db.Path())
	rep, err := db.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, want := range []string{
		"feed 9: belongs to no channel",
		"feed 1: entry 1 does not decode",
		"feed 1: entry 50 is beyond the feed's sequence 1",
		"feed 1: entry key 73686f7274 is not an 8-byte entry ID",
		"device 1: grant to missing channel 7",
		`usernames: "ghost" maps to missing device 5`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(rep.Problems) != 6 {
		t.Errorf("got %d problems:\n%s", len(rep.Problems), all)
	}
}

// appendAt stores an entry created at t.
func appendAt(t *testing.T, db *storage.DB, ch uint64, at time.Time) {
	t.Helper()
	e := &channels.Entry{ChannelID: ch, CreatedAt: at}
	e.SetValue(0, "v")
	if err := db.AppendEntry(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func feedIDs(t *testing.T, db *storage.DB, ch uint64) (first, last uint64, n int) {
	t.Helper()
	list, err := db.Entries(context.Background(), ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		return 0, 0, 0
	}
	return list[0].ID, list[len(list)-1].ID, len(list)
}

func withRetention(t *testing.T, db *storage.DB, c *channels.Channel, maxEntries uint64, maxAge time.Duration) {
	t.Helper()
	c.MaxEntries, c.MaxAge = maxEntries, maxAge
	if err := db.UpdateChannel(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func TestPrune_MaxEntries(t *testing.T) {
	ctx := context.Background()
	storage.SetPruneBatch(t, 7) // several batches
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "capped")
	keep := MustCreateChannel(t, db, "unlimited")
	for i := 0; i < 50; i++ {
		MustAppend(t, db, c.ID, "v")
		MustAppend(t, db, keep.ID, "v")
	}
	withRetention(t, db, c, 10, 0)
	n, err := db.Prune(ctx, now)
	if err != nil || n != 40 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	if first, last, cnt := feedIDs(t, db, c.ID); first != 41 || last != 50 || cnt != 10 {
		t.Fatalf("capped feed: %d..%d (%d)", first, last, cnt)
	}
	if _, _, cnt := feedIDs(t, db, keep.ID); cnt != 50 {
		t.Fatalf("unlimited feed has %d entries", cnt)
	}
	// Nothing more to do; IDs go on from the sequence.
	if n, err := db.Prune(ctx, now); err != nil || n != 0 {
		t.Fatalf("second Prune: %d, %v", n, err)
	}
	if e := MustAppend(t, db, c.ID, "v"); e.ID != 51 {
		t.Fatalf("next entry ID %d", e.ID)
	}
	got, _ := db.FindChannel(ctx, c.ID)
	if got.LastEntryID != 51 || got.MaxEntries != 10 {
		t.Fatalf("channel after prune: %+v", got)
	}
	if st, _ := db.Stats(ctx); st.Entries != 61 {
		t.Fatalf("stats: %+v", st)
	}
	if rep, err := db.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

// Appends go on while a long prune runs in small batches, and none of them
// is lost or pruned by mistake.
func TestPrune_ConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	storage.SetPruneBatch(t, 100)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	seed := make([]*channels.Entry, 5000)
	for i := range seed {
		seed[i] = &channels.Entry{ChannelID: c.ID}
		seed[i].SetValue(0, "old")
	}
	var wg sync.WaitGroup
	for _, e := range seed {
		wg.Go(func() {
			if err := db.AppendEntry(ctx, e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	withRetention(t, db, c, 100, 0)
	stop := make(chan struct{})
	wait := appendLoop(t, db, c.ID, stop)
	n, err := db.Prune(ctx, now)
	close(stop)
	appended := wait()
	if err != nil || n < 4900 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	first, last, cnt := feedIDs(t, db, c.ID)
	if last != uint64(5000+appended) || uint64(cnt) != last-first+1 || cnt < 100 {
		t.Fatalf("feed %d..%d (%d) after %d appends", first, last, cnt, appended)
	}
	if rep, err := db.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

// A pass of Prune ends even when appends outrun its batches (a fast disk
// under a flood): it deletes what exceeded the limit when it began, and
// leaves what came after to the next pass.
func TestPrune_EndsUnderFasterAppends(t *testing.T) {
	ctx := context.Background()
	storage.SetPruneBatch(t, 10)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	for range 50 {
		MustAppend(t, db, c.ID, "old")
	}
	withRetention(t, db, c, 5, 0)
	batches := 0
	storage.AfterPruneBatch(t, func() {
		if batches++; batches > 100 {
			t.Fatalf("Prune still running after %d batches", batches)
		}
		for range 20 { // twice a batch
			MustAppend(t, db, c.ID, "new")
		}
	})
	n, err := db.Prune(ctx, now)
	if err != nil || n < 45 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	storage.AfterPruneBatch(t, nil)
	if n, err := db.Prune(ctx, now); err != nil || n == 0 {
		t.Fatalf("second Prune: %d, %v", n, err)
	}
	if _, _, cnt := feedIDs(t, db, c.ID); cnt != 5 {
		t.Fatalf("%d entries after the second pass, want 5", cnt)
	}
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	src := MustOpenDB(t)
	c := MustCreateChannel(t, src, "backed-up")
	MustAppend(t, src, c.ID, "v")
	backup := filepath.Join(t.TempDir(), "backup.db")
	if _, _, err := src.BackupFile(ctx, backup); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	dst := filepath.Join(dir, "feedmq.db")
	// Into an empty directory: no --force needed, nothing kept.
	res, err := storage.Restore(ctx, backup, dst, false, now)
	if err != nil || res.Previous != "" || res.Entries != 1 || res.Channels != 1 {
		t.Fatalf("Restore: %+v, %v", res, err)
	}
	// Over an existing database only with force; the old one is kept.
	if _, err := storage.Restore(ctx, backup, dst, false, now); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Restore without force: %v", err)
	}
	db := MustOpenPath(t, dst)
	MustCreateChannel(t, db, "newer")
	// ...and never under an open database.
	if _, err := storage.Restore(ctx, backup, dst, true, now); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Restore under an open database: %v", err)
	}
	db.Close()
	res, err = storage.Restore(ctx, backup, dst, true, now)
	if err != nil || res.Previous != dst+".bak-20261122T100000Z" {
		t.Fatalf("Restore with force: %+v, %v", res, err)
	}
	if list, _ := MustOpenPath(t, res.Previous).ListChannels(ctx); len(list) != 2 {
		t.Fatalf("kept database has %d channels", len(list))
	}
	if list, _ := MustOpenPath(t, dst).ListChannels(ctx); len(list) != 1 || list[0].Name != "backed-up" {
		t.Fatalf("restored database: %+v", list)
	}
}

func TestRestore_RefusesBadBackups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dst := filepath.Join(dir, "feedmq.db")
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("junk"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(t.TempDir(), "foreign.db")
	boltWrite(t, foreign, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("widgets"))
		return err
	})
	orphan := MustOpenDB(t)
	orphan.Close()
	boltWrite(t, orphan.Path(), func(tx *bolt.Tx) error {
		_, err := tx.Bucket([]byte("feeds")).CreateBucket(binary.BigEndian.AppendUint64(nil, 3))
		return err
	})
	for name, want := range map[string]string{
		junk:                          "not usable",
		foreign:                       "not a feedmq database",
		orphan.Path():                 "feed 3: belongs to no channel",
		filepath.Join(dir, "missing"): "open backup",
	} {
		if _, err := storage.Restore(ctx, name, dst, true, now); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Restore %s: %v, want %q", filepath.Base(name), err, want)
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("left behind: %v", files)
	}
}

// Channel records written before retention existed decode with none.
func TestChannel_RecordWithoutRetention(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "old")
	db.Close()
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("channels"))
		k := binary.BigEndian.AppendUint64(nil, c.ID)
		v := string(b.Get(k))
		if strings.Contains(v, "max_") {
			t.Errorf("record of a channel without retention mentions it: %s", v)
		}
		return nil
	})
	db = MustOpenPath(t, db.Path())
	withRetention(t, db, c, 3, time.Minute)
	got, err := MustReopen(t, db).FindChannel(context.Background(), c.ID)
	if err != nil || got.MaxEntries != 3 || got.MaxAge != time.Minute {
		t.Fatalf("%+v, %v", got, err)
	}
}

// An Open that waits for the lock while Restore replaces the file ends up
// on the new file, not on the kept old one.
func TestOpen_FileReplacedWhileWaiting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "feedmq.db")
	old := MustOpenPath(t, path)
	MustCreateChannel(t, old, "old")
	old.Close()
	repl := MustOpenPath(t, filepath.Join(dir, "new.db"))
	MustCreateChannel(t, repl, "new")
	repl.Close()

	unlock, err := storage.LockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan *storage.DB, 1)
	go func() {
		db, err := storage.Open(path, storage.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Error(err)
		}
		opened <- db
	}()
	time.Sleep(200 * time.Millisecond) // Open has the old file and waits for its lock
	if err := os.Rename(repl.Path(), path); err != nil {
		t.Fatal(err)
	}
	unlock()
	db := <-opened
	if db == nil {
		t.FailNow()
	}
	defer db.Close()
	list, err := db.ListChannels(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "new" {
		t.Fatalf("opened %+v, %v", list, err)
	}
}

// Channel records written before the location, metadata, tags and URL
// existed decode with them unset, and a channel without them writes none.
func TestChannel_RecordWithoutSettings(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "old")
	db.Close()
	old := `{"id":1,"name":"old","fields":["a","","","","","","",""],"write_key":"WRITEKEY00000001",` +
		`"read_key":"READKEY000000001","created_at":"2020-01-02T03:04:05Z","updated_at":"2020-01-02T03:04:05Z"}`
	boltWrite(t, db.Path(), func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("channels"))
		k := binary.BigEndian.AppendUint64(nil, c.ID)
		for _, key := range []string{"latitude", "longitude", "elevation", "metadata", "tags", "url"} {
			if strings.Contains(string(b.Get(k)), `"`+key+`"`) {
				t.Errorf("record of a channel without settings has %s: %s", key, b.Get(k))
			}
		}
		return b.Put(k, []byte(old))
	})
	db = MustOpenPath(t, db.Path())
	got, err := db.FindChannel(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "old" || got.Fields[0] != "a" || got.Latitude != "" || got.Longitude != "" || got.Elevation != "" ||
		got.Metadata != "" || got.Tags != nil || got.URL != "" {
		t.Fatalf("old record decoded as %+v", got)
	}
	got.Tags = []string{"new"}
	if err := db.UpdateChannel(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	if again, err := MustReopen(t, db).FindChannel(context.Background(), c.ID); err != nil || !reflect.DeepEqual(again.Tags, []string{"new"}) {
		t.Fatalf("%+v, %v", again, err)
	}
}
