package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage"
)

func importedEntry(ch, id uint64, at time.Time, v string) channels.Entry {
	e := channels.Entry{ChannelID: ch, ID: id, CreatedAt: at}
	e.SetValue(0, v)
	return e
}

// Imports keep or assign IDs as on the bbolt file, all or none, in time
// order, and appends number on after them.
func TestImportEntries(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	ch := addChannel(t, db, 0, 0, 0)
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

	batch := []channels.Entry{importedEntry(ch, 5, t0, "a"), importedEntry(ch, 7, t0.Add(500*time.Millisecond), "b"), importedEntry(ch, 10, t0.Add(time.Hour), "c")}
	if err := db.ImportEntries(ctx, ch, batch, true); err != nil {
		t.Fatal(err)
	}
	// Refused whole: an ID not above the last, older than the newest,
	// above the largest kept, none to keep, no value, another channel,
	// no time, NUL in a value, a missing channel.
	for name, tc := range map[string]struct {
		es   []channels.Entry
		keep bool
		code string
	}{
		"id not above":  {[]channels.Entry{importedEntry(ch, 11, t0.Add(2*time.Hour), "d"), importedEntry(ch, 10, t0.Add(3*time.Hour), "e")}, true, channels.ECONFLICT},
		"older":         {[]channels.Entry{importedEntry(ch, 11, t0.Add(-time.Hour), "d")}, true, channels.ECONFLICT},
		"older, append": {[]channels.Entry{importedEntry(ch, 0, t0.Add(-time.Hour), "d")}, false, channels.ECONFLICT},
		"order in batch": {[]channels.Entry{importedEntry(ch, 0, t0.Add(3*time.Hour), "d"),
			importedEntry(ch, 0, t0.Add(2*time.Hour), "e")}, false, channels.ECONFLICT},
		"too high":     {[]channels.Entry{importedEntry(ch, storage.MaxImportedID+1, t0.Add(2*time.Hour), "d")}, true, channels.EINVALID},
		"no id":        {[]channels.Entry{importedEntry(ch, 0, t0.Add(2*time.Hour), "d")}, true, channels.EINVALID},
		"no value":     {[]channels.Entry{{ChannelID: ch, ID: 11, CreatedAt: t0.Add(2 * time.Hour)}}, true, channels.EINVALID},
		"other":        {[]channels.Entry{importedEntry(ch+1, 11, t0.Add(2*time.Hour), "d")}, true, channels.EINVALID},
		"no time":      {[]channels.Entry{importedEntry(ch, 11, time.Time{}, "d")}, true, channels.EINVALID},
		"nul":          {[]channels.Entry{importedEntry(ch, 11, t0.Add(2*time.Hour), "a\x00b")}, true, channels.EINVALID},
		"unknown mask": {[]channels.Entry{{ChannelID: ch, ID: 11, CreatedAt: t0.Add(2 * time.Hour), Set: 1 << 15}}, true, channels.EINVALID},
	} {
		t.Run(name, func(t *testing.T) {
			wantCode(t, db.ImportEntries(ctx, ch, tc.es, tc.keep), tc.code)
			if !tc.keep {
				for _, e := range tc.es {
					if e.ID != 0 {
						t.Fatalf("a refused batch kept IDs: %+v", tc.es)
					}
				}
			}
		})
	}
	wantCode(t, db.ImportEntries(ctx, 999, []channels.Entry{importedEntry(999, 1, t0, "x")}, true), channels.ENOTFOUND)

	// Without keepIDs they are numbered on; then an append goes on.
	more := []channels.Entry{importedEntry(ch, 0, t0.Add(2*time.Hour), "d"), importedEntry(ch, 0, t0.Add(2*time.Hour), "e")}
	if err := db.ImportEntries(ctx, ch, more, false); err != nil {
		t.Fatal(err)
	}
	if more[0].ID != 11 || more[1].ID != 12 {
		t.Fatalf("numbered %d, %d", more[0].ID, more[1].ID)
	}
	e := entry(ch, "live")
	if err := db.AppendEntry(ctx, e); err != nil || e.ID != 13 {
		t.Fatalf("append after import: %d %v", e.ID, err)
	}
	es, err := db.Entries(ctx, ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(es); !slices.Equal(got, []uint64{5, 7, 10, 11, 12, 13}) {
		t.Fatalf("entries %v", got)
	}
	if got, _ := db.FindEntry(ctx, ch, 7); !got.CreatedAt.Equal(t0) || got.Values[0] != "b" {
		t.Fatalf("entry 7: %+v", got)
	}
}

// check is clean on a sound database, with its counts, and names what a
// damaged one has wrong.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db := openTest(t, url, Options{})
	c := newChannel("c")
	if err := db.CreateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	d := &auth.Device{Name: "d", Username: "u", ClientID: "cid", PasswordHash: "x", Channels: []auth.Grant{{ChannelID: c.ID, Publish: true}}}
	if err := db.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := db.AppendEntry(ctx, entry(c.ID, "v")); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := db.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Channels != 1 || rep.Devices != 1 || rep.Entries != 3 {
		t.Fatalf("sound database: %+v", rep)
	}

	conn := openConn(t, url)
	for _, sql := range []string{
		"UPDATE channels SET last_entry_id = 2",
		"INSERT INTO entries (channel_id, entry_id, created_at) VALUES (1, 0, 0)",
		"INSERT INTO device_rules (device_id, position, access, pattern) VALUES (1, 0, 'read', 'a/#/b')",
		"INSERT INTO shared_rules (list, position, access, pattern) VALUES ('everyone', 0, 'sometimes', 'x')",
		"UPDATE channels SET name = repeat('n', 1000)",
		"ALTER TABLE grants DROP CONSTRAINT grants_channel_id_fkey",
		"INSERT INTO grants (device_id, channel_id, position, publish, subscribe) VALUES (1, 77, 1, true, false)",
		"INSERT INTO schema_migrations (version, name) VALUES (999, 'later')",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	rep, err = db.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, want := range []string{
		"schema: version 999",
		"feed 1: entry 3 is beyond the channel's last entry_id 2",
		"feed 1: entry 0 is beyond",
		"feed 1: entry 0 sets no value",
		"device 1: grant to missing channel 77",
		"channel 1: ",
		"device 1: access rules",
		"access: shared rules do not read back",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("report lacks %q:\n%s", want, all)
		}
	}
}

