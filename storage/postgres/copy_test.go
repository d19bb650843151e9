package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/dbcopytest"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage/dbcopy"
)

// bbolt -> PostgreSQL -> bbolt gives what there was, IDs, times and
// counters included, and each copy numbers on where the original would.
func TestCopy_BoltPostgresBolt(t *testing.T) {
	ctx := context.Background()
	src := dbcopytest.OpenBolt(t)
	dbcopytest.Fill(t, src)
	pg := openTest(t, pgtest.New(t), Options{})
	res, err := dbcopy.Copy(ctx, src, pg, dbcopy.Options{BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := (dbcopy.Result{Channels: 3, Devices: 2, Bindings: 2, Entries: 8, Account: true, Rules: 3}); *res != want {
		t.Fatalf("result %+v, want %+v", *res, want)
	}
	dbcopytest.MustSame(t, src, pg)

	back := dbcopytest.OpenBolt(t)
	if _, err := dbcopy.Copy(ctx, pg, back, dbcopy.Options{BatchSize: 3}); err != nil {
		t.Fatal(err)
	}
	dbcopytest.MustSame(t, src, back)
	dbcopytest.MustSame(t, pg, back)

	// Copied again into a PostgreSQL database that holds something.
	pg2 := openTest(t, pgtest.New(t), Options{})
	mustCreateChannel(t, pg2, "in the way")
	if _, err := dbcopy.Copy(ctx, back, pg2, dbcopy.Options{}); !errors.Is(err, dbcopy.ErrNotEmpty) {
		t.Fatalf("copy into a non-empty database: %v", err)
	}
	if _, err := dbcopy.Copy(ctx, back, pg2, dbcopy.Options{Replace: true}); err != nil {
		t.Fatal(err)
	}
	dbcopytest.MustSame(t, src, pg2)

	// The PostgreSQL copy numbers on as the original would.
	dbcopytest.MustNumberOn(t, pg)
}

func TestLoad_Refusals(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	dbcopytest.Fill(t, db)
	c, err := db.FindChannel(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.LoadChannel(ctx, c), channels.ECONFLICT)
	c.ID = 0
	wantCode(t, db.LoadChannel(ctx, c), channels.EINVALID)
	e := channels.Entry{ChannelID: 3, ID: 15, CreatedAt: dbcopytest.Base}
	e.SetValue(0, "1")
	wantCode(t, db.LoadEntries(ctx, 3, []channels.Entry{e}), channels.ECONFLICT)
	e.ID = 21
	wantCode(t, db.LoadEntries(ctx, 9, []channels.Entry{e}), channels.EINVALID)
	e.ChannelID = 9
	wantCode(t, db.LoadEntries(ctx, 9, []channels.Entry{e}), channels.ENOTFOUND)
	e.ChannelID = 3
	e2 := e
	wantCode(t, db.LoadEntries(ctx, 3, []channels.Entry{e, e2}), channels.ECONFLICT)
	if got, _ := db.EntriesAfter(ctx, 3, 15, 10); len(got) != 0 {
		t.Fatalf("a refused batch left %+v", got)
	}
	e.ID = 1 << 60
	wantCode(t, db.LoadEntries(ctx, 3, []channels.Entry{e}), channels.EINVALID)
	d, _ := db.FindDevice(ctx, 1)
	d.ID = 7
	wantCode(t, db.LoadDevice(ctx, d), channels.ECONFLICT)
	d.Username, d.Channels = "fresh", []auth.Grant{{ChannelID: 2, Publish: true}}
	if err := db.LoadDevice(ctx, d); !errors.Is(err, channels.ErrChannelNotFound) {
		t.Fatalf("load of a grant to a missing channel: %v", err)
	}
	d.Channels, d.ID = nil, 1
	wantCode(t, db.LoadDevice(ctx, d), channels.ECONFLICT)
	bs, _ := db.Bindings(ctx)
	wantCode(t, db.LoadBinding(ctx, &bs[0]), channels.ECONFLICT)
	bs[0].ID, bs[0].ChannelID = 50, 2
	wantCode(t, db.LoadBinding(ctx, &bs[0]), channels.ENOTFOUND)
	if err := db.RaiseLastEntryID(ctx, 3, 5); err != nil {
		t.Fatal(err)
	}
	if c, _ := db.FindChannel(ctx, 3); c.LastEntryID != 20 {
		t.Fatalf("a lower last entry_id lowered it to %d", c.LastEntryID)
	}
	wantCode(t, db.RaiseLastEntryID(ctx, 2, 5), channels.ENOTFOUND)
}

// An account stamp with nanoseconds, which bbolt keeps, is copied to
// PostgreSQL rounded up to its microsecond and verifies as the same
// account, both ways.
func TestCopy_AccountStampNanoseconds(t *testing.T) {
	ctx := context.Background()
	src := dbcopytest.OpenBolt(t)
	stamp := time.Date(2026, 12, 6, 7, 0, 0, 123456789, time.UTC)
	if err := src.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000001", PasswordHash: "$argon2id$x", PasswordChangedAt: stamp}); err != nil {
		t.Fatal(err)
	}
	pg := openTest(t, pgtest.New(t), Options{})
	if _, err := dbcopy.Copy(ctx, src, pg, dbcopy.Options{}); err != nil {
		t.Fatal(err)
	}
	dbcopytest.MustSame(t, src, pg)
	back := dbcopytest.OpenBolt(t)
	if _, err := dbcopy.Copy(ctx, pg, back, dbcopy.Options{}); err != nil {
		t.Fatal(err)
	}
	dbcopytest.MustSame(t, src, back)
	if a, _ := back.Account(ctx); !a.PasswordChangedAt.Equal(stamp.Truncate(time.Microsecond).Add(time.Microsecond)) {
		t.Fatalf("stamp after the round trip: %v", a.PasswordChangedAt)
	}
}
