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