// A backup is one snapshot: taken while appends go on and channels and
// devices granted them are created, it holds each feed whole up to its
// last entry_id and every device's channels (read piece by piece, a
// device read later would name a channel the copy lacks), and that bbolt
// file checks clean.
func TestBackupFileSnapshot(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	var chs []uint64
	for i := 0; i < 3; i++ {
		c := newChannel("c")
		if err := db.CreateChannel(ctx, c); err != nil {
			t.Fatal(err)
		}
		chs = append(chs, c.ID)
	}
	for _, ch := range chs {
		if err := db.AppendEntry(ctx, entry(ch, "first")); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appended atomic.Int64
	for _, ch := range chs {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := db.AppendEntry(ctx, entry(ch, "more")); err != nil {
					t.Error(err)
					return
				}
				appended.Add(1)
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := newChannel("later")
			if err := db.CreateChannel(ctx, c); err != nil {
				t.Error(err)
				return
			}
			d := &auth.Device{Name: "d", Username: fmt.Sprintf("u%d", i), ClientID: fmt.Sprintf("c%d", i), PasswordHash: "x",
				Channels: []auth.Grant{{ChannelID: c.ID, Publish: true}}}
			if err := db.CreateDevice(ctx, d); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	// Appends are under way before the backup starts.
	for deadline := time.Now().Add(10 * time.Second); appended.Load() < 30; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no appends")
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	n, st, err := db.BackupFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != n || fi.Mode().Perm() != 0o600 || st.Channels < 3 {
		t.Fatalf("backup %d %+v: %v %v", n, st, fi, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Fatalf("left behind: %v", left)
	}
	if _, _, err := db.BackupFile(ctx, path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("backup over a file: %v", err)
	}
	b, err := storage.Open(path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var total uint64
	all, err := b.ListChannels(ctx)
	if err != nil || len(all) != st.Channels {
		t.Fatalf("%d channels: %v", len(all), err)
	}
	for _, c := range all {
		ch := c.ID
		es, err := b.Entries(ctx, ch, channels.EntryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(es); !slices.Equal(got, seq(1, c.LastEntryID)) {
			t.Fatalf("channel %d: last entry_id %d, entries %v", ch, c.LastEntryID, got)
		}
		total += uint64(len(es))
	}
	if st.Entries != total {
		t.Fatalf("stats %+v, entries %d", st, total)
	}
	rep, err := b.Check(ctx)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check of the backup: %+v %v", rep, err)
	}
}
