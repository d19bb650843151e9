package postgres

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
)

func newChannel(name string) *channels.Channel {
	return &channels.Channel{Name: name, Fields: channels.DefaultFields(), WriteKey: "WRITEKEY00000001", ReadKey: "READKEY000000001"}
}

func mustCreateChannel(t *testing.T, db *DB, name string) *channels.Channel {
	t.Helper()
	c := newChannel(name)
	if err := db.CreateChannel(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustCreateDevice(t *testing.T, db *DB, name string, grants ...auth.Grant) *auth.Device {
	t.Helper()
	d := &auth.Device{Name: name, ClientID: name, Username: name, PasswordHash: "hash-" + name, Channels: grants}
	if err := db.CreateDevice(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return d
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if channels.ErrorCode(err) != code {
		t.Fatalf("error %v (code %s), want code %s", err, channels.ErrorCode(err), code)
	}
}

func TestChannels_CreateFindListUpdateDelete(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	if list, err := db.ListChannels(ctx); err != nil || len(list) != 0 {
		t.Fatalf("new database: %v, %v", list, err)
	}
	before := time.Now().Add(-time.Minute)
	c := &channels.Channel{
		Name: "weather", Description: "roof\nnorth", Public: true,
		Fields:   [channels.NumFields]string{"Temperature", "", "Wind ✓"},
		WriteKey: "WRITEKEY0000000W", ReadKey: "READKEY00000000W",
		RateLimit: 15 * time.Second, MaxEntries: 1000, MaxAge: 72 * time.Hour,
		Latitude: "52.5163", Longitude: "-13.3777", Elevation: "34.5",
		Metadata: `{"a":1}`, Tags: []string{"outdoor", "ünïcode"}, URL: "https://example.com/s",
		ID: 99, LastEntryID: 7, // ignored
	}
	if err := db.CreateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.ID != 1 || c.LastEntryID != 0 || c.CreatedAt.Before(before) || !c.CreatedAt.Equal(c.UpdatedAt) || c.CreatedAt.Location() != time.UTC {
		t.Fatalf("created %+v", c)
	}
	got, err := db.FindChannel(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflectEqual(got, c) {
		t.Fatalf("found %+v\nwant  %+v", got, c)
	}
	c2 := mustCreateChannel(t, db, "second")
	if c2.ID != 2 || c2.Tags != nil {
		t.Fatalf("second: %+v", c2)
	}
	if got, _ := db.FindChannel(ctx, 2); got.Tags != nil {
		t.Fatalf("no tags read back as %#v", got.Tags)
	}

	// Invalid settings are refused before anything is written.
	bad := newChannel("")
	wantCode(t, db.CreateChannel(ctx, bad), channels.EINVALID)
	bad = newChannel("x")
	bad.WriteKey = "short"
	wantCode(t, db.CreateChannel(ctx, bad), channels.EINVALID)

	// Update keeps CreatedAt, moves UpdatedAt and never the feed.
	upd := *c
	upd.Name, upd.Tags, upd.Public = "renamed", nil, false
	upd.CreatedAt = time.Time{}
	if err := db.UpdateChannel(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if !upd.CreatedAt.Equal(c.CreatedAt) || upd.UpdatedAt.Before(c.UpdatedAt) {
		t.Fatalf("updated times %v %v, created %v", upd.CreatedAt, upd.UpdatedAt, c.CreatedAt)
	}
	if got, _ := db.FindChannel(ctx, 1); got.Name != "renamed" || got.Tags != nil || got.Public {
		t.Fatalf("after update: %+v", got)
	}
	missing := newChannel("m")
	missing.ID = 42
	wantCode(t, db.UpdateChannel(ctx, missing), channels.ENOTFOUND)
	wantCode(t, db.UpdateChannel(ctx, &channels.Channel{ID: 1}), channels.EINVALID)

	list, err := db.ListChannels(ctx)
	if err != nil || len(list) != 2 || list[0].ID != 1 || list[1].ID != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	if _, err := db.FindChannel(ctx, 3); !errors.Is(err, channels.ErrChannelNotFound) {
		t.Fatalf("find missing: %v", err)
	}
	if _, err := db.FindChannel(ctx, 1<<64-1); !errors.Is(err, channels.ErrChannelNotFound) {
		t.Fatalf("find beyond bigint: %v", err)
	}

	// Delete; IDs are not reused.
	if err := db.DeleteChannel(ctx, 2); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.DeleteChannel(ctx, 2), channels.ENOTFOUND)
	if c3 := mustCreateChannel(t, db, "third"); c3.ID != 3 {
		t.Fatalf("after a delete: ID %d", c3.ID)
	}
}

// reflectEqual compares channels, times by Equal.
func reflectEqual(a, b *channels.Channel) bool {
	x, y := *a, *b
	if !x.CreatedAt.Equal(y.CreatedAt) || !x.UpdatedAt.Equal(y.UpdatedAt) {
		return false
	}
	x.CreatedAt, x.UpdatedAt, y.CreatedAt, y.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

// Deleting a channel deletes its feed, its bindings and every grant to
// it, and the devices that had one say so.
func TestChannels_DeleteCascades(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	c1, c2 := mustCreateChannel(t, db, "a"), mustCreateChannel(t, db, "b")
	d := mustCreateDevice(t, db, "dev", auth.Grant{ChannelID: c2.ID, Publish: true}, auth.Grant{ChannelID: c1.ID, Subscribe: true})
	other := mustCreateDevice(t, db, "other", auth.Grant{ChannelID: c2.ID, Publish: true})
	e := channels.Entry{ChannelID: c1.ID, ID: 1, CreatedAt: time.Unix(1700000000, 0).UTC()}
	e.SetValue(0, "1")
	if err := db.LoadEntries(ctx, c1.ID, []channels.Entry{e}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*channels.Binding{{ChannelID: c1.ID, Topic: "a/#", Fields: [8]string{"$"}}, {ChannelID: c2.ID, Topic: "b/#", Fields: [8]string{"$"}}} {
		if err := db.CreateBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.DeleteChannel(ctx, c1.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := db.FindDevice(ctx, d.ID)
	if len(got.Channels) != 1 || got.Channels[0].ChannelID != c2.ID {
		t.Fatalf("grants after the delete: %+v", got.Channels)
	}
	if got, _ := db.FindDevice(ctx, other.ID); len(got.Channels) != 1 {
		t.Fatalf("another device lost its grant: %+v", got.Channels)
	}
	if bs, _ := db.Bindings(ctx); len(bs) != 1 || bs[0].ChannelID != c2.ID {
		t.Fatalf("bindings after the delete: %+v", bs)
	}
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM entries WHERE channel_id = $1", int64(c1.ID)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("entries left: %d, %v", n, err)
	}
	if _, err := db.EntriesAfter(ctx, c1.ID, 0, 10); !errors.Is(err, channels.ErrChannelNotFound) {
		t.Fatalf("entries of the deleted channel: %v", err)
	}
}

func TestDevices_CreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	c1, c2 := mustCreateChannel(t, db, "a"), mustCreateChannel(t, db, "b")
	d := &auth.Device{Name: "sensor", Description: "cellar", ClientID: "SENSOR", Username: "SENSOR", PasswordHash: "h1",
		Channels: []auth.Grant{{ChannelID: c2.ID, Publish: true}, {ChannelID: c1.ID, Publish: true, Subscribe: true}},
		Rules:    []auth.Rule{{Access: auth.AccessRead, Pattern: "a/#"}, {Access: auth.AccessDeny, Pattern: "a/b"}}}
	if err := db.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if d.ID != 1 || d.CreatedAt.IsZero() || !d.CreatedAt.Equal(d.UpdatedAt) {
		t.Fatalf("created %+v", d)
	}
	got, err := db.FindDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != d.Name || got.Description != d.Description || got.PasswordHash != "h1" ||
		!slices.Equal(got.Channels, d.Channels) || !slices.Equal(got.Rules, d.Rules) || !got.CreatedAt.Equal(d.CreatedAt) {
		t.Fatalf("found %+v\nwant  %+v", got, d)
	}
	// Conflicts and missing channels.
	dup := &auth.Device{Name: "x", ClientID: "SENSOR", Username: "SENSOR", PasswordHash: "h"}
	wantCode(t, db.CreateDevice(ctx, dup), channels.ECONFLICT)
	wantCode(t, db.CreateDevice(ctx, &auth.Device{Name: "x"}), channels.EINVALID)
	noChan := &auth.Device{Name: "y", ClientID: "y", Username: "y", PasswordHash: "h", Channels: []auth.Grant{{ChannelID: 9, Publish: true}}}
	if err := db.CreateDevice(ctx, noChan); !errors.Is(err, channels.ErrChannelNotFound) || !strings.Contains(err.Error(), "channel 9") {
		t.Fatalf("grant to a missing channel: %v", err)
	}
	twice := &auth.Device{Name: "z", ClientID: "z", Username: "z", PasswordHash: "h", Channels: []auth.Grant{{ChannelID: 1}, {ChannelID: 1}}}
	wantCode(t, db.CreateDevice(ctx, twice), channels.EINVALID)
	if list, _ := db.ListDevices(ctx); len(list) != 1 {
		t.Fatalf("refused creates left devices: %+v", list)
	}
	d2 := mustCreateDevice(t, db, "second")

	// Update replaces grants and rules and keeps CreatedAt.
	upd := *got
	upd.Name, upd.Channels, upd.Rules, upd.CreatedAt = "renamed", []auth.Grant{{ChannelID: c1.ID, Subscribe: true}}, nil, time.Time{}
	if err := db.UpdateDevice(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	got, _ = db.FindDevice(ctx, d.ID)
	if got.Name != "renamed" || len(got.Channels) != 1 || got.Channels[0] != upd.Channels[0] || got.Rules != nil || !got.CreatedAt.Equal(d.CreatedAt) || got.UpdatedAt.Before(d.UpdatedAt) {
		t.Fatalf("after update: %+v", got)
	}
	upd.Username = "second"
	wantCode(t, db.UpdateDevice(ctx, &upd), channels.ECONFLICT)
	upd.ID = 77
	if err := db.UpdateDevice(ctx, &upd); !errors.Is(err, auth.ErrDeviceNotFound) {
		t.Fatalf("update of a missing device: %v", err)
	}
	// The username is free again once its device is gone.
	if err := db.DeleteDevice(ctx, d2.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.DeleteDevice(ctx, d2.ID), channels.ENOTFOUND)
	if _, err := db.FindDevice(ctx, d2.ID); !errors.Is(err, auth.ErrDeviceNotFound) {
		t.Fatalf("find deleted: %v", err)
	}
	if d3 := mustCreateDevice(t, db, "second"); d3.ID != 3 {
		t.Fatalf("recreated device ID %d", d3.ID)
	}
	list, err := db.ListDevices(ctx)
	if err != nil || len(list) != 2 || list[0].ID != 1 || list[1].ID != 3 {
		t.Fatalf("list: %+v, %v", list, err)
	}
}

func TestRules_SharedAndDevices(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	if a, e, err := db.SharedRules(ctx); err != nil || a != nil || e != nil {
		t.Fatalf("new database: %v %v %v", a, e, err)
	}
	d := mustCreateDevice(t, db, "dev")
	anon := []auth.Rule{{Access: auth.AccessRead, Pattern: "public/#"}, {Access: auth.AccessDeny, Pattern: "public/x"}}
	mine := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "home/#"}}
	changed, err := db.SetRules(ctx, auth.RulesChange{Anonymous: &anon, Devices: map[uint64][]auth.Rule{d.ID: mine}})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0].ID != d.ID || !slices.Equal(changed[0].Rules, mine) || !changed[0].UpdatedAt.After(d.UpdatedAt) && !changed[0].UpdatedAt.Equal(d.UpdatedAt) {
		t.Fatalf("changed: %+v", changed)
	}
	a, e, _ := db.SharedRules(ctx)
	if !slices.Equal(a, anon) || e != nil {
		t.Fatalf("shared: %v %v", a, e)
	}
	// Everyone's list alone; the anonymous list stays.
	every := []auth.Rule{{Access: auth.AccessWrite, Pattern: "in/%c"}}
	if _, err := db.SetRules(ctx, auth.RulesChange{Everyone: &every}); err != nil {
		t.Fatal(err)
	}
	if a, e, _ := db.SharedRules(ctx); !slices.Equal(a, anon) || !slices.Equal(e, every) {
		t.Fatalf("shared: %v %v", a, e)
	}
	// A missing device: nothing changes.
	none := []auth.Rule{}
	_, err = db.SetRules(ctx, auth.RulesChange{Anonymous: &none, Devices: map[uint64][]auth.Rule{d.ID: nil, 99: mine}})
	if !errors.Is(err, auth.ErrDeviceNotFound) {
		t.Fatalf("rules of a missing device: %v", err)
	}
	if a, _, _ := db.SharedRules(ctx); !slices.Equal(a, anon) {
		t.Fatalf("a refused change cleared the anonymous rules: %v", a)
	}
	if got, _ := db.FindDevice(ctx, d.ID); !slices.Equal(got.Rules, mine) {
		t.Fatalf("a refused change changed the device's rules: %v", got.Rules)
	}
	// Empty lists clear.
	if _, err := db.SetRules(ctx, auth.RulesChange{Anonymous: &none, Everyone: &none}); err != nil {
		t.Fatal(err)
	}
	if a, e, _ := db.SharedRules(ctx); a != nil || e != nil {
		t.Fatalf("cleared: %v %v", a, e)
	}
}

func TestAccount(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	if a, err := db.Account(ctx); err != nil || *a != (auth.Account{}) {
		t.Fatalf("new database: %+v, %v", a, err)
	}
	a := &auth.Account{UserAPIKey: "USERKEY000000001"}
	if err := db.PutAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Account(ctx); *got != *a {
		t.Fatalf("got %+v", got)
	}
	a = &auth.Account{UserAPIKey: "USERKEY000000002", PasswordHash: "$argon2id$x", PasswordChangedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
	if err := db.PutAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Account(ctx); *got != *a {
		t.Fatalf("got %+v, want %+v", got, a)
	}
	var rows int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM account").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("account rows: %d, %v", rows, err)
	}
}

func TestBindings(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	c := mustCreateChannel(t, db, "a")
	b1 := &channels.Binding{ChannelID: c.ID, Topic: "zigbee2mqtt/+", Fields: [8]string{"$.temperature", "", "$.a[0]"}, Status: "$.battery", Latitude: "$.lat", CreatedAt: "$.time"}
	if err := db.CreateBinding(ctx, b1); err != nil {
		t.Fatal(err)
	}
	if b1.ID != 1 || b1.Created.IsZero() || b1.Created.Nanosecond() != 0 {
		t.Fatalf("created %+v", b1)
	}
	wantCode(t, db.CreateBinding(ctx, &channels.Binding{ChannelID: 9, Topic: "x", Fields: [8]string{"$"}}), channels.ENOTFOUND)
	wantCode(t, db.CreateBinding(ctx, &channels.Binding{ChannelID: c.ID, Topic: "", Fields: [8]string{"$"}}), channels.EINVALID)
	b2 := &channels.Binding{ChannelID: c.ID, Topic: "y/#", Fields: [8]string{"$"}}
	if err := db.CreateBinding(ctx, b2); err != nil {
		t.Fatal(err)
	}
	list, err := db.Bindings(ctx)
	if err != nil || len(list) != 2 || list[0] != *b1 || list[1] != *b2 {
		t.Fatalf("list %+v, %v; want %+v %+v", list, err, b1, b2)
	}
	if err := db.DeleteBinding(ctx, b2.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.DeleteBinding(ctx, b2.ID), channels.ENOTFOUND)
	b3 := &channels.Binding{ChannelID: c.ID, Topic: "z", Fields: [8]string{"$"}}
	if err := db.CreateBinding(ctx, b3); err != nil || b3.ID <= b2.ID {
		t.Fatalf("after a delete: ID %d, %v", b3.ID, err)
	}
}

// listen returns the notifications of the config channel on a connection
// of the test's own.
func listen(t *testing.T, url string) func(n int) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		t.Fatal(err)
	}
	return func(n int) []string {
		t.Helper()
		var got []string
		for len(got) < n {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			note, err := conn.WaitForNotification(wctx)
			cancel()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			got = append(got, note.Payload)
		}
		return got
	}
}

// Every configuration write bumps the version once and announces what
// changed at commit; a refused write does neither.
func TestConfigVersionAndNotifications(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db := openTest(t, url, Options{})
	next := listen(t, url)
	version := func() uint64 {
		t.Helper()
		v, err := db.ConfigVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := version(); v != 0 {
		t.Fatalf("new database at version %d", v)
	}
	c := mustCreateChannel(t, db, "a")
	d := mustCreateDevice(t, db, "dev", auth.Grant{ChannelID: c.ID, Publish: true})
	wantCode(t, db.CreateDevice(ctx, &auth.Device{Name: "dev", ClientID: "dev", Username: "dev", PasswordHash: "h"}), channels.ECONFLICT)
	d.PasswordHash = "new"
	if err := db.UpdateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "K"}); err != nil {
		t.Fatal(err)
	}
	b := &channels.Binding{ChannelID: c.ID, Topic: "x", Fields: [8]string{"$"}}
	if err := db.CreateBinding(ctx, b); err != nil {
		t.Fatal(err)
	}
	r := []auth.Rule{{Access: auth.AccessRead, Pattern: "#"}}
	if _, err := db.SetRules(ctx, auth.RulesChange{Everyone: &r}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteDevice(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	c2 := mustCreateChannel(t, db, "b")
	if err := db.ClearChannel(ctx, c2.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.ClearChannel(ctx, 99), channels.ENOTFOUND)
	want := []string{
		`{"v":1,"k":"channel","id":1}`,
		`{"v":2,"k":"device","id":1}`,
		`{"v":3,"k":"device","id":1,"rev":true}`,
		`{"v":4,"k":"account"}`,
		`{"v":5,"k":"bindings"}`,
		`{"v":6,"k":"rules"}`,
		`{"v":7,"k":"channel","id":1,"del":true}`, `{"v":7,"k":"device","id":1}`, `{"v":7,"k":"bindings"}`,
		`{"v":8,"k":"device","id":1,"del":true,"rev":true}`,
		`{"v":9,"k":"channel","id":2}`,
		`{"v":10,"k":"cleared","id":2}`,
	}
	if got := next(len(want)); !slices.Equal(got, want) {
		t.Fatalf("notifications\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v := version(); v != 10 {
		t.Fatalf("version %d, want 10", v)
	}
	for _, p := range want {
		c, err := decodeNotice(p)
		if err != nil || encodeNotice(c) != p {
			t.Fatalf("%s decodes to %+v (%v), encodes to %s", p, c, err, encodeNotice(c))
		}
	}
	if c, err := decodeNotice(`{"v":9,"k":"from the future"}`); err != nil || c.Kind != channels.ChangeResync || c.Version != 9 {
		t.Fatalf("unknown kind: %+v, %v", c, err)
	}
	if _, err := decodeNotice(`{`); err == nil {
		t.Fatal("a broken payload decoded")
	}
}

// Atomically: writes inside join one transaction (all or none), reads
// inside see them, and calls from two handles are serialised, so a limit
// checked inside holds.
func TestAtomically(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db := openTest(t, url, Options{})
	boom := errors.New("boom")
	err := db.Atomically(ctx, func(ctx context.Context) error {
		c := newChannel("inside")
		if err := db.CreateChannel(ctx, c); err != nil {
			return err
		}
		if got, err := db.FindChannel(ctx, c.ID); err != nil || got.Name != "inside" {
			t.Errorf("read inside: %v, %v", got, err)
		}
		// A refused write inside leaves the others in place.
		wantCode(t, db.CreateDevice(ctx, &auth.Device{Name: "d", ClientID: "d", Username: "d", Channels: []auth.Grant{{ChannelID: 42}}}), channels.ENOTFOUND)
		if err := db.CreateDevice(ctx, &auth.Device{Name: "d", ClientID: "d", Username: "d", Channels: []auth.Grant{{ChannelID: c.ID}}}); err != nil {
			return err
		}
		if list, _ := db.ListDevices(ctx); len(list) != 1 {
			t.Errorf("devices inside: %+v", list)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Atomically: %v", err)
	}
	if list, _ := db.ListChannels(ctx); len(list) != 0 {
		t.Fatalf("a failed Atomically kept %+v", list)
	}
	if v, _ := db.ConfigVersion(ctx); v != 0 {
		t.Fatalf("a failed Atomically moved the version to %d", v)
	}

	// Two processes each create a device unless there is one already.
	db2 := openTest(t, url, Options{})
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		h := db
		if i%2 == 1 {
			h = db2
		}
		wg.Go(func() {
			errs[i] = h.Atomically(ctx, func(ctx context.Context) error {
				list, err := h.ListDevices(ctx)
				if err != nil {
					return err
				}
				if len(list) > 0 {
					return channels.Errorf(channels.ECONFLICT, "limit reached")
				}
				time.Sleep(10 * time.Millisecond) // widen the window a race would need
				n := "dev" + string(rune('a'+i))
				return h.CreateDevice(ctx, &auth.Device{Name: n, ClientID: n, Username: n, PasswordHash: "h"})
			})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if channels.ErrorCode(err) != channels.ECONFLICT {
			t.Fatal(err)
		}
	}
	if list, _ := db.ListDevices(ctx); ok != 1 || len(list) != 1 {
		t.Fatalf("%d calls passed the limit, %d devices", ok, len(list))
	}
	// Nested calls join the outer one.
	err = db.Atomically(ctx, func(ctx context.Context) error {
		return db.Atomically(ctx, func(ctx context.Context) error {
			return db.CreateChannel(ctx, newChannel("nested"))
		})
	})
	if list, _ := db.ListChannels(ctx); err != nil || len(list) != 1 {
		t.Fatalf("nested: %v, %+v", err, list)
	}
}

// Changes hears every process's committed changes, in order, and closes
// when its context ends.
func TestChanges(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db, other := openTest(t, url, Options{}), openTest(t, url, Options{})
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	ch, err := db.Changes(lctx)
	if err != nil {
		t.Fatal(err)
	}
	c := mustCreateChannel(t, other, "a")
	_ = db.Atomically(ctx, func(ctx context.Context) error {
		_ = db.DeleteChannel(ctx, c.ID)
		return errors.New("rolled back") // never announced
	})
	if err := other.DeleteChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	want := []channels.Change{{Version: 1, Kind: channels.ChangeChannel, ID: 1}, {Version: 2, Kind: channels.ChangeChannel, ID: 1, Deleted: true}}
	for i, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("change %d: %+v, want %+v", i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("change %d did not come", i)
		}
	}
	stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, open := <-ch:
			if !open {
				return
			}
		case <-deadline:
			t.Fatal("the channel stayed open after its context ended")
		}
	}
}

// A receiver that does not keep up gets ChangeResync, never a block.
func TestChanges_SlowReceiverResyncs(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db := openTest(t, url, Options{})
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	ch, err := db.Changes(lctx)
	if err != nil {
		t.Fatal(err)
	}
	dropped := changesDropped.Load()
	for range changesBuffer + 5 {
		if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "K"}); err != nil {
			t.Fatal(err)
		}
	}
	// Read nothing until the listener has had to drop a change.
	for deadline := time.Now().Add(20 * time.Second); changesDropped.Load() == dropped; {
		if time.Now().After(deadline) {
			t.Fatal("the listener never found its buffer full")
		}
		time.Sleep(time.Millisecond)
	}
	v, _ := db.ConfigVersion(ctx)
	deadline := time.After(20 * time.Second)
	for seen := 0; ; seen++ {
		select {
		case c := <-ch:
			if c.Kind == channels.ChangeResync {
				if seen != changesBuffer {
					t.Fatalf("resync after %d changes, want %d", seen, changesBuffer)
				}
				if cur, _ := db.ConfigVersion(ctx); cur != v {
					t.Fatalf("version moved to %d", cur)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no resync after %d changes", seen)
		}
	}
}

// The bbolt store's error cases, against this one.
func TestConfig_ErrorsAsBbolt(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	wantCode(t, db.CreateChannel(ctx, &channels.Channel{}), channels.EINVALID)
	wantCode(t, db.DeleteChannel(ctx, 9), channels.ENOTFOUND)
	if list, err := db.ListChannels(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListChannels = %v, %v", list, err)
	}
	a := mustCreateDevice(t, db, "a")
	mustCreateDevice(t, db, "b")
	wantCode(t, db.CreateDevice(ctx, &auth.Device{}), channels.EINVALID)
	// A stale ID on a new device must not let it take that device's name.
	wantCode(t, db.CreateDevice(ctx, &auth.Device{ID: a.ID, Username: "a"}), channels.ECONFLICT)
	c := mustCreateChannel(t, db, "x")
	a.Username = "b"
	wantCode(t, db.UpdateDevice(ctx, a), channels.ECONFLICT)
	a.Username = "a"
	a.Channels = []auth.Grant{{ChannelID: c.ID, Publish: true}, {ChannelID: c.ID, Subscribe: true}}
	wantCode(t, db.UpdateDevice(ctx, a), channels.EINVALID)
	a.Channels = []auth.Grant{{ChannelID: c.ID + 1, Publish: true}}
	wantCode(t, db.UpdateDevice(ctx, a), channels.ENOTFOUND)
	if got, _ := db.FindDevice(ctx, a.ID); got.Username != "a" || len(got.Channels) != 0 || !got.UpdatedAt.Equal(a.UpdatedAt) {
		t.Fatalf("device after failed updates = %+v", got)
	}
	// An update keeps the feed and reports its last entry_id.
	e := channels.Entry{ChannelID: c.ID, ID: 1, CreatedAt: time.Unix(1700000000, 0)}
	e.SetValue(0, "1")
	if err := db.LoadEntries(ctx, c.ID, []channels.Entry{e}); err != nil {
		t.Fatal(err)
	}
	c.LastEntryID = 0
	if err := db.UpdateChannel(ctx, c); err != nil || c.LastEntryID != 1 {
		t.Fatalf("update: LastEntryID %d, %v", c.LastEntryID, err)
	}
	if got, _ := db.EntriesAfter(ctx, c.ID, 0, 10); len(got) != 1 {
		t.Fatalf("entries after an update: %+v", got)
	}
	// Bindings the domain refuses are refused before the database.
	for _, b := range []*channels.Binding{
		{ChannelID: c.ID, Topic: "channels/1/publish", Fields: [8]string{"$"}},
		{ChannelID: c.ID, Topic: "a"},
		{ChannelID: c.ID, Topic: "a", Fields: [8]string{"$..x"}},
	} {
		wantCode(t, db.CreateBinding(ctx, b), channels.EINVALID)
	}
	if list, _ := db.Bindings(ctx); len(list) != 0 {
		t.Fatalf("refused bindings stored: %+v", list)
	}
}
