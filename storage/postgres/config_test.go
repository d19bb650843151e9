package postgres

import (
	"context"
	"errors"
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

// Deleting a channel deletes its feed, its bindings and every grant to
// it, and the devices that had one say so; no row of its feed is left in
// the table. (storetest's suite checks what readers see, on every store.)
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

// Replacing the account keeps its one row. (storetest's suite checks
// what Account reads back, on every store.)
func TestAccount_OneRow(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	for _, key := range []string{"USERKEY000000001", "USERKEY000000002"} {
		if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: key}); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM account").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("account rows: %d, %v", rows, err)
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
