package dbcopy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/dbcopytest"
	"github.com/feedmq/feedmq/storage/dbcopy"
)

func TestCopy_BoltToBolt(t *testing.T) {
	ctx := context.Background()
	src, dst := dbcopytest.OpenBolt(t), dbcopytest.OpenBolt(t)
	dbcopytest.Fill(t, src)
	res, err := dbcopy.Copy(ctx, src, dst, dbcopy.Options{BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := dbcopy.Result{Channels: 3, Devices: 2, Bindings: 2, Entries: 8, Account: true, Rules: 3}
	if *res != want {
		t.Fatalf("result %+v, want %+v", *res, want)
	}
	dbcopytest.MustSame(t, src, dst)

	// The copy numbers on where the original would have.
	dbcopytest.MustNumberOn(t, dst)
	// Diff sees a difference.
	if diffs, err := dbcopy.Diff(ctx, src, dst, 0); err != nil || len(diffs) == 0 {
		t.Fatalf("diff after writes to the copy: %v, %v", diffs, err)
	}
}

func TestCopy_RefusesNonEmptyUnlessReplace(t *testing.T) {
	ctx := context.Background()
	src, dst := dbcopytest.OpenBolt(t), dbcopytest.OpenBolt(t)
	dbcopytest.Fill(t, src)
	other := &channels.Channel{Name: "other", Fields: channels.DefaultFields(), WriteKey: "WRITEKEY0000000O", ReadKey: "READKEY00000000O"}
	if err := dst.CreateChannel(ctx, other); err != nil {
		t.Fatal(err)
	}
	e := &channels.Entry{ChannelID: other.ID}
	e.SetValue(0, "1")
	if err := dst.AppendEntry(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := dbcopy.Copy(ctx, src, dst, dbcopy.Options{}); !errors.Is(err, dbcopy.ErrNotEmpty) {
		t.Fatalf("copy into a non-empty database: %v", err)
	}
	if list, _ := dst.ListChannels(ctx); len(list) != 1 || list[0].Name != "other" {
		t.Fatalf("the refused copy changed the destination: %+v", list)
	}
	// Shared rules alone make a database non-empty too.
	rulesOnly := dbcopytest.OpenBolt(t)
	r := []auth.Rule{{Access: auth.AccessRead, Pattern: "a/#"}}
	if _, err := rulesOnly.SetRules(ctx, auth.RulesChange{Anonymous: &r}); err != nil {
		t.Fatal(err)
	}
	if _, err := dbcopy.Copy(ctx, src, rulesOnly, dbcopy.Options{}); !errors.Is(err, dbcopy.ErrNotEmpty) {
		t.Fatalf("copy into a database with rules: %v", err)
	}
	// Replace empties it first; copying twice gives the same.
	for range 2 {
		if _, err := dbcopy.Copy(ctx, src, dst, dbcopy.Options{Replace: true, BatchSize: 3}); err != nil {
			t.Fatal(err)
		}
		dbcopytest.MustSame(t, src, dst)
	}
}

func TestLoad_Refusals(t *testing.T) {
	ctx := context.Background()
	db := dbcopytest.OpenBolt(t)
	dbcopytest.Fill(t, db)
	c, err := db.FindChannel(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.LoadChannel(ctx, c); channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("load over channel 1: %v", err)
	}
	c.ID = 0
	if err := db.LoadChannel(ctx, c); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("load without ID: %v", err)
	}
	e := channels.Entry{ChannelID: 3, ID: 15, CreatedAt: dbcopytest.Base}
	e.SetValue(0, "1")
	if err := db.LoadEntries(ctx, 3, []channels.Entry{e}); channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("load of an entry below the last entry_id: %v", err)
	}
	e.ID = 21
	if err := db.LoadEntries(ctx, 9, []channels.Entry{e}); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("load for another channel: %v", err)
	}
	e.ChannelID = 9
	if err := db.LoadEntries(ctx, 9, []channels.Entry{e}); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Fatalf("load into a missing channel: %v", err)
	}
	// A batch that fails halfway stores nothing.
	e.ChannelID = 3
	e2 := e
	e2.ID = 21
	if err := db.LoadEntries(ctx, 3, []channels.Entry{e, e2}); channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("load of repeated IDs: %v", err)
	}
	if got, _ := db.EntriesAfter(ctx, 3, 15, 10); len(got) != 0 {
		t.Fatalf("a refused batch left %+v", got)
	}
	d, _ := db.FindDevice(ctx, 1)
	d.ID = 7
	if err := db.LoadDevice(ctx, d); channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("load of a taken username: %v", err)
	}
	d.Username, d.Channels = "fresh", []auth.Grant{{ChannelID: 2, Publish: true}}
	if err := db.LoadDevice(ctx, d); !errors.Is(err, channels.ErrChannelNotFound) {
		t.Fatalf("load of a grant to a missing channel: %v", err)
	}
	bs, _ := db.Bindings(ctx)
	if err := db.LoadBinding(ctx, &bs[0]); channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("load over binding 1: %v", err)
	}
	if err := db.RaiseLastEntryID(ctx, 3, 5); err != nil {
		t.Fatal(err)
	}
	if c, _ := db.FindChannel(ctx, 3); c.LastEntryID != 20 {
		t.Fatalf("a lower last entry_id lowered it to %d", c.LastEntryID)
	}
}

// Diff names what differs without showing keys or password hashes.
func TestDiff_NamesFieldsNotSecrets(t *testing.T) {
	ctx := context.Background()
	a, b := dbcopytest.OpenBolt(t), dbcopytest.OpenBolt(t)
	dbcopytest.Fill(t, a)
	if _, err := dbcopy.Copy(ctx, a, b, dbcopy.Options{}); err != nil {
		t.Fatal(err)
	}
	c, _ := b.FindChannel(ctx, 1)
	c.WriteKey, c.Name = "WRITEKEY0000000X", "other"
	if err := b.UpdateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	d, _ := b.FindDevice(ctx, 1)
	d.PasswordHash = "changed-hash"
	if err := b.UpdateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	diffs, err := dbcopy.Diff(ctx, a, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(diffs, "\n")
	for _, want := range []string{"channel 1: Name, WriteKey, UpdatedAt differ", "device 1: PasswordHash, UpdatedAt differ"} {
		if !strings.Contains(all, want) {
			t.Errorf("diffs lack %q:\n%s", want, all)
		}
	}
	for _, secret := range []string{"WRITEKEY", "READKEY", "changed-hash", "argon2"} {
		if strings.Contains(all, secret) {
			t.Errorf("diffs show %q:\n%s", secret, all)
		}
	}
}
