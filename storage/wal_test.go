package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// crashCopy copies what the disk holds of an open database (its file and
// its write-ahead log) to a new directory, as a crash would leave it, and
// returns the copy's path. Only call it while no commit runs.
func crashCopy(t *testing.T, db *storage.DB) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "feedmq.db")
	pairs := [][2]string{{db.Path(), dst}}
	for i, p := range storage.WALPaths(db.Path()) {
		pairs = append(pairs, [2]string{p, storage.WALPaths(dst)[i]})
	}
	for _, pair := range pairs {
		b, err := os.ReadFile(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pair[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// values returns field1 of every entry of a channel, by entry ID.
func values(t *testing.T, db *storage.DB, ch uint64) map[uint64]string {
	t.Helper()
	list, err := db.Entries(context.Background(), ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[uint64]string, len(list))
	for _, e := range list {
		v, _ := e.Value(0)
		m[e.ID] = v
	}
	return m
}

func wantValues(t *testing.T, db *storage.DB, ch uint64, want ...string) {
	t.Helper()
	got := values(t, db, ch)
	if len(got) != len(want) {
		t.Fatalf("channel %d has %d entries %v, want %v", ch, len(got), got, want)
	}
	for i, v := range want {
		if got[uint64(i+1)] != v {
			t.Fatalf("channel %d entry %d = %q, want %q (all: %v)", ch, i+1, got[uint64(i+1)], v, got)
		}
	}
}

func TestWAL_RecoversAcknowledgedEntries(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	a, b := MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b")
	for i := range 5 {
		MustAppend(t, db, a.ID, "a"+strconv.Itoa(i+1))
		MustAppend(t, db, b.ID, "b"+strconv.Itoa(i+1))
	}
	// The entries are only in the log: the file alone does not have them.
	path := crashCopy(t, db)
	if _, err := storage.Open(path, storage.Options{ReadOnly: true}); !errors.Is(err, storage.ErrUnappliedLog) {
		t.Fatalf("read-only open with a full log: %v, want ErrUnappliedLog", err)
	}

	cp := MustOpenPath(t, path)
	wantValues(t, cp, a.ID, "a1", "a2", "a3", "a4", "a5")
	wantValues(t, cp, b.ID, "b1", "b2", "b3", "b4", "b5")
	// Numbering goes on from the recovered entries.
	if e := MustAppend(t, cp, a.ID, "a6"); e.ID != 6 {
		t.Fatalf("next entry got ID %d, want 6", e.ID)
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed cleanly, the database is one file that read-only opens take.
	if _, err := os.Stat(storage.WALPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("log after a clean close: %v", err)
	}
	ro, err := storage.Open(path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	wantValues(t, ro, a.ID, "a1", "a2", "a3", "a4", "a5", "a6")
}

func TestWAL_TornTailIsDropped(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "1")
	MustAppend(t, db, c.ID, "2")
	size := func() int64 {
		end, err := storage.WALEnd(storage.WALPath(db.Path()))
		if err != nil {
			t.Fatal(err)
		}
		return end
	}
	before := size()
	MustAppend(t, db, c.ID, "3")
	whole := size() - before
	for cut := int64(1); cut < whole; cut += 3 {
		path := crashCopy(t, db)
		// The last record was being written when the power went.
		if err := os.Truncate(storage.WALPath(path), before+cut); err != nil {
			t.Fatal(err)
		}
		cp := MustOpenPath(t, path)
		wantValues(t, cp, c.ID, "1", "2")
		if e := MustAppend(t, cp, c.ID, "3b"); e.ID != 3 {
			t.Fatalf("cut at %d: next entry got ID %d, want 3", cut, e.ID)
		}
		if err := cp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A flipped bit in the last record: the same.
	path := crashCopy(t, db)
	wal := storage.WALPath(path)
	b, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	b[before+whole-1] ^= 1
	if err := os.WriteFile(wal, b, 0o600); err != nil {
		t.Fatal(err)
	}
	wantValues(t, MustOpenPath(t, path), c.ID, "1", "2")
}

// After a checkpoint the log starts over in place: records of the earlier
// epoch still lie further in the file and must never come back, even
// where their IDs would fit (here, after a clear renumbered the feed).
func TestWAL_OldRecordsStayDead(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	c := MustCreateChannel(t, db, "c")
	for i := range 20 {
		MustAppend(t, db, c.ID, "old"+strconv.Itoa(i))
	}
	if err := db.ClearChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	MustAppend(t, db, c.ID, "new1")
	MustAppend(t, db, c.ID, "new2")
	cp := MustOpenPath(t, crashCopy(t, db))
	wantValues(t, cp, c.ID, "new1", "new2")
}

// A crash between a checkpoint's commit and the log's start-over leaves
// the same entries in both: they are applied once.
func TestWAL_ReplayIsIdempotent(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "1")
	MustAppend(t, db, c.ID, "2")
	wal, err := os.ReadFile(storage.WALPath(db.Path()))
	if err != nil {
		t.Fatal(err)
	}
	wantValues(t, db, c.ID, "1", "2") // a read checkpoints
	path := crashCopy(t, db)
	if err := os.WriteFile(storage.WALPath(path), wal, 0o600); err != nil {
		t.Fatal(err)
	}
	cp := MustOpenPath(t, path)
	wantValues(t, cp, c.ID, "1", "2")
	if e := MustAppend(t, cp, c.ID, "3"); e.ID != 3 {
		t.Fatalf("next entry got ID %d, want 3", e.ID)
	}
}

// Entries logged for a channel that is then deleted are not resurrected.
func TestWAL_DeletedChannel(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	a, b := MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b")
	MustAppend(t, db, a.ID, "a1")
	MustAppend(t, db, b.ID, "b1")
	if err := db.DeleteChannel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	e := &channels.Entry{ChannelID: a.ID}
	e.SetValue(0, "late")
	wantCode(t, db.AppendEntry(ctx, e), channels.ENOTFOUND)
	MustAppend(t, db, b.ID, "b2")
	cp := MustOpenPath(t, crashCopy(t, db))
	if _, err := cp.FindChannel(ctx, a.ID); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Fatalf("deleted channel after recovery: %v", err)
	}
	wantValues(t, cp, b.ID, "b1", "b2")
}

// Reads see every acknowledged entry without waiting for a checkpoint.
func TestWAL_ReadsSeeLoggedEntries(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ctx := context.Background()
	c := MustCreateChannel(t, db, "c")
	for i := range 3 {
		e := MustAppend(t, db, c.ID, strconv.Itoa(i))
		got, err := db.FindChannel(ctx, c.ID)
		if err != nil || got.LastEntryID != e.ID {
			t.Fatalf("after entry %d: last_entry_id %v, %v", e.ID, got, err)
		}
		if _, err := db.FindEntry(ctx, c.ID, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	st, err := db.Stats(ctx)
	if err != nil || st.Entries != 3 {
		t.Fatalf("stats %+v, %v", st, err)
	}
}

func TestWAL_ForeignFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feedmq.db")
	if err := os.WriteFile(storage.WALPath(path), []byte("something else entirely, not a log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Open(path, storage.Options{}); err == nil {
		t.Fatal("opened a database beside a foreign -wal file")
	}
	b, _ := os.ReadFile(storage.WALPath(path))
	if string(b) != "something else entirely, not a log" {
		t.Fatalf("the foreign file was changed: %q", b)
	}
}

// A restore never lets the replaced database's log reach the restored
// file, and keeps the entries that were only in that log.
func TestWAL_Restore(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	ctx := context.Background()
	src := MustOpenDB(t)
	sc := MustCreateChannel(t, src, "restored")
	MustAppend(t, src, sc.ID, "r1")
	backup := filepath.Join(t.TempDir(), "backup.db")
	if _, _, err := src.BackupFile(ctx, backup); err != nil {
		t.Fatal(err)
	}

	old := MustOpenDB(t)
	oc := MustCreateChannel(t, old, "old")
	for i := range 5 {
		MustAppend(t, old, oc.ID, "o"+strconv.Itoa(i+1))
	}
	dst := crashCopy(t, old) // the old server crashed with these in its log
	res, err := storage.Restore(ctx, backup, dst, true, now)
	if err != nil {
		t.Fatal(err)
	}
	restored := MustOpenPath(t, dst)
	wantValues(t, restored, sc.ID, "r1")
	kept := MustOpenPath(t, res.Previous)
	wantValues(t, kept, oc.ID, "o1", "o2", "o3", "o4", "o5")
}

// appendMany appends n entries to ch from 16 goroutines (so that commits
// carry many entries), each with a distinct field1 of about 200 bytes
// starting with prefix, and returns the values.
func appendMany(t *testing.T, db *storage.DB, ch uint64, prefix string, n int) map[string]bool {
	t.Helper()
	pad := strings.Repeat("x", 200)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 16 {
				e := &channels.Entry{ChannelID: ch}
				e.SetValue(0, fmt.Sprintf("%s%d-%s", prefix, i, pad))
				if err := db.AppendEntry(context.Background(), e); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := make(map[string]bool, n)
	for i := range n {
		want[fmt.Sprintf("%s%d-%s", prefix, i, pad)] = true
	}
	return want
}

// wantAll fails unless ch holds exactly the values of want, numbered 1..n
// without gaps.
func wantAll(t *testing.T, db *storage.DB, ch uint64, want map[string]bool) {
	t.Helper()
	got := values(t, db, ch)
	if len(got) != len(want) {
		t.Fatalf("channel %d has %d entries, want %d", ch, len(got), len(want))
	}
	for id := uint64(1); id <= uint64(len(want)); id++ {
		if !want[got[id]] {
			t.Fatalf("entry %d = %.20q..., not one that was appended (or missing)", id, got[id])
		}
	}
}

// TestWAL_AppendsGoOnDuringCheckpoint holds a checkpoint (a megabyte of
// entries) while more entries are appended: the appends complete, and a
// crash at that moment, with the older entries only in one log and the
// newer only in the other, loses nothing and keeps the numbering.
func TestWAL_AppendsGoOnDuringCheckpoint(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	release := storage.HoldCheckpoints(t)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	want := appendMany(t, db, c.ID, "before", 6000) // > 1 MiB of log: a checkpoint starts, and waits
	for v := range appendMany(t, db, c.ID, "during", 500) {
		want[v] = true
	}
	second, err := os.Stat(storage.WALPaths(db.Path())[1])
	if err != nil || second.Size() < 500*200 {
		t.Fatalf("the second log holds %v bytes (%v): the logs did not switch", second.Size(), err)
	}

	path := crashCopy(t, db)
	cp := MustOpenPath(t, path)
	wantAll(t, cp, c.ID, want)
	if e := MustAppend(t, cp, c.ID, "next"); e.ID != uint64(len(want))+1 {
		t.Fatalf("after recovery the next entry got ID %d, want %d", e.ID, len(want)+1)
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}

	release()
	if err := storage.WaitCheckpoint(db); err != nil {
		t.Fatal(err)
	}
	wantAll(t, db, c.ID, want)
	path = db.Path()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range storage.WALPaths(path) {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after a clean close: %v", p, err)
		}
	}
}

// TestWAL_CrashAfterCheckpoint crashes once a checkpoint is done but its
// log still holds the (applied) records, and the other log newer ones:
// recovery applies the older log first and skips what bbolt has.
func TestWAL_CrashAfterCheckpoint(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	want := appendMany(t, db, c.ID, "before", 6000)
	if err := storage.WaitCheckpoint(db); err != nil {
		t.Fatal(err)
	}
	for v := range appendMany(t, db, c.ID, "after", 100) {
		want[v] = true
	}
	cp := MustOpenPath(t, crashCopy(t, db))
	wantAll(t, cp, c.ID, want)
}

// TestWAL_FailedCheckpointIsRetried fails a checkpoint (a full disk, say):
// appends go on into the other log, the checkpoint is tried again, and in
// the end every entry is in the file, once.
func TestWAL_FailedCheckpointIsRetried(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	storage.SetRetryDelay(t, 20*time.Millisecond)
	stop := storage.FailCheckpoints(t, errors.New("injected: no space left on device"))
	var failures atomic.Int64
	db, err := storage.Open(filepath.Join(t.TempDir(), "feedmq.db"), storage.Options{
		OnError: func(error) { failures.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := MustCreateChannel(t, db, "c")
	want := appendMany(t, db, c.ID, "before", 6000) // a checkpoint starts, and fails
	for v := range appendMany(t, db, c.ID, "during", 500) {
		want[v] = true
	}
	for deadline := time.Now().Add(10 * time.Second); failures.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d failed checkpoints reported, want a failure and a failed retry", failures.Load())
		}
	}
	// A crash now: the failed checkpoint's entries are only in a log.
	cp := MustOpenPath(t, crashCopy(t, db))
	wantAll(t, cp, c.ID, want)

	stop()
	storage.Sync(t, db) // copies whatever the logs hold
	wantAll(t, db, c.ID, want)
	for v := range appendMany(t, db, c.ID, "after", 100) {
		want[v] = true
	}
	path := db.Path()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wantAll(t, MustOpenPath(t, path), c.ID, want)
}

// TestWAL_FailedAppendLeavesNoRecords: an append whose fdatasync fails
// wrote its record anyway, and the disk may keep it. Once the writer moves
// on to the other log and gives the refused entry's ID again, recovery
// must not find the refused record in front of the acknowledged one.
func TestWAL_FailedAppendLeavesNoRecords(t *testing.T) {
	storage.SetCheckpointDelay(t, 20*time.Millisecond)
	var failing atomic.Bool
	storage.FailLogSyncs(t, func(op string) bool { return op == "append" && failing.Load() })
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "a1")
	failing.Store(true)
	e := &channels.Entry{ChannelID: c.ID}
	e.SetValue(0, "refused")
	if err := db.AppendEntry(context.Background(), e); err == nil {
		t.Fatal("the append whose sync failed succeeded")
	}
	failing.Store(false)
	// The timer switches logs and checkpoints a1; then the next entry
	// takes ID 2 in the other log.
	time.Sleep(200 * time.Millisecond)
	if err := storage.WaitCheckpoint(db); err != nil {
		t.Fatal(err)
	}
	if e := MustAppend(t, db, c.ID, "a2"); e.ID != 2 {
		t.Fatalf("next entry got ID %d, want 2", e.ID)
	}
	wantValues(t, MustOpenPath(t, crashCopy(t, db)), c.ID, "a1", "a2")
}

// TestWAL_TornHeaderDoesNotReviveRecords: a log keeps records of earlier
// epochs past its end. When its header is torn, recovery cannot know its
// epoch; the epoch it picks next must not make those records valid again,
// or a cleared feed gets them back after the next crash.
func TestWAL_TornHeaderDoesNotReviveRecords(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "b1")
	storage.Sync(t, db) // copies the log into the file and starts it over
	MustAppend(t, db, c.ID, "b2")
	MustAppend(t, db, c.ID, "b3")
	storage.Sync(t, db)
	path := crashCopy(t, db)
	log := storage.WALPath(path)
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	b[12] ^= 0xff // the epoch: the header's CRC fails, as after a torn write
	if err := os.WriteFile(log, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cp := MustOpenPath(t, path)
	wantValues(t, cp, c.ID, "b1", "b2", "b3")
	if err := cp.ClearChannel(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	wantValues(t, MustOpenPath(t, crashCopy(t, cp)), c.ID)
}

// TestWAL_ExclusiveNeedsEmptyLogs: an operation that renumbers a feed
// (clearing it) must not run while a log that could not start over may
// still hold the feed's records.
func TestWAL_ExclusiveNeedsEmptyLogs(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	var failing atomic.Bool
	storage.FailLogSyncs(t, func(op string) bool { return op == "restart" && failing.Load() })
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "old1")
	MustAppend(t, db, c.ID, "old2")
	failing.Store(true)
	if err := db.ClearChannel(context.Background(), c.ID); err == nil {
		t.Fatal("cleared the channel although its log could not start over")
	}
	path := crashCopy(t, db)
	failing.Store(false)
	wantValues(t, MustOpenPath(t, path), c.ID, "old1", "old2")
	if err := db.ClearChannel(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	wantValues(t, MustOpenPath(t, crashCopy(t, db)), c.ID)
}

// TestWAL_ReadOnlyOpenAfterCheckpoint: a log keeps the records a
// checkpoint copied until it is used again; they are in the file, so a
// read-only open after a crash (feedmq check, backup) is not refused.
func TestWAL_ReadOnlyOpenAfterCheckpoint(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	want := appendMany(t, db, c.ID, "v", 6000) // switches logs once
	if err := storage.WaitCheckpoint(db); err != nil {
		t.Fatal(err)
	}
	storage.Sync(t, db) // copies the rest; the first log keeps its copied records
	wantAll(t, db, c.ID, want)
	ro, err := storage.Open(crashCopy(t, db), storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open with only copied records in the logs: %v", err)
	}
	defer ro.Close()
	wantAll(t, ro, c.ID, want)
}

// TestWAL_NewLogTornAtCreation: a crash while Open creates a log can leave
// it empty, short or zero-filled; that is a torn header, not a foreign
// file, and the next Open goes on.
func TestWAL_NewLogTornAtCreation(t *testing.T) {
	for name, content := range map[string][]byte{
		"short":  []byte("fmq"),
		"zeros":  make([]byte, 32),
		"zeros2": make([]byte, 7),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "feedmq.db")
			db := MustOpenPath(t, path)
			c := MustCreateChannel(t, db, "c")
			MustAppend(t, db, c.ID, "1")
			cp := crashCopy(t, db)
			if err := os.WriteFile(storage.WALPaths(cp)[1], content, 0o600); err != nil {
				t.Fatal(err)
			}
			wantValues(t, MustOpenPath(t, cp), c.ID, "1")
		})
	}
}
