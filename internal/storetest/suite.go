package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Store is every interface both feedmq stores (bbolt and PostgreSQL)
// implement and the rest of feedmq uses: the channels and their feeds,
// batch and queued appends, counts, the keyed reads of the HTTP API,
// devices, access rules, the owner account, bindings and retention.
type Store interface {
	channels.Store
	channels.BatchAppender
	channels.AsyncAppender
	channels.OrderedAppender
	channels.OrderedBatchAppender
	channels.EntryCounter
	channels.BindingStore
	auth.Store
	auth.RuleStore
	auth.AccountStore
	// EntryKeys and EntriesByKey are the reads in created_at order the
	// HTTP API pages through (its TimePager).
	EntryKeys(ctx context.Context, channelID uint64, f channels.EntryFilter) (channels.EntryKeys, error)
	EntriesByKey(ctx context.Context, channelID, version uint64, keys []channels.EntryKey, page []channels.Entry) ([]channels.Entry, error)
	// ImportEntries stores entries brought in from elsewhere, all or
	// none, keeping their IDs or numbering on (admin.Maintenance).
	ImportEntries(ctx context.Context, channelID uint64, es []channels.Entry, keepIDs bool) error
	// Prune applies every channel's retention as of now and returns how
	// many entries it deleted.
	Prune(ctx context.Context, now time.Time) (int, error)
}

// Suite describes a store to Run.
type Suite struct {
	// Open returns a new, empty store, closed when t ends, that stamps
	// times by now (nil: its own clock). Run calls it once per subtest,
	// from parallel subtests.
	Open func(t *testing.T, now func() time.Time) Store
	// MaxBatch is the most entries one AppendEntries takes.
	MaxBatch int
	// MaxKeys is the most keys one EntryKeys hands out.
	MaxKeys int
	// MaxImportedID is the largest entry_id an import keeps.
	MaxImportedID uint64

	// The differences between the stores that are deliberate:

	// EnforcesRateLimit: the store refuses an append that comes sooner
	// than its channel's rate limit after the previous one (ERATELIMIT),
	// because several servers write through it and only the database
	// sees all their appends. A store one process owns leaves the check
	// to its callers, which hold every append in one place.
	EnforcesRateLimit bool
	// TextOnly: the store refuses values that are not UTF-8 text or
	// that hold a NUL byte (EINVALID), as PostgreSQL text holds neither;
	// otherwise values are kept byte for byte. The payload parsers
	// refuse both before any store sees them.
	TextOnly bool
	// Resolution is the precision the store keeps the account's
	// PasswordChangedAt and a channel's RateLimit and MaxAge to (0:
	// exact). A coarser store rounds them up, never down, so that a
	// session signed in before a password change cannot look as if it
	// came after, and a limit never becomes none.
	Resolution time.Duration
	// MaxEntriesCap is the largest MaxEntries the store keeps (0: any);
	// a larger one reads back as it. No feed holds 2^63 entries, so such
	// a channel keeps its entries alike in every store.
	MaxEntriesCap uint64
}

// Run runs the conformance suite against s: every behaviour of Store that
// callers rely on, whichever store they hold. Each subtest gets a store
// of its own.
func Run(t *testing.T, s Suite) {
	tests := []struct {
		name string
		fn   func(*testing.T, Suite, Store)
	}{
		{"Channels/CRUD", testChannelCRUD},
		{"Channels/Errors", testChannelErrors},
		{"Channels/SettingsRoundTrip", testChannelSettings},
		{"Channels/LimitsPrecision", testChannelLimitsPrecision},
		{"Channels/UpdateKeepsFeed", testChannelUpdateKeepsFeed},
		{"Channels/DeleteCascades", testChannelDeleteCascades},
		{"Channels/Clear", testChannelClear},
		{"Entries/IDsAndTime", testAppendIDsAndTime},
		{"Entries/ValuesVerbatim", testValuesVerbatim},
		{"Entries/Filter", testEntriesFilter},
		{"Entries/AfterIDBackDated", testAfterIDBackDated},
		{"Entries/Batch", testBatch},
		{"Entries/BatchRefusals", testBatchRefusals},
		{"Entries/Async", testAsync},
		{"Entries/Ordered", testOrdered},
		{"Entries/MissingChannelInBatch", testMissingChannelInBatch},
		{"Entries/Contract", testContract},
		{"Entries/Count", testEntryCount},
		{"Entries/RateLimit", testRateLimit},
		{"Keyed/TimeOrder", testKeyedTimeOrder},
		{"Keyed/Refusals", testKeyedRefusals},
		{"Keyed/PrunedSince", testKeyedPrunedSince},
		{"Devices/CRUD", testDeviceCRUD},
		{"Devices/Errors", testDeviceErrors},
		{"Devices/DescriptionAndRules", testDeviceDescriptionAndRules},
		{"Devices/NonText", testDeviceNonText},
		{"Rules", testRules},
		{"Account", testAccount},
		{"Bindings/CRUD", testBindings},
		{"Bindings/Refusals", testBindingRefusals},
		{"Import/KeepIDs", testImportKeepIDs},
		{"Import/NumberOn", testImportNumberOn},
		{"Import/Refused", testImportRefused},
		{"Import/WithAppends", testImportWithAppends},
		{"CanceledContext", testCanceled},
		{"Retention/MaxEntries", testPruneMaxEntries},
		{"Retention/MaxEntriesAcrossImportedGaps", testPruneAcrossImportedGaps},
		{"Retention/MaxAge", testPruneMaxAge},
		{"Retention/Both", testPruneBoth},
	}
	t.Run("Clock", func(t *testing.T) {
		t.Parallel()
		testClock(t, s)
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, s, s.Open(t, nil))
		})
	}
}

// testClock checks that a store given a clock stamps every time it
// sets by it, as tests with fixed times rely on: creation and update of
// channels, devices (rules too) and bindings, and entries written without
// a time, singly, in batches and queued.
func testClock(t *testing.T, s Suite) {
	ctx := t.Context()
	clock := base.Add(123456 * time.Microsecond)
	now := func() time.Time { return clock }
	db := s.Open(t, now)
	at := func(what string, got, want time.Time) {
		t.Helper()
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("%s = %v, want the store's clock %v in UTC", what, got, want)
		}
	}
	c := mustChannel(t, db, "c")
	at("channel CreatedAt", c.CreatedAt, clock)
	at("channel UpdatedAt", c.UpdatedAt, clock)
	e := mustAppend(t, db, c.ID, time.Time{}, "v")
	at("entry CreatedAt", e.CreatedAt, base)
	batch := batchOf(c.ID, 2)
	if err := db.AppendEntries(ctx, batch); err != nil {
		t.Fatal(err)
	}
	at("batch entry CreatedAt", batch[1].CreatedAt, base)
	queued := make(chan *channels.Entry, 1)
	if err := db.AppendEntryAsync(ctx, &channels.Entry{ChannelID: c.ID, Set: 1}, func(e *channels.Entry, err error) {
		if err != nil {
			t.Error(err)
		}
		queued <- e
	}); err != nil {
		t.Fatal(err)
	}
	at("queued entry CreatedAt", (<-queued).CreatedAt, base)
	if got, _ := db.FindEntry(ctx, c.ID, e.ID); got == nil || !got.CreatedAt.Equal(base) {
		t.Fatalf("FindEntry = %+v", got)
	}
	d := mustDevice(t, db, "d")
	at("device CreatedAt", d.CreatedAt, clock)
	b := &channels.Binding{ChannelID: c.ID, Topic: "t", Fields: [8]string{"$"}}
	if err := db.CreateBinding(ctx, b); err != nil {
		t.Fatal(err)
	}
	at("binding Created", b.Created, base) // whole seconds

	clock = clock.Add(time.Hour)
	if err := db.UpdateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	at("channel UpdatedAt after an update", c.UpdatedAt, clock)
	if err := db.UpdateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	at("device UpdatedAt after an update", d.UpdatedAt, clock)
	clock = clock.Add(time.Hour)
	changed, err := db.SetRules(ctx, auth.RulesChange{Devices: map[uint64][]auth.Rule{d.ID: {{Access: auth.AccessRead, Pattern: "a"}}}})
	if err != nil || len(changed) != 1 {
		t.Fatalf("SetRules: %+v, %v", changed, err)
	}
	at("device UpdatedAt after SetRules", changed[0].UpdatedAt, clock)
	got, err := db.FindChannel(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	at("found channel CreatedAt", got.CreatedAt, base.Add(123456*time.Microsecond))
	at("found channel UpdatedAt", got.UpdatedAt, clock.Add(-time.Hour))
}

// base is the time entries written with a time of their own are dated
// around, whole seconds in UTC as stores keep them.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newChannel(name string) *channels.Channel {
	return &channels.Channel{Name: name, Fields: channels.DefaultFields(), WriteKey: "WRITEKEY00000001", ReadKey: "READKEY000000001"}
}

func mustChannel(t *testing.T, db Store, name string) *channels.Channel {
	t.Helper()
	c := newChannel(name)
	if err := db.CreateChannel(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustDevice(t *testing.T, db Store, name string, grants ...auth.Grant) *auth.Device {
	t.Helper()
	d := &auth.Device{Name: name, ClientID: name, Username: name, PasswordHash: "hash-" + name, Channels: grants}
	if err := db.CreateDevice(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	return d
}

// mustAppend stores an entry setting field1 to v, at time at (zero: the
// store's clock).
func mustAppend(t *testing.T, db Store, ch uint64, at time.Time, v string) *channels.Entry {
	t.Helper()
	e := &channels.Entry{ChannelID: ch, CreatedAt: at}
	e.SetValue(0, v)
	if err := db.AppendEntry(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	return e
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := channels.ErrorCode(err); got != code {
		t.Fatalf("%s: %v (code %q), want code %q", what, err, got, code)
	}
}

func feedIDs(t *testing.T, db Store, ch uint64, f channels.EntryFilter) []uint64 {
	t.Helper()
	es, err := db.Entries(t.Context(), ch, f)
	if err != nil {
		t.Fatal(err)
	}
	return entryIDs(es)
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// clockWindow returns a check that a time a store stamped with its own
// clock lies between the call of clockWindow and that of the check, give
// or take a second (the database's clock is another process's, and
// entries are stamped in whole seconds).
func clockWindow() func(t *testing.T, what string, got time.Time) {
	from := time.Now().Add(-time.Second)
	return func(t *testing.T, what string, got time.Time) {
		t.Helper()
		if to := time.Now().Add(time.Second); got.Before(from) || got.After(to) {
			t.Fatalf("%s = %v, want the store's clock, between %v and %v", what, got, from, to)
		}
		if got.Location() != time.UTC {
			t.Fatalf("%s = %v, want UTC", what, got)
		}
	}
}

// sameChannel compares channels, times by Equal.
func sameChannel(a, b *channels.Channel) bool {
	x, y := *a, *b
	if !x.CreatedAt.Equal(y.CreatedAt) || !x.UpdatedAt.Equal(y.UpdatedAt) {
		return false
	}
	x.CreatedAt, x.UpdatedAt, y.CreatedAt, y.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

// sameDevice compares devices, times by Equal.
func sameDevice(a, b *auth.Device) bool {
	x, y := *a, *b
	if !x.CreatedAt.Equal(y.CreatedAt) || !x.UpdatedAt.Equal(y.UpdatedAt) {
		return false
	}
	x.CreatedAt, x.UpdatedAt, y.CreatedAt, y.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

func testChannelCRUD(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	if list, err := db.ListChannels(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListChannels of a new store = %v, %v", list, err)
	}
	window := clockWindow()
	c := &channels.Channel{
		Name: "weather", Description: "roof\nnorth", Public: true,
		Fields:   [channels.NumFields]string{"Temperature", "", "Wind ✓"},
		WriteKey: "WRITEKEY0000000W", ReadKey: "READKEY00000000W",
		RateLimit: 15 * time.Second, MaxEntries: 1000, MaxAge: 72 * time.Hour,
		ID: 99, LastEntryID: 7, // the store assigns both
	}
	if err := db.CreateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.ID != 1 || c.LastEntryID != 0 || !c.CreatedAt.Equal(c.UpdatedAt) {
		t.Fatalf("created channel = %+v, want ID 1, LastEntryID 0, CreatedAt = UpdatedAt", c)
	}
	window(t, "CreatedAt", c.CreatedAt)
	if c2 := mustChannel(t, db, "second"); c2.ID != 2 {
		t.Fatalf("second channel ID = %d, want 2", c2.ID)
	}
	got, err := db.FindChannel(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !sameChannel(got, c) {
		t.Fatalf("FindChannel =\n%+v\nwant\n%+v", got, c)
	}

	// An update replaces the settings, keeps CreatedAt whatever it is
	// given, and moves UpdatedAt.
	upd := *got
	upd.Name, upd.Public, upd.CreatedAt = "renamed", false, time.Time{}
	if err := db.UpdateChannel(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if !upd.CreatedAt.Equal(c.CreatedAt) || upd.UpdatedAt.Before(c.UpdatedAt) {
		t.Fatalf("after update: CreatedAt %v UpdatedAt %v; created %v", upd.CreatedAt, upd.UpdatedAt, c.CreatedAt)
	}
	again, err := db.FindChannel(ctx, 1)
	if err != nil || again.Name != "renamed" || again.Public || !again.CreatedAt.Equal(c.CreatedAt) || !sameChannel(again, &upd) {
		t.Fatalf("FindChannel after update = %+v, %v; want %+v", again, err, upd)
	}

	list, err := db.ListChannels(ctx)
	if err != nil || len(list) != 2 || list[0].ID != 1 || list[1].ID != 2 {
		t.Fatalf("ListChannels = %v, %v", list, err)
	}
	if err := db.DeleteChannel(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, err = db.FindChannel(ctx, 1)
	wantCode(t, "FindChannel of a deleted channel", err, channels.ENOTFOUND)
	wantCode(t, "second DeleteChannel", db.DeleteChannel(ctx, 1), channels.ENOTFOUND)
	if c3 := mustChannel(t, db, "third"); c3.ID != 3 {
		t.Fatalf("channel IDs must not be reused: got %d, want 3", c3.ID)
	}
}

func testChannelErrors(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	wantCode(t, "CreateChannel of a zero channel", db.CreateChannel(ctx, &channels.Channel{}), channels.EINVALID)
	short := newChannel("x")
	short.WriteKey = "short"
	wantCode(t, "CreateChannel with a short write key", db.CreateChannel(ctx, short), channels.EINVALID)
	c := mustChannel(t, db, "x")
	wantCode(t, "UpdateChannel to invalid settings", db.UpdateChannel(ctx, &channels.Channel{ID: c.ID}), channels.EINVALID)
	if got, _ := db.FindChannel(ctx, c.ID); got.Name != "x" {
		t.Fatalf("a refused update changed the channel: %+v", got)
	}
	// Missing channels, including IDs no database column holds.
	for _, id := range []uint64{c.ID + 1, 1 << 63, 1<<64 - 1} {
		what := func(op string) string { return fmt.Sprintf("%s of channel %d", op, id) }
		missing := newChannel("m")
		missing.ID = id
		wantCode(t, what("UpdateChannel"), db.UpdateChannel(ctx, missing), channels.ENOTFOUND)
		wantCode(t, what("DeleteChannel"), db.DeleteChannel(ctx, id), channels.ENOTFOUND)
		wantCode(t, what("ClearChannel"), db.ClearChannel(ctx, id), channels.ENOTFOUND)
		_, err := db.FindChannel(ctx, id)
		wantCode(t, what("FindChannel"), err, channels.ENOTFOUND)
		_, err = db.Entries(ctx, id, channels.EntryFilter{})
		wantCode(t, what("Entries"), err, channels.ENOTFOUND)
		_, err = db.FindEntry(ctx, id, 1)
		wantCode(t, what("FindEntry"), err, channels.ENOTFOUND)
		_, err = db.EntryCount(ctx, id)
		wantCode(t, what("EntryCount"), err, channels.ENOTFOUND)
		e := &channels.Entry{ChannelID: id, Set: 1}
		if err := db.AppendEntry(ctx, e); !errors.Is(err, channels.ErrChannelNotFound) || e.ID != 0 {
			t.Fatalf("%s: ID %d, %v; want ENOTFOUND wrapping ErrChannelNotFound", what("AppendEntry"), e.ID, err)
		}
	}
	if list, err := db.ListChannels(ctx); err != nil || len(list) != 1 {
		t.Fatalf("ListChannels after refusals = %v, %v", list, err)
	}
}

func testChannelSettings(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := newChannel("station")
	c.Latitude, c.Longitude, c.Elevation = "52.5163", "-13.3777", "34.5"
	c.Metadata = "{\"owner\":\"me\"}\n<x/>"
	c.Tags = []string{"roof", "weather station", "ünïcode"}
	c.URL = "https://example.com/station"
	c.MaxEntries, c.MaxAge = 1<<40, 90*24*time.Hour
	if err := db.CreateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := db.FindChannel(ctx, c.ID)
	if err != nil || !sameChannel(got, c) {
		t.Fatalf("FindChannel = %+v, %v\nwant %+v", got, err, c)
	}
	// An update can unset every one of them again; no tags read back as
	// nil.
	got.Latitude, got.Longitude, got.Elevation, got.Metadata, got.Tags, got.URL = "", "", "", "", nil, ""
	got.MaxEntries, got.MaxAge = 0, 0
	if err := db.UpdateChannel(ctx, got); err != nil {
		t.Fatal(err)
	}
	again, err := db.FindChannel(ctx, c.ID)
	if err != nil || !sameChannel(again, got) || again.Tags != nil {
		t.Fatalf("after unsetting: %#v, %v", again, err)
	}
	// The store refuses what Validate refuses, naming the field.
	bad := newChannel("bad")
	bad.Latitude = "91"
	if err := db.CreateChannel(ctx, bad); channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "latitude") {
		t.Fatalf("latitude 91: %v, want EINVALID naming latitude", err)
	}
}

func testChannelUpdateKeepsFeed(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "x")
	mustAppend(t, db, c.ID, time.Time{}, "1")
	mustAppend(t, db, c.ID, time.Time{}, "2")
	c.LastEntryID = 0
	if err := db.UpdateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.LastEntryID != 2 {
		t.Fatalf("UpdateChannel left LastEntryID = %d, want the feed's 2", c.LastEntryID)
	}
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(1, 2)) {
		t.Fatalf("feed after an update: %v", ids)
	}
	if e := mustAppend(t, db, c.ID, time.Time{}, "3"); e.ID != 3 {
		t.Fatalf("entry after update has ID %d, want 3", e.ID)
	}
}

// Deleting a channel deletes its feed, its bindings and every grant to
// it, and nothing of other channels.
func testChannelDeleteCascades(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	a, b := mustChannel(t, db, "a"), mustChannel(t, db, "b")
	mustAppend(t, db, a.ID, time.Time{}, "v")
	mustAppend(t, db, b.ID, time.Time{}, "v")
	d1 := mustDevice(t, db, "d1", auth.Grant{ChannelID: b.ID, Subscribe: true}, auth.Grant{ChannelID: a.ID, Publish: true})
	d2 := mustDevice(t, db, "d2", auth.Grant{ChannelID: a.ID, Subscribe: true})
	d3 := mustDevice(t, db, "d3", auth.Grant{ChannelID: b.ID, Publish: true})
	for _, bd := range []*channels.Binding{
		{ChannelID: a.ID, Topic: "a/#", Fields: [8]string{"$"}},
		{ChannelID: b.ID, Topic: "b/#", Fields: [8]string{"$"}},
	} {
		if err := db.CreateBinding(ctx, bd); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.DeleteChannel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]auth.Grant{
		d1.ID: {{ChannelID: b.ID, Subscribe: true}},
		d2.ID: nil,
		d3.ID: {{ChannelID: b.ID, Publish: true}},
	}
	for id, grants := range want {
		d, err := db.FindDevice(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Channels) != len(grants) || !slices.Equal(d.Channels, grants) {
			t.Errorf("device %d grants = %+v, want %+v", id, d.Channels, grants)
		}
	}
	if bs, err := db.Bindings(ctx); err != nil || len(bs) != 1 || bs[0].ChannelID != b.ID {
		t.Fatalf("bindings after the delete: %+v, %v", bs, err)
	}
	wantCode(t, "append to the deleted channel", db.AppendEntry(ctx, &channels.Entry{ChannelID: a.ID, Set: 1}), channels.ENOTFOUND)
	_, err := db.Entries(ctx, a.ID, channels.EntryFilter{})
	wantCode(t, "Entries of the deleted channel", err, channels.ENOTFOUND)
	if ids := feedIDs(t, db, b.ID, channels.EntryFilter{}); !slices.Equal(ids, []uint64{1}) {
		t.Fatalf("the other channel's feed: %v", ids)
	}
}

// Clearing a feed empties it and restarts numbering at 1, leaves other
// channels alone, and voids keyed reads begun before it.
func testChannelClear(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	a, b := mustChannel(t, db, "a"), mustChannel(t, db, "b")
	for range 5 {
		mustAppend(t, db, a.ID, time.Time{}, "a")
		mustAppend(t, db, b.ID, time.Time{}, "b")
	}
	keys, err := db.EntryKeys(ctx, a.ID, channels.EntryFilter{Limit: 10})
	if err != nil || len(keys.Keys) != 5 {
		t.Fatalf("EntryKeys: %+v, %v", keys, err)
	}
	if err := db.ClearChannel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if ids := feedIDs(t, db, a.ID, channels.EntryFilter{}); len(ids) != 0 {
		t.Fatalf("Entries after clear = %v", ids)
	}
	if got, _ := db.FindChannel(ctx, a.ID); got.LastEntryID != 0 {
		t.Fatalf("LastEntryID after clear = %d, want 0", got.LastEntryID)
	}
	_, err = db.FindEntry(ctx, a.ID, 1)
	wantCode(t, "FindEntry after clear", err, channels.ENOTFOUND)
	if e := mustAppend(t, db, a.ID, time.Time{}, "new"); e.ID != 1 {
		t.Fatalf("first entry after clear has ID %d, want 1", e.ID)
	}
	_, err = db.EntriesByKey(ctx, a.ID, keys.Version, keys.Keys, nil)
	wantCode(t, "keyed read across a clear", err, channels.ECONFLICT)
	if ids := feedIDs(t, db, b.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(1, 5)) {
		t.Fatalf("the other channel after the clear: %v", ids)
	}
}

func testAppendIDsAndTime(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c, other := mustChannel(t, db, "x"), mustChannel(t, db, "y")
	window := clockWindow()
	for want := uint64(1); want <= 3; want++ {
		e := mustAppend(t, db, c.ID, time.Time{}, "v")
		if e.ID != want {
			t.Fatalf("entry ID = %d, want %d", e.ID, want)
		}
		// A zero created_at is the store's clock, in whole seconds.
		window(t, "CreatedAt of an entry without a time", e.CreatedAt)
		if e.CreatedAt.Nanosecond() != 0 {
			t.Fatalf("CreatedAt %v is not a whole second", e.CreatedAt)
		}
		got, err := db.FindEntry(ctx, c.ID, e.ID)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("FindEntry = %+v, %v; want %+v", got, err, e)
		}
	}
	// Another channel numbers on its own.
	if e := mustAppend(t, db, other.ID, time.Time{}, "v"); e.ID != 1 {
		t.Fatalf("first entry of another channel: ID %d", e.ID)
	}
	if got, _ := db.FindChannel(ctx, c.ID); got.LastEntryID != 3 {
		t.Fatalf("LastEntryID = %d, want 3", got.LastEntryID)
	}
	// A given created_at is kept, at second precision, in UTC.
	given := time.Date(2020, 1, 2, 3, 4, 5, 999, time.FixedZone("X", 3600))
	e := &channels.Entry{ChannelID: c.ID, CreatedAt: given}
	e.SetValue(channels.Status, "ok")
	if err := db.AppendEntry(ctx, e); err != nil {
		t.Fatal(err)
	}
	if want := given.Truncate(time.Second).UTC(); !e.CreatedAt.Equal(want) || e.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v, want %v", e.CreatedAt, want)
	}
	got, err := db.FindEntry(ctx, c.ID, e.ID)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("FindEntry =\n%+v, %v\nwant\n%+v", got, err, e)
	}
	_, err = db.FindEntry(ctx, c.ID, e.ID+1)
	wantCode(t, "FindEntry past the last", err, channels.ENOTFOUND)
	_, err = db.FindEntry(ctx, c.ID, 1<<63)
	wantCode(t, "FindEntry beyond bigint", err, channels.ENOTFOUND)
	// Unknown value bits are refused, and nothing is numbered.
	wantCode(t, "AppendEntry with unknown values", db.AppendEntry(ctx, &channels.Entry{ChannelID: c.ID, Set: 1 << channels.NumValues}), channels.EINVALID)
	if next := mustAppend(t, db, c.ID, time.Time{}, "v"); next.ID != e.ID+1 {
		t.Fatalf("entry after a refusal: ID %d, want %d", next.ID, e.ID+1)
	}
}

// Values are read back as written: unset stays unset, "" stays set, and
// every value, location and status is kept byte for byte (one that is SQL
// is only text).
func testValuesVerbatim(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "x")
	e := &channels.Entry{ChannelID: c.ID, CreatedAt: base}
	vals := []string{"21.5", "", "ünïcode ✓", " spaced ", "a\nb\tc\"\\", "-0", "'; DROP TABLE entries; --", "<x>&"}
	for i, v := range vals {
		e.SetValue(i, v)
	}
	e.SetValue(channels.Latitude, "52.5")
	e.SetValue(channels.Longitude, "")
	e.SetValue(channels.Status, strings.Repeat("s", 255))
	if err := db.AppendEntry(ctx, e); err != nil {
		t.Fatal(err)
	}
	sparse := &channels.Entry{ChannelID: c.ID, CreatedAt: base}
	sparse.SetValue(6, "only field7")
	if err := db.AppendEntry(ctx, sparse); err != nil {
		t.Fatal(err)
	}
	list, err := db.Entries(ctx, c.ID, channels.EntryFilter{})
	if err != nil || len(list) != 2 {
		t.Fatalf("Entries = %+v, %v", list, err)
	}
	for i, want := range []*channels.Entry{e, sparse} {
		if got := list[i]; !reflect.DeepEqual(&got, want) {
			t.Fatalf("entry %d read back as\n%+v\nwant\n%+v", i+1, got, *want)
		}
	}
	if _, ok := list[1].Field(1); ok {
		t.Fatal("an unset field1 reads back as set")
	}
	if v, ok := list[0].Field(2); !ok || v != "" {
		t.Fatalf("field2 set to \"\" reads back as %q, %v", v, ok)
	}
	// Text a database cannot hold: refused alone, or kept byte for byte.
	for _, v := range []string{"a\x00b", "\xff\xfe"} {
		bad := &channels.Entry{ChannelID: c.ID, CreatedAt: base}
		bad.SetValue(channels.Status, v)
		err := db.AppendEntry(ctx, bad)
		if s.TextOnly {
			wantCode(t, fmt.Sprintf("status %q", v), err, channels.EINVALID)
			wantCode(t, fmt.Sprintf("batch with status %q", v), db.AppendEntries(ctx, []*channels.Entry{{ChannelID: c.ID, Set: 1}, bad}), channels.EINVALID)
			continue
		}
		if err != nil {
			t.Fatalf("status %q: %v", v, err)
		}
		if got, err := db.FindEntry(ctx, c.ID, bad.ID); err != nil || !reflect.DeepEqual(got, bad) {
			t.Fatalf("status %q read back as %+v, %v", v, got, err)
		}
	}
	// Imports alike.
	for _, v := range []string{"a\x00b", "\xff\xfe"} {
		e := imported(c.ID, 0, base, v)
		err := db.ImportEntries(ctx, c.ID, []channels.Entry{imported(c.ID, 0, base, "ok"), e}, false)
		if s.TextOnly {
			wantCode(t, fmt.Sprintf("import of %q", v), err, channels.EINVALID)
			continue
		}
		if err != nil {
			t.Fatalf("import of %q: %v", v, err)
		}
	}
}

// seedFeed stores entries 1..6 of a new channel, one minute apart from
// base; entries with an even ID also set field2.
func seedFeed(t *testing.T, db Store) uint64 {
	t.Helper()
	c := mustChannel(t, db, "x")
	for i := 1; i <= 6; i++ {
		e := &channels.Entry{ChannelID: c.ID, CreatedAt: minute(i)}
		e.SetValue(0, "f1")
		if i%2 == 0 {
			e.SetValue(1, "f2")
		}
		if err := db.AppendEntry(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	return c.ID
}

func minute(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }

func testEntriesFilter(t *testing.T, _ Suite, db Store) {
	id := seedFeed(t, db)
	tests := []struct {
		name string
		f    channels.EntryFilter
		want []uint64
	}{
		{"all", channels.EntryFilter{}, seq(1, 6)},
		{"limit keeps newest", channels.EntryFilter{Limit: 2}, seq(5, 6)},
		{"limit over count", channels.EntryFilter{Limit: 100}, seq(1, 6)},
		{"start inclusive", channels.EntryFilter{Start: minute(4)}, seq(4, 6)},
		{"end inclusive", channels.EntryFilter{End: minute(2)}, seq(1, 2)},
		{"start and end", channels.EntryFilter{Start: minute(2), End: minute(4)}, seq(2, 4)},
		{"sub-second start rounds up", channels.EntryFilter{Start: minute(2).Add(time.Millisecond)}, seq(3, 6)},
		{"sub-second end", channels.EntryFilter{End: minute(2).Add(500 * time.Millisecond)}, seq(1, 2)},
		{"start in another zone", channels.EntryFilter{Start: minute(4).In(time.FixedZone("Y", -5*3600))}, seq(4, 6)},
		{"end before start", channels.EntryFilter{Start: minute(4), End: minute(2)}, nil},
		{"field", channels.EntryFilter{Field: 2}, []uint64{2, 4, 6}},
		{"field and limit", channels.EntryFilter{Field: 2, Limit: 2}, []uint64{4, 6}},
		{"field unset everywhere", channels.EntryFilter{Field: 8}, nil},
		{"all filters", channels.EntryFilter{Field: 2, Start: minute(1), End: minute(5), Limit: 1}, []uint64{4}},
		{"empty range", channels.EntryFilter{Start: minute(7)}, nil},
		{"after id", channels.EntryFilter{AfterID: 3}, seq(4, 6)},
		{"after id and limit", channels.EntryFilter{AfterID: 2, Limit: 2}, seq(5, 6)},
		{"after id and field", channels.EntryFilter{AfterID: 2, Field: 2}, []uint64{4, 6}},
		{"after id and end", channels.EntryFilter{AfterID: 1, End: minute(3)}, seq(2, 3)},
		{"after the last", channels.EntryFilter{AfterID: 6}, nil},
		{"after id beyond bigint", channels.EntryFilter{AfterID: 1 << 63}, nil},
		{"after the largest id", channels.EntryFilter{AfterID: 1<<64 - 1}, nil},
	}
	for _, tt := range tests {
		list, err := db.Entries(t.Context(), id, tt.f)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for _, e := range list {
			if e.ChannelID != id || !e.CreatedAt.Equal(minute(int(e.ID))) {
				t.Errorf("%s: entry %d = %+v", tt.name, e.ID, e)
			}
		}
		if got := entryIDs(list); !slices.Equal(got, tt.want) {
			t.Errorf("%s: IDs = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// AfterID, alone and with the other filters, selects exactly the later
// entries of a feed whose ID order and time order differ.
func testAfterIDBackDated(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "c")
	var all []channels.Entry
	for n := 1; n <= 24; n++ {
		// Every third entry is back-dated; even IDs set field 2.
		at := minute(n)
		if n%3 == 0 {
			at = minute(-n)
		}
		e := &channels.Entry{ChannelID: c.ID, CreatedAt: at}
		e.SetValue(0, "v")
		if n%2 == 0 {
			e.SetValue(1, "w")
		}
		if err := db.AppendEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
		all = append(all, *e)
	}
	want := func(f channels.EntryFilter) []uint64 {
		var ids []uint64
		for _, e := range all {
			if _, ok := e.Field(2); e.ID > f.AfterID && (f.Field == 0 || ok) &&
				(f.Start.IsZero() || !e.CreatedAt.Before(f.Start)) {
				ids = append(ids, e.ID)
			}
		}
		if f.Limit > 0 && len(ids) > f.Limit {
			ids = ids[len(ids)-f.Limit:]
		}
		return ids
	}
	for after := uint64(0); after <= 25; after++ {
		for _, f := range []channels.EntryFilter{
			{AfterID: after},
			{AfterID: after, Limit: 1},
			{AfterID: after, Limit: 3},
			{AfterID: after, Field: 2},
			{AfterID: after, Field: 2, Limit: 2},
			{AfterID: after, Start: base},
		} {
			if got, w := feedIDs(t, db, c.ID, f), want(f); !slices.Equal(got, w) {
				t.Fatalf("Entries(%+v) = %v, want %v", f, got, w)
			}
		}
	}
}

func testBatch(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "c")
	mustAppend(t, db, c.ID, time.Time{}, "single")
	window := clockWindow()
	es := batchOf(c.ID, 5)
	es[2].CreatedAt = base.Add(time.Second / 2) // a time of its own is kept
	if err := db.AppendEntries(ctx, es); err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		if e.ID != uint64(i+2) {
			t.Fatalf("batch entry %d: ID %d, want %d", i, e.ID, i+2)
		}
		if i == 2 {
			if !e.CreatedAt.Equal(base) {
				t.Fatalf("batch entry with a time: CreatedAt %v, want %v", e.CreatedAt, base)
			}
			continue
		}
		window(t, fmt.Sprintf("batch entry %d's CreatedAt", i), e.CreatedAt)
	}
	list, err := db.Entries(ctx, c.ID, channels.EntryFilter{AfterID: 1})
	if err != nil || len(list) != len(es) {
		t.Fatalf("Entries = %v, %v", entryIDs(list), err)
	}
	for i := range list {
		if !reflect.DeepEqual(&list[i], es[i]) {
			t.Fatalf("batch entry %d read back as %+v, want %+v", i, list[i], *es[i])
		}
	}
	if e := mustAppend(t, db, c.ID, time.Time{}, "after"); e.ID != 7 {
		t.Fatalf("next entry got ID %d, want 7", e.ID)
	}
	// A full batch is taken whole.
	full := batchOf(c.ID, s.MaxBatch)
	if err := db.AppendEntries(ctx, full); err != nil {
		t.Fatalf("a batch of %d: %v", s.MaxBatch, err)
	}
	if last := full[len(full)-1]; last.ID != uint64(7+s.MaxBatch) {
		t.Fatalf("the last of a full batch got ID %d, want %d", last.ID, 7+s.MaxBatch)
	}
}

func batchOf(ch uint64, n int) []*channels.Entry {
	es := make([]*channels.Entry, n)
	for i := range es {
		es[i] = &channels.Entry{ChannelID: ch}
		es[i].SetValue(0, fmt.Sprint("b", i+1))
	}
	return es
}

// Refused batches store nothing and number nothing.
func testBatchRefusals(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "c")
	mixed := append(batchOf(c.ID, 2), batchOf(c.ID+1, 1)...)
	wantCode(t, "a batch over two channels", db.AppendEntries(ctx, mixed), channels.EINVALID)
	missing := batchOf(c.ID+100, 3)
	if err := db.AppendEntries(ctx, missing); !errors.Is(err, channels.ErrChannelNotFound) {
		t.Fatalf("a batch to a missing channel: %v, want ENOTFOUND", err)
	}
	for _, e := range missing {
		if e.ID != 0 {
			t.Fatalf("a refused entry kept ID %d", e.ID)
		}
	}
	wantCode(t, "an oversized batch", db.AppendEntries(ctx, batchOf(c.ID, s.MaxBatch+1)), channels.EINVALID)
	unknown := batchOf(c.ID, 2)
	unknown[1].Set |= 1 << channels.NumValues
	wantCode(t, "a batch with unknown values", db.AppendEntries(ctx, unknown), channels.EINVALID)
	if n, err := db.EntryCount(ctx, c.ID); err != nil || n != 0 {
		t.Fatalf("%d entries after refused batches, %v", n, err)
	}
	if e := mustAppend(t, db, c.ID, time.Time{}, "1"); e.ID != 1 {
		t.Fatalf("entry after refused batches got ID %d, want 1", e.ID)
	}
}

// Queued appends are committed in queue order, each callback seeing its
// entry's ID after the commit; one to a missing channel fails alone.
// testOrdered: AppendEntryThen's and AppendEntriesThen's then runs
// before they return, with the outcome they return, and every then and
// AppendEntryAsync answer comes in commit order: on one channel, in the
// order of the IDs, whichever goroutines appended.
func testOrdered(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "c")
	var mu sync.Mutex
	var seen []uint64 // IDs in the order the answers came
	record := func(ids ...uint64) {
		mu.Lock()
		seen = append(seen, ids...)
		mu.Unlock()
	}
	const workers, rounds = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				e := &channels.Entry{ChannelID: c.ID}
				e.SetValue(0, fmt.Sprintf("t%d-%d", w, i))
				calls := 0
				var thenErr error
				err := db.AppendEntryThen(ctx, e, func(e *channels.Entry, err error) {
					calls, thenErr = calls+1, err
					if err == nil {
						record(e.ID)
					}
				})
				if calls != 1 || err != thenErr {
					errs <- fmt.Errorf("AppendEntryThen: then called %d times before it returned, with %v; returned %v", calls, thenErr, err)
				}
				batch := []*channels.Entry{{ChannelID: c.ID}, {ChannelID: c.ID}}
				calls = 0
				err = db.AppendEntriesThen(ctx, batch, func(err error) {
					calls, thenErr = calls+1, err
					if err == nil {
						record(batch[0].ID, batch[1].ID)
					}
				})
				if calls != 1 || err != thenErr {
					errs <- fmt.Errorf("AppendEntriesThen: then called %d times before it returned, with %v; returned %v", calls, thenErr, err)
				}
				if err := db.AppendEntryAsync(ctx, &channels.Entry{ChannelID: c.ID}, func(e *channels.Entry, err error) {
					if err != nil {
						errs <- fmt.Errorf("AppendEntryAsync: %w", err)
						return
					}
					record(e.ID)
				}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	// The last asynchronous answers come after the last append returned:
	// one more ordered append is answered after all of them.
	last := &channels.Entry{ChannelID: c.ID}
	if err := db.AppendEntryThen(ctx, last, func(e *channels.Entry, err error) { record(e.ID) }); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := seq(1, workers*rounds*4+1); !slices.Equal(seen, want) {
		t.Fatalf("answers saw IDs %v, want 1..%d in order", seen, len(want))
	}
	// A missing channel: then, if called, gets the error returned.
	calls := 0
	var thenErr error
	err := db.AppendEntryThen(ctx, &channels.Entry{ChannelID: c.ID + 1}, func(_ *channels.Entry, err error) { calls, thenErr = calls+1, err })
	if !errors.Is(err, channels.ErrChannelNotFound) || calls > 1 || (calls == 1 && thenErr != err) {
		t.Fatalf("AppendEntryThen on a missing channel: %v; then called %d times with %v", err, calls, thenErr)
	}
}

func testAsync(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "c")
	const n, missing = 200, 100
	type outcome struct {
		e   *channels.Entry
		err error
	}
	done := make(chan outcome, n)
	for i := 1; i <= n; i++ {
		e := &channels.Entry{ChannelID: c.ID}
		if i == missing {
			e.ChannelID = c.ID + 1
		}
		e.SetValue(0, strconv.Itoa(i))
		if err := db.AppendEntryAsync(ctx, e, func(e *channels.Entry, err error) { done <- outcome{e, err} }); err != nil {
			if i != missing {
				t.Fatalf("queue entry %d: %v", i, err)
			}
			// Refusing at once is as good as refusing in the callback.
			done <- outcome{e, err}
		}
	}
	var ids []uint64
	for range n {
		select {
		case o := <-done:
			v, _ := o.e.Field(1)
			if v == strconv.Itoa(missing) {
				if !errors.Is(o.err, channels.ErrChannelNotFound) || o.e.ID != 0 {
					t.Fatalf("queued append to a missing channel: ID %d, %v", o.e.ID, o.err)
				}
				continue
			}
			if o.err != nil {
				t.Fatalf("queued append %s: %v", v, o.err)
			}
			ids = append(ids, o.e.ID)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d queued appends of %d not answered within 10 s", n-len(ids), n)
		}
	}
	if !slices.Equal(ids, seq(1, n-1)) {
		t.Fatalf("callbacks saw IDs %v, want 1..%d in order", ids, n-1)
	}
	es, err := db.Entries(ctx, c.ID, channels.EntryFilter{})
	if err != nil || len(es) != n-1 {
		t.Fatalf("%d entries stored, %v", len(es), err)
	}
	for i, e := range es {
		want := i + 1
		if want >= missing {
			want++
		}
		if v, _ := e.Field(1); v != strconv.Itoa(want) {
			t.Fatalf("entry %d holds %s, want %d: queue order lost", e.ID, v, want)
		}
	}
}

// Appends to a missing channel sharing commits with appends to an
// existing one fail alone; the others are stored, gapless.
func testMissingChannelInBatch(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "x")
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 200 {
		wg.Go(func() {
			e := &channels.Entry{ChannelID: c.ID + uint64(i%2)*100}
			e.SetValue(0, strconv.Itoa(i))
			err := db.AppendEntry(ctx, e)
			switch {
			case i%2 == 0 && err == nil:
				ok.Add(1)
			case i%2 == 1 && errors.Is(err, channels.ErrChannelNotFound) && e.ID == 0:
			default:
				t.Errorf("append %d to channel %d: ID %d, %v", i, e.ChannelID, e.ID, err)
			}
		})
	}
	wg.Wait()
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(1, uint64(ok.Load()))) {
		t.Fatalf("feed %v after %d good appends", ids, ok.Load())
	}
}

func testContract(t *testing.T, _ Suite, db Store) {
	c := mustChannel(t, db, "contract")
	CheckAppendContract(t, []channels.Store{db}, c.ID, c.ID+1)
}

// The count is the number of entries held, not the last entry_id.
func testEntryCount(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	count := func(id uint64) uint64 {
		t.Helper()
		n, err := db.EntryCount(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	c := mustChannel(t, db, "capped")
	if n := count(c.ID); n != 0 {
		t.Fatalf("an empty channel counts %d", n)
	}
	for range 35 {
		mustAppend(t, db, c.ID, base, "v")
	}
	if n := count(c.ID); n != 35 {
		t.Fatalf("count %d, want 35", n)
	}
	c.MaxEntries = 5
	if err := db.UpdateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Prune(ctx, base); err != nil {
		t.Fatal(err)
	}
	if n := count(c.ID); n != 5 {
		t.Fatalf("after retention: count %d, want 5 (last entry_id 35)", n)
	}
	if err := db.ClearChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(c.ID); n != 0 {
		t.Fatalf("after clear: count %d", n)
	}
}

// A store that enforces the channel's rate limit takes the first of two
// quick appends and refuses the second, storing nothing; one that does
// not stores both.
func testRateLimit(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	c := newChannel("limited")
	c.RateLimit = time.Hour
	if err := db.CreateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, c.ID, time.Time{}, "1")
	e := &channels.Entry{ChannelID: c.ID, Set: 1}
	err := db.AppendEntry(ctx, e)
	if !s.EnforcesRateLimit {
		if err != nil || e.ID != 2 {
			t.Fatalf("second append: ID %d, %v; this store leaves rate limits to its callers", e.ID, err)
		}
		return
	}
	if channels.ErrorCode(err) != channels.ERATELIMIT || !errors.Is(err, channels.ErrRateLimited) || e.ID != 0 {
		t.Fatalf("second append within the rate limit: ID %d, %v; want ERATELIMIT", e.ID, err)
	}
	wantCode(t, "a batch within the rate limit", db.AppendEntries(ctx, batchOf(c.ID, 2)), channels.ERATELIMIT)
	if n, _ := db.EntryCount(ctx, c.ID); n != 1 {
		t.Fatalf("%d entries after refusals, want 1", n)
	}
	// A channel without a limit of its own takes both.
	free := mustChannel(t, db, "free")
	mustAppend(t, db, free.ID, time.Time{}, "1")
	mustAppend(t, db, free.ID, time.Time{}, "2")
}

// wantKeys is what EntryKeys must answer, worked out the slow way: every
// entry, filtered, sorted by time then ID, the newest f.Limit of them.
func wantKeys(t *testing.T, db Store, ch uint64, f channels.EntryFilter) []channels.EntryKey {
	t.Helper()
	all, err := db.Entries(t.Context(), ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []channels.EntryKey
	for _, e := range all {
		if (!f.Start.IsZero() && e.CreatedAt.Before(f.Start)) || (!f.End.IsZero() && e.CreatedAt.After(f.End)) || e.ID <= f.AfterID {
			continue
		}
		if f.Field > 0 {
			if _, ok := e.Field(f.Field); !ok {
				continue
			}
		}
		keys = append(keys, channels.EntryKey{Created: e.CreatedAt.Unix(), ID: e.ID})
	}
	slices.SortFunc(keys, func(a, b channels.EntryKey) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.ID, b.ID))
	})
	return keys[max(len(keys)-f.Limit, 0):]
}

// Keyed reads select the newest entries by created_at, not by entry_id,
// however the feed was written: in time order, with back-dated entries,
// after a clear that refills the feed backwards; with and without start,
// end, field and AfterID.
func testKeyedTimeOrder(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	ch := mustChannel(t, db, "c")
	rng := rand.New(rand.NewPCG(1, 2))
	from := base.Add(-48 * time.Hour)
	clock := from
	appendAt := func(at time.Time, field2 bool) {
		t.Helper()
		e := &channels.Entry{ChannelID: ch.ID, CreatedAt: at}
		e.SetValue(0, "v")
		if field2 {
			e.SetValue(1, "w")
		}
		if err := db.AppendEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	grow := func(n, backDated int) {
		es := make([]*channels.Entry, 0, n)
		for range n {
			clock = clock.Add(time.Duration(1+rng.IntN(120)) * time.Second)
			at := clock
			if rng.IntN(n) < backDated {
				at = from.Add(time.Duration(rng.IntN(int(clock.Sub(from)/time.Second))) * time.Second)
			}
			e := &channels.Entry{ChannelID: ch.ID, CreatedAt: at}
			e.SetValue(0, "v")
			if rng.IntN(2) == 0 {
				e.SetValue(1, "w")
			}
			es = append(es, e)
		}
		if err := db.AppendEntries(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	check := func(stage string) {
		t.Helper()
		last, err := db.FindChannel(ctx, ch.ID)
		if err != nil {
			t.Fatal(err)
		}
		for range 30 {
			f := channels.EntryFilter{Limit: 1 + rng.IntN(60)}
			if rng.IntN(3) == 0 {
				f.Start = from.Add(time.Duration(rng.IntN(48*60)) * time.Minute)
			}
			if rng.IntN(3) == 0 {
				f.End = from.Add(time.Duration(rng.IntN(48*60)) * time.Minute)
			}
			if rng.IntN(4) == 0 {
				f.Field = 2
			}
			if rng.IntN(4) == 0 && last.LastEntryID > 0 {
				f.AfterID = rng.Uint64N(last.LastEntryID + 1)
			}
			got, err := db.EntryKeys(ctx, ch.ID, f)
			if err != nil {
				t.Fatalf("%s: EntryKeys(%+v): %v", stage, f, err)
			}
			if want := wantKeys(t, db, ch.ID, f); !slices.Equal(got.Keys, want) {
				t.Fatalf("%s: EntryKeys(%+v) = %v, want %v", stage, f, got.Keys, want)
			}
			// The entries come back in the keys' order, a page at a time.
			var es []channels.Entry
			for page := range slices.Chunk(got.Keys, 7) {
				p, err := db.EntriesByKey(ctx, ch.ID, got.Version, page, nil)
				if err != nil {
					t.Fatalf("%s: EntriesByKey: %v", stage, err)
				}
				es = append(es, p...)
			}
			if len(es) != len(got.Keys) {
				t.Fatalf("%s: EntriesByKey gave %d entries for %d keys", stage, len(es), len(got.Keys))
			}
			for i, e := range es {
				if e.ID != got.Keys[i].ID || e.CreatedAt.Unix() != got.Keys[i].Created || e.ChannelID != ch.ID {
					t.Fatalf("%s: entry %d is %d at %v, key %+v", stage, i, e.ID, e.CreatedAt, got.Keys[i])
				}
			}
		}
	}
	check("empty")
	grow(150, 0)
	check("in time order")
	appendAt(from.Add(time.Minute), true)
	check("one back-dated entry")
	grow(100, 30)
	check("many back-dated")

	if err := db.ClearChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	clock = from
	grow(50, 0)
	check("cleared, in time order")
	for i := range 20 {
		appendAt(from.Add(time.Duration(40-i)*time.Minute), i%2 == 0) // running backwards
	}
	check("cleared, then back-dated")
}

// A keyed read takes 1 to MaxKeys entries and a missing channel is not
// found.
func testKeyedRefusals(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	ch := mustChannel(t, db, "c")
	for range 3 {
		mustAppend(t, db, ch.ID, base, "v")
	}
	for _, n := range []int{0, -1, s.MaxKeys + 1} {
		_, err := db.EntryKeys(ctx, ch.ID, channels.EntryFilter{Limit: n})
		wantCode(t, fmt.Sprintf("EntryKeys with limit %d", n), err, channels.EINVALID)
	}
	if keys, err := db.EntryKeys(ctx, ch.ID, channels.EntryFilter{Limit: s.MaxKeys}); err != nil || len(keys.Keys) != 3 {
		t.Fatalf("EntryKeys with limit %d: %+v, %v", s.MaxKeys, keys, err)
	}
	for _, id := range []uint64{ch.ID + 1, 1<<64 - 1} {
		_, err := db.EntryKeys(ctx, id, channels.EntryFilter{Limit: 10})
		wantCode(t, fmt.Sprintf("EntryKeys of missing channel %d", id), err, channels.ENOTFOUND)
	}
	for _, after := range []uint64{3, 1 << 63, 1<<64 - 1} {
		if keys, err := db.EntryKeys(ctx, ch.ID, channels.EntryFilter{Limit: 2, AfterID: after}); err != nil || len(keys.Keys) != 0 {
			t.Fatalf("EntryKeys after %d: %+v, %v", after, keys, err)
		}
	}
}

// EntriesByKey leaves out entries retention deleted since the keys were
// read, and a deleted channel's keys are refused.
func testKeyedPrunedSince(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	ch := mustChannel(t, db, "c")
	for i := range 5 {
		mustAppend(t, db, ch.ID, minute(i), "v")
	}
	keys, err := db.EntryKeys(ctx, ch.ID, channels.EntryFilter{Limit: 10})
	if err != nil || len(keys.Keys) != 5 {
		t.Fatalf("EntryKeys: %+v, %v", keys, err)
	}
	ch.MaxEntries = 3
	if err := db.UpdateChannel(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Prune(ctx, base); err != nil || n != 2 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	page, err := db.EntriesByKey(ctx, ch.ID, keys.Version, keys.Keys, nil)
	if err != nil || !slices.Equal(entryIDs(page), seq(3, 5)) {
		t.Fatalf("EntriesByKey after a prune: %v, %v", entryIDs(page), err)
	}
	if err := db.DeleteChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	if page, err := db.EntriesByKey(ctx, ch.ID, keys.Version, keys.Keys, nil); err == nil {
		t.Fatalf("EntriesByKey of a deleted channel: %v, want an error", entryIDs(page))
	} else if code := channels.ErrorCode(err); code != channels.ENOTFOUND && code != channels.ECONFLICT {
		t.Fatalf("EntriesByKey of a deleted channel: %v, want ENOTFOUND or ECONFLICT", err)
	}
}

func testDeviceCRUD(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c1, c2 := mustChannel(t, db, "a"), mustChannel(t, db, "b")
	window := clockWindow()
	d := &auth.Device{Name: "sensor", Description: "cellar", ClientID: "SENSOR", Username: "SENSOR", PasswordHash: "h1",
		// Grants keep their order, which need not be the channels'.
		Channels: []auth.Grant{{ChannelID: c2.ID, Publish: true}, {ChannelID: c1.ID, Publish: true, Subscribe: true}},
		Rules:    []auth.Rule{{Access: auth.AccessRead, Pattern: "a/#"}, {Access: auth.AccessDeny, Pattern: "a/b"}},
		ID:       42, // the store assigns it
	}
	if err := db.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if d.ID != 1 || !d.CreatedAt.Equal(d.UpdatedAt) {
		t.Fatalf("created device = %+v", d)
	}
	window(t, "device CreatedAt", d.CreatedAt)
	got, err := db.FindDevice(ctx, d.ID)
	if err != nil || !sameDevice(got, d) {
		t.Fatalf("FindDevice = %+v, %v\nwant %+v", got, err, d)
	}
	d2 := mustDevice(t, db, "second")

	// An update replaces everything but CreatedAt.
	upd := *got
	upd.Name, upd.Username, upd.ClientID, upd.PasswordHash = "renamed", "user2", "user2", "h2"
	upd.Channels, upd.Rules, upd.CreatedAt = []auth.Grant{{ChannelID: c1.ID, Subscribe: true}}, nil, time.Time{}
	if err := db.UpdateDevice(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if !upd.CreatedAt.Equal(d.CreatedAt) || upd.UpdatedAt.Before(d.UpdatedAt) {
		t.Fatalf("after update: CreatedAt %v UpdatedAt %v; created %v", upd.CreatedAt, upd.UpdatedAt, d.CreatedAt)
	}
	again, err := db.FindDevice(ctx, d.ID)
	if err != nil || !sameDevice(again, &upd) || again.Rules != nil {
		t.Fatalf("FindDevice after update = %+v, %v\nwant %+v", again, err, upd)
	}
	// The old username is free again, the new one is taken.
	mustDevice(t, db, "SENSOR")
	wantCode(t, "a taken username", db.CreateDevice(ctx, &auth.Device{Name: "x", ClientID: "x", Username: "user2", PasswordHash: "h"}), channels.ECONFLICT)

	list, err := db.ListDevices(ctx)
	if err != nil || len(list) != 3 || list[0].ID != 1 || list[1].ID != 2 || list[2].ID != 3 {
		t.Fatalf("ListDevices = %v, %v", list, err)
	}
	if err := db.DeleteDevice(ctx, d2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = db.FindDevice(ctx, d2.ID)
	if !errors.Is(err, auth.ErrDeviceNotFound) || channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Fatalf("FindDevice of a deleted device: %v", err)
	}
	wantCode(t, "second DeleteDevice", db.DeleteDevice(ctx, d2.ID), channels.ENOTFOUND)
	// The username is free once its device is gone; IDs are not reused.
	if d4 := mustDevice(t, db, "second"); d4.ID != 4 {
		t.Fatalf("recreated device got ID %d, want 4", d4.ID)
	}
}

func testDeviceErrors(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	a := mustDevice(t, db, "a")
	mustDevice(t, db, "b")
	wantCode(t, "CreateDevice of a zero device", db.CreateDevice(ctx, &auth.Device{}), channels.EINVALID)
	wantCode(t, "CreateDevice with a taken username", db.CreateDevice(ctx, &auth.Device{Username: "a"}), channels.ECONFLICT)
	// A stale ID on a new device must not let it take that device's name.
	wantCode(t, "CreateDevice with a stale ID", db.CreateDevice(ctx, &auth.Device{ID: a.ID, Username: "a"}), channels.ECONFLICT)
	noChan := &auth.Device{Name: "c", ClientID: "c", Username: "c", PasswordHash: "h", Channels: []auth.Grant{{ChannelID: 7, Publish: true}}}
	if err := db.CreateDevice(ctx, noChan); !errors.Is(err, channels.ErrChannelNotFound) || !strings.Contains(err.Error(), "channel 7") {
		t.Fatalf("a grant to a missing channel: %v, want ENOTFOUND naming channel 7", err)
	}
	c := mustChannel(t, db, "x")
	twice := &auth.Device{Name: "z", ClientID: "z", Username: "z", PasswordHash: "h", Channels: []auth.Grant{{ChannelID: c.ID}, {ChannelID: c.ID}}}
	wantCode(t, "two grants of one channel", db.CreateDevice(ctx, twice), channels.EINVALID)
	if list, _ := db.ListDevices(ctx); len(list) != 2 {
		t.Fatalf("refused creates left devices: %+v", list)
	}

	a.Username = "b"
	wantCode(t, "UpdateDevice to a taken username", db.UpdateDevice(ctx, a), channels.ECONFLICT)
	missing := &auth.Device{ID: 99, Name: "z", ClientID: "z", Username: "z", PasswordHash: "h"}
	if err := db.UpdateDevice(ctx, missing); !errors.Is(err, auth.ErrDeviceNotFound) || channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Fatalf("UpdateDevice of a missing device: %v", err)
	}
	wantCode(t, "DeleteDevice of a missing device", db.DeleteDevice(ctx, 99), channels.ENOTFOUND)
	_, err := db.FindDevice(ctx, 99)
	wantCode(t, "FindDevice of a missing device", err, channels.ENOTFOUND)
	// Device IDs beyond what a 32-bit or a 64-bit column holds.
	for _, id := range []uint64{1 << 31, 1 << 40, 1<<64 - 1} {
		_, err = db.FindDevice(ctx, id)
		wantCode(t, fmt.Sprintf("FindDevice(%d)", id), err, channels.ENOTFOUND)
		wantCode(t, fmt.Sprintf("DeleteDevice(%d)", id), db.DeleteDevice(ctx, id), channels.ENOTFOUND)
		missing.ID = id
		wantCode(t, fmt.Sprintf("UpdateDevice(%d)", id), db.UpdateDevice(ctx, missing), channels.ENOTFOUND)
		_, err = db.SetRules(ctx, auth.RulesChange{Devices: map[uint64][]auth.Rule{id: nil}})
		wantCode(t, fmt.Sprintf("SetRules of device %d", id), err, channels.ENOTFOUND)
	}

	a.Username = "a"
	a.Channels = []auth.Grant{{ChannelID: c.ID, Publish: true}, {ChannelID: c.ID, Subscribe: true}}
	wantCode(t, "UpdateDevice with two grants of one channel", db.UpdateDevice(ctx, a), channels.EINVALID)
	a.Channels = []auth.Grant{{ChannelID: c.ID + 1, Publish: true}}
	wantCode(t, "UpdateDevice with a grant to a missing channel", db.UpdateDevice(ctx, a), channels.ENOTFOUND)
	// Failed updates changed nothing.
	if got, _ := db.FindDevice(ctx, a.ID); got.Username != "a" || len(got.Channels) != 0 || !got.UpdatedAt.Equal(a.UpdatedAt) {
		t.Fatalf("device after failed updates = %+v", got)
	}
}

// A device's description and rules are kept, and an update can clear
// them.
func testDeviceDescriptionAndRules(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	rules := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "home/#"}, {Access: auth.AccessDeny, Pattern: "home/secret"},
		{Access: auth.AccessRead, Pattern: "tele/%c/#"}, {Access: auth.AccessWrite, Pattern: "cmnd/x"}}
	d := &auth.Device{Name: "esp32", Description: "garden\nsensor ✓", ClientID: "u", Username: "u", PasswordHash: "h", Rules: rules}
	if err := db.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := db.FindDevice(ctx, d.ID)
	if err != nil || !sameDevice(got, d) {
		t.Fatalf("FindDevice = %+v, %v; want %+v", got, err, d)
	}
	got.Description, got.Rules = "", nil
	if err := db.UpdateDevice(ctx, got); err != nil {
		t.Fatal(err)
	}
	if again, err := db.FindDevice(ctx, d.ID); err != nil || again.Description != "" || again.Rules != nil {
		t.Fatalf("after clearing: %+v, %v", again, err)
	}
}

// Text neither store can keep byte for byte is refused alike (EINVALID,
// naming the field, never echoing the value): invalid UTF-8, which
// bbolt's JSON records would turn into U+FFFD (two usernames could then
// become one), and NUL bytes, which PostgreSQL's text refuses. Callers
// check what users type before; these guard what reaches a store
// another way (a copy, a bug).
func testDeviceNonText(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	good := mustDevice(t, db, "good")
	for _, bad := range []string{"a\x00b", "a\xffb"} {
		for field, set := range map[string]func(d *auth.Device){
			"name":          func(d *auth.Device) { d.Name = bad },
			"description":   func(d *auth.Device) { d.Description = bad },
			"client ID":     func(d *auth.Device) { d.ClientID = bad },
			"username":      func(d *auth.Device) { d.Username = bad },
			"password hash": func(d *auth.Device) { d.PasswordHash = bad },
			"rule":          func(d *auth.Device) { d.Rules = []auth.Rule{{Access: auth.AccessRead, Pattern: bad}} },
		} {
			d := &auth.Device{Name: "n", ClientID: "n", Username: "n", PasswordHash: "h"}
			set(d)
			err := db.CreateDevice(ctx, d)
			if channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), field) || strings.Contains(err.Error(), bad) {
				t.Fatalf("CreateDevice with %s %q: %v; want EINVALID naming the %s", field, bad, err, field)
			}
			upd := *good
			set(&upd)
			err = db.UpdateDevice(ctx, &upd)
			if channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), field) {
				t.Fatalf("UpdateDevice with %s %q: %v; want EINVALID naming the %s", field, bad, err, field)
			}
		}
		rules := []auth.Rule{{Access: auth.AccessRead, Pattern: bad}}
		for what, change := range map[string]auth.RulesChange{
			"anonymous": {Anonymous: &rules},
			"everyone":  {Everyone: &rules},
			"device":    {Devices: map[uint64][]auth.Rule{good.ID: rules}},
		} {
			if _, err := db.SetRules(ctx, change); channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "rule") {
				t.Fatalf("SetRules with a %s rule %q: %v; want EINVALID", what, bad, err)
			}
		}
		for field, a := range map[string]*auth.Account{
			"API key":       {UserAPIKey: bad},
			"password hash": {UserAPIKey: "USERKEY000000001", PasswordHash: bad},
		} {
			if err := db.PutAccount(ctx, a); channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), field) {
				t.Fatalf("PutAccount with %s %q: %v; want EINVALID naming the %s", field, bad, err, field)
			}
		}
	}
	if list, _ := db.ListDevices(ctx); len(list) != 1 {
		t.Fatalf("refused devices stored: %+v", list)
	}
	if got, _ := db.FindDevice(ctx, good.ID); !sameDevice(got, good) {
		t.Fatalf("refused updates changed the device: %+v", got)
	}
	if a, e, _ := db.SharedRules(ctx); a != nil || e != nil {
		t.Fatalf("refused rules stored: %v %v", a, e)
	}
	if a, _ := db.Account(ctx); *a != (auth.Account{}) {
		t.Fatalf("a refused account was stored: %+v", a)
	}
}

func testRules(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	if anon, every, err := db.SharedRules(ctx); err != nil || anon != nil || every != nil {
		t.Fatalf("a new store: %v, %v, %v; want no rules", anon, every, err)
	}
	a, b := mustDevice(t, db, "a"), mustDevice(t, db, "b")
	anon := []auth.Rule{{Access: auth.AccessRead, Pattern: "public/#"}, {Access: auth.AccessDeny, Pattern: "public/x"}}
	every := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "tele/%c/#"}, {Access: auth.AccessDeny, Pattern: "x"}}
	ra := []auth.Rule{{Access: auth.AccessWrite, Pattern: "a/#"}}
	changed, err := db.SetRules(ctx, auth.RulesChange{Anonymous: &anon, Everyone: &every, Devices: map[uint64][]auth.Rule{a.ID: ra}})
	if err != nil || len(changed) != 1 || changed[0].ID != a.ID || !slices.Equal(changed[0].Rules, ra) || changed[0].UpdatedAt.Before(a.UpdatedAt) {
		t.Fatalf("SetRules = %+v, %v", changed, err)
	}
	if gotAnon, gotEvery, err := db.SharedRules(ctx); err != nil || !slices.Equal(gotAnon, anon) || !slices.Equal(gotEvery, every) {
		t.Fatalf("SharedRules = %v, %v, %v", gotAnon, gotEvery, err)
	}
	d, _ := db.FindDevice(ctx, a.ID)
	if !slices.Equal(d.Rules, ra) || d.PasswordHash != "hash-a" || !d.UpdatedAt.Equal(changed[0].UpdatedAt) {
		t.Fatalf("device a = %+v; SetRules said %+v", d, changed[0])
	}
	// Only the lists given change.
	none := []auth.Rule{}
	if _, err := db.SetRules(ctx, auth.RulesChange{Anonymous: &none}); err != nil {
		t.Fatal(err)
	}
	if gotAnon, gotEvery, _ := db.SharedRules(ctx); gotAnon != nil || !slices.Equal(gotEvery, every) {
		t.Fatalf("after clearing the anonymous rules: %v, %v", gotAnon, gotEvery)
	}
	// A missing device changes nothing at all.
	_, err = db.SetRules(ctx, auth.RulesChange{Everyone: &none, Devices: map[uint64][]auth.Rule{b.ID: ra, 99: ra}})
	if channels.ErrorCode(err) != channels.ENOTFOUND || !errors.Is(err, auth.ErrDeviceNotFound) {
		t.Fatalf("rules of a missing device: %v, want ENOTFOUND wrapping ErrDeviceNotFound", err)
	}
	if _, gotEvery, _ := db.SharedRules(ctx); !slices.Equal(gotEvery, every) {
		t.Fatalf("a refused change wrote everyone's rules: %v", gotEvery)
	}
	if d, _ := db.FindDevice(ctx, b.ID); d.Rules != nil {
		t.Fatalf("a refused change wrote device b's rules: %v", d.Rules)
	}
	// Empty lists clear; a device's nil list clears its rules.
	if _, err := db.SetRules(ctx, auth.RulesChange{Everyone: &none, Devices: map[uint64][]auth.Rule{a.ID: nil}}); err != nil {
		t.Fatal(err)
	}
	if gotAnon, gotEvery, _ := db.SharedRules(ctx); gotAnon != nil || gotEvery != nil {
		t.Fatalf("cleared: %v, %v", gotAnon, gotEvery)
	}
	if d, _ := db.FindDevice(ctx, a.ID); d.Rules != nil {
		t.Fatalf("device a's rules after clearing: %v", d.Rules)
	}
}

func testAccount(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	if a, err := db.Account(ctx); err != nil || *a != (auth.Account{}) {
		t.Fatalf("a new store: account %+v, %v; want a zero account", a, err)
	}
	changed := time.Date(2026, 12, 6, 7, 0, 0, 123456789, time.UTC)
	want := auth.Account{UserAPIKey: "USERKEY000000001", PasswordHash: "$argon2id$v=19$x", PasswordChangedAt: changed}
	if err := db.PutAccount(ctx, &want); err != nil {
		t.Fatal(err)
	}
	got, err := db.Account(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantStamp(t, s, "PasswordChangedAt", got.PasswordChangedAt, changed)
	if got.UserAPIKey != want.UserAPIKey || got.PasswordHash != want.PasswordHash {
		t.Fatalf("Account = %+v, want %+v", got, want)
	}
	// A change stamped a nanosecond after the last reads back after it
	// (the console bumps the stamp so when the clock has not moved).
	next := *got
	next.PasswordHash = "$argon2id$v=19$y"
	next.PasswordChangedAt = got.PasswordChangedAt.Add(time.Nanosecond)
	if err := db.PutAccount(ctx, &next); err != nil {
		t.Fatal(err)
	}
	again, err := db.Account(ctx)
	if err != nil || !again.PasswordChangedAt.After(got.PasswordChangedAt) {
		t.Fatalf("a stamp 1ns later reads back as %v, not after %v (%v)", again.PasswordChangedAt, got.PasswordChangedAt, err)
	}
	// PutAccount replaces the whole record.
	if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000002"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Account(ctx); *got != (auth.Account{UserAPIKey: "USERKEY000000002"}) {
		t.Fatalf("after replace: %+v", got)
	}
}

// wantStamp checks a time kept to s.Resolution: exactly, or rounded up
// to it, in UTC.
func wantStamp(t *testing.T, s Suite, what string, got, want time.Time) {
	t.Helper()
	exact := want
	if r := s.Resolution; r > 0 {
		if exact = want.Truncate(r); exact.Before(want) {
			exact = exact.Add(r)
		}
	}
	if !got.Equal(exact) || got.Location() != time.UTC {
		t.Fatalf("%s = %v, want %v (%v rounded up to %v)", what, got, exact, want, s.Resolution)
	}
}

// Retention and rate limits are kept to the store's resolution, rounded
// up (a limit never becomes none), and MaxEntries up to its cap.
func testChannelLimitsPrecision(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	// up rounds d up to the resolution, or down where rounding up would
	// pass the largest Duration.
	up := func(d time.Duration) time.Duration {
		r := s.Resolution
		if r == 0 || d%r == 0 {
			return d
		}
		if d > math.MaxInt64-r {
			return d - d%r
		}
		return d - d%r + r
	}
	for _, tc := range []struct {
		rate, age time.Duration
		max       uint64
	}{
		{time.Nanosecond, time.Nanosecond, 1},
		{1500 * time.Nanosecond, 90*time.Second + 1, 1 << 40},
		{15 * time.Second, 72 * time.Hour, 1<<63 - 1},
		{0, 0, 1 << 63},
		{1<<63 - 1, 1<<63 - 1, 1<<64 - 1},
	} {
		c := newChannel("limits")
		c.RateLimit, c.MaxAge, c.MaxEntries = tc.rate, tc.age, tc.max
		if err := db.CreateChannel(ctx, c); err != nil {
			t.Fatal(err)
		}
		wantMax := tc.max
		if s.MaxEntriesCap > 0 && wantMax > s.MaxEntriesCap {
			wantMax = s.MaxEntriesCap
		}
		got, err := db.FindChannel(ctx, c.ID)
		if err != nil || got.RateLimit != up(tc.rate) || got.MaxAge != up(tc.age) || got.MaxEntries != wantMax {
			t.Fatalf("limits %v, %v, %d read back as %v, %v, %d (%v); want %v, %v, %d",
				tc.rate, tc.age, tc.max, got.RateLimit, got.MaxAge, got.MaxEntries, err, up(tc.rate), up(tc.age), wantMax)
		}
		if err := db.UpdateChannel(ctx, got); err != nil {
			t.Fatal(err)
		}
		if again, _ := db.FindChannel(ctx, c.ID); again.RateLimit != got.RateLimit || again.MaxAge != got.MaxAge || again.MaxEntries != got.MaxEntries {
			t.Fatalf("limits changed by an update: %+v, was %+v", again, got)
		}
	}
}

func testBindings(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	if list, err := db.Bindings(ctx); err != nil || len(list) != 0 {
		t.Fatalf("a new store: %v, %v", list, err)
	}
	c1, c2 := mustChannel(t, db, "a"), mustChannel(t, db, "b")
	window := clockWindow()
	b1 := &channels.Binding{ChannelID: c1.ID, Topic: "zigbee2mqtt/+", Fields: [8]string{"$.temperature", "", "$.a[0]"},
		Status: "$.battery", Latitude: "$.lat", Longitude: "$.lon", Elevation: "$.alt", CreatedAt: "$.time"}
	b2 := &channels.Binding{ChannelID: c2.ID, Topic: "tele/+/SENSOR", Fields: [8]string{"$"}}
	b3 := &channels.Binding{ChannelID: c1.ID, Topic: "x/#", Fields: [8]string{"$.humidity"}}
	for _, b := range []*channels.Binding{b1, b2, b3} {
		if err := db.CreateBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if b1.ID != 1 || b2.ID != 2 || b3.ID != 3 {
		t.Fatalf("IDs %d %d %d, want 1 2 3", b1.ID, b2.ID, b3.ID)
	}
	window(t, "binding Created", b1.Created)
	if b1.Created.Nanosecond() != 0 {
		t.Fatalf("binding Created %v is not a whole second", b1.Created)
	}
	list, err := db.Bindings(ctx)
	if err != nil || len(list) != 3 || list[0] != *b1 || list[1] != *b2 || list[2] != *b3 {
		t.Fatalf("Bindings = %+v, %v\nwant %+v %+v %+v", list, err, *b1, *b2, *b3)
	}
	if err := db.DeleteBinding(ctx, 2); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "second DeleteBinding", db.DeleteBinding(ctx, 2), channels.ENOTFOUND)
	wantCode(t, "DeleteBinding beyond bigint", db.DeleteBinding(ctx, 1<<64-1), channels.ENOTFOUND)
	// IDs are never reused.
	b4 := &channels.Binding{ChannelID: c2.ID, Topic: "y", Fields: [8]string{"$"}}
	if err := db.CreateBinding(ctx, b4); err != nil || b4.ID != 4 {
		t.Fatalf("after a delete: ID %d, %v", b4.ID, err)
	}
	// Deleting a channel deletes its bindings, and only its.
	if err := db.DeleteChannel(ctx, c1.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := db.Bindings(ctx); len(list) != 1 || list[0].ID != 4 {
		t.Fatalf("after deleting channel %d: %+v", c1.ID, list)
	}
}

func testBindingRefusals(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "a")
	for _, tc := range []struct {
		b    *channels.Binding
		code string
		msg  string
	}{
		{&channels.Binding{ChannelID: c.ID + 1, Topic: "a/b", Fields: [8]string{"$"}}, channels.ENOTFOUND, "not found"},
		{&channels.Binding{ChannelID: 1<<64 - 1, Topic: "a/b", Fields: [8]string{"$"}}, channels.ENOTFOUND, "not found"},
		{&channels.Binding{ChannelID: c.ID, Topic: "", Fields: [8]string{"$"}}, channels.EINVALID, "topic"},
		{&channels.Binding{ChannelID: c.ID, Topic: "channels/1/publish", Fields: [8]string{"$"}}, channels.EINVALID, "governs itself"},
		{&channels.Binding{ChannelID: c.ID, Topic: "a"}, channels.EINVALID, "at least one field"},
		{&channels.Binding{ChannelID: c.ID, Topic: "a", Fields: [8]string{"$..x"}}, channels.EINVALID, "recursive"},
	} {
		err := db.CreateBinding(ctx, tc.b)
		if channels.ErrorCode(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v; want %s containing %q", tc.b, err, tc.code, tc.msg)
		}
	}
	if list, _ := db.Bindings(ctx); len(list) != 0 {
		t.Fatalf("refused bindings stored: %+v", list)
	}
}

// imported returns an entry for ImportEntries setting field1 to v.
func imported(ch, id uint64, at time.Time, v string) channels.Entry {
	e := channels.Entry{ChannelID: ch, ID: id, CreatedAt: at}
	e.SetValue(0, v)
	return e
}

// An import that keeps IDs may leave gaps; the IDs must lie above the last
// one, appends number on after the highest, and the count is of entries
// held. The top of the ID range is refused: appends would wrap to 0.
func testImportKeepIDs(t *testing.T, s Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "x")
	batch := []channels.Entry{
		imported(c.ID, 5, base, "a"),
		imported(c.ID, 7, base.Add(500*time.Millisecond), "b"), // same second
		imported(c.ID, 10, base.Add(time.Hour), "c"),
	}
	batch[1].SetValue(channels.Status, "door open, back")
	if err := db.ImportEntries(ctx, c.ID, batch, true); err != nil {
		t.Fatal(err)
	}
	if got := entryIDs(batch); !slices.Equal(got, []uint64{5, 7, 10}) {
		t.Fatalf("IDs %v", got)
	}
	if n, err := db.EntryCount(ctx, c.ID); err != nil || n != 3 {
		t.Fatalf("EntryCount with imported gaps = %d, %v; want 3", n, err)
	}
	// A batch reaching down to the last ID, or older than the newest
	// entry, is refused whole.
	more := []channels.Entry{imported(c.ID, 11, base.Add(2*time.Hour), "d"), imported(c.ID, 10, base.Add(3*time.Hour), "e")}
	wantCode(t, "an import at the last ID", db.ImportEntries(ctx, c.ID, more, true), channels.ECONFLICT)
	more = []channels.Entry{imported(c.ID, 11, base.Add(-time.Hour), "d")}
	wantCode(t, "an import older than the newest entry", db.ImportEntries(ctx, c.ID, more, true), channels.ECONFLICT)
	more = []channels.Entry{imported(c.ID, 12, base.Add(2*time.Hour), "d")}
	if err := db.ImportEntries(ctx, c.ID, more, true); err != nil {
		t.Fatal(err)
	}
	if e := mustAppend(t, db, c.ID, time.Time{}, "live"); e.ID != 13 {
		t.Fatalf("append after import got ID %d, want 13", e.ID)
	}
	if got, err := db.FindChannel(ctx, c.ID); err != nil || got.LastEntryID != 13 {
		t.Fatalf("LastEntryID %+v, %v; want 13", got, err)
	}
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, []uint64{5, 7, 10, 12, 13}) {
		t.Fatalf("feed %v", ids)
	}
	e, err := db.FindEntry(ctx, c.ID, 7)
	want := batch[1]
	want.CreatedAt = base
	if err != nil || !reflect.DeepEqual(*e, want) {
		t.Fatalf("entry 7 = %+v, %v; want %+v", e, err, want)
	}
	_, err = db.FindEntry(ctx, c.ID, 6)
	wantCode(t, "FindEntry in a gap", err, channels.ENOTFOUND)
	if n, _ := db.EntryCount(ctx, c.ID); n != 5 {
		t.Fatalf("EntryCount %d, want 5", n)
	}

	top := mustChannel(t, db, "top")
	for _, id := range []uint64{s.MaxImportedID + 1, 1<<63 - 1, math.MaxUint64} {
		wantCode(t, fmt.Sprintf("an import of entry_id %d", id), db.ImportEntries(ctx, top.ID, []channels.Entry{imported(top.ID, id, base, "a")}, true), channels.EINVALID)
	}
	wide := []channels.Entry{imported(top.ID, 1, base, "a"), imported(top.ID, s.MaxImportedID, base, "b")}
	if err := db.ImportEntries(ctx, top.ID, wide, true); err != nil {
		t.Fatal(err)
	}
	if ids := feedIDs(t, db, top.ID, channels.EntryFilter{}); !slices.Equal(ids, []uint64{1, s.MaxImportedID}) {
		t.Fatalf("feed with a wide gap: %v", ids)
	}
	if e := mustAppend(t, db, top.ID, time.Time{}, "next"); e.ID != s.MaxImportedID+1 {
		t.Fatalf("append after the widest gap got ID %d", e.ID)
	}
}

// An import that numbers on continues after the last entry; entries
// older than the newest, or out of time order, refuse the whole batch.
func testImportNumberOn(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "x")
	mustAppend(t, db, c.ID, base, "1")
	mustAppend(t, db, c.ID, base, "2")
	batch := []channels.Entry{imported(c.ID, 99, base, "a"), imported(c.ID, 0, base.Add(time.Minute), "b")}
	if err := db.ImportEntries(ctx, c.ID, batch, false); err != nil {
		t.Fatal(err)
	}
	if got := entryIDs(batch); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("IDs %v, want 3 4", got)
	}
	for _, bad := range [][]channels.Entry{
		{imported(c.ID, 0, base.Add(2*time.Minute), "ok"), imported(c.ID, 0, base, "old")},
		{imported(c.ID, 0, base.Add(5*time.Minute), "ok"), imported(c.ID, 0, base.Add(4*time.Minute), "back")},
	} {
		wantCode(t, "an import out of time order", db.ImportEntries(ctx, c.ID, bad, false), channels.ECONFLICT)
		if bad[0].ID != 0 {
			t.Fatalf("a refused batch kept ID %d", bad[0].ID)
		}
	}
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(1, 4)) {
		t.Fatalf("feed %v", ids)
	}
	// The channel's rate limit does not apply to history.
	c.RateLimit = time.Hour
	if err := db.UpdateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := db.ImportEntries(ctx, c.ID, []channels.Entry{imported(c.ID, 0, base.Add(time.Hour), "x"), imported(c.ID, 0, base.Add(time.Hour), "y")}, false); err != nil {
		t.Fatalf("an import into a rate-limited channel: %v", err)
	}
}

func testImportRefused(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "x")
	empty := channels.Entry{ChannelID: c.ID, CreatedAt: base}
	unknown := imported(c.ID, 1, base, "a")
	unknown.Set |= 1 << channels.NumValues
	for name, tc := range map[string]struct {
		es   []channels.Entry
		keep bool
		ch   uint64
		code string
	}{
		"no values":          {[]channels.Entry{empty}, false, c.ID, channels.EINVALID},
		"unknown values":     {[]channels.Entry{unknown}, false, c.ID, channels.EINVALID},
		"no created_at":      {[]channels.Entry{imported(c.ID, 1, time.Time{}, "a")}, false, c.ID, channels.EINVALID},
		"no id to keep":      {[]channels.Entry{imported(c.ID, 0, base, "a")}, true, c.ID, channels.EINVALID},
		"falling ids":        {[]channels.Entry{imported(c.ID, 5, base, "a"), imported(c.ID, 4, base, "b")}, true, c.ID, channels.ECONFLICT},
		"other channel":      {[]channels.Entry{imported(c.ID+1, 1, base, "a")}, false, c.ID, channels.EINVALID},
		"no channel":         {[]channels.Entry{imported(c.ID+1, 1, base, "a")}, false, c.ID + 1, channels.ENOTFOUND},
		"no channel, keep":   {[]channels.Entry{imported(c.ID+1, 1, base, "a")}, true, c.ID + 1, channels.ENOTFOUND},
		"no channel, bigint": {[]channels.Entry{imported(1<<64-1, 1, base, "a")}, false, 1<<64 - 1, channels.ENOTFOUND},
	} {
		wantCode(t, name, db.ImportEntries(ctx, tc.ch, tc.es, tc.keep), tc.code)
	}
	if got, _ := db.FindChannel(ctx, c.ID); got.LastEntryID != 0 {
		t.Fatalf("LastEntryID %d after refused imports", got.LastEntryID)
	}
	if err := db.ImportEntries(ctx, c.ID, nil, false); err != nil {
		t.Fatalf("an empty import: %v", err)
	}
}

// Imports while appends run: every entry gets its own ID, consecutive
// within a batch, and the feed is 1..n.
func testImportWithAppends(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "x")
	const appends, batches, per = 200, 10, 10
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range appends {
			if err := db.AppendEntry(ctx, &channels.Entry{ChannelID: c.ID, CreatedAt: base, Set: 1}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range batches {
		es := make([]channels.Entry, per)
		for i := range es {
			es[i] = imported(c.ID, 0, base, "imp") // never older than an append
		}
		if err := db.ImportEntries(ctx, c.ID, es, false); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < per; i++ {
			if es[i].ID != es[i-1].ID+1 {
				t.Fatalf("batch IDs not consecutive: %v", entryIDs(es))
			}
		}
	}
	<-done
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(1, appends+batches*per)) {
		t.Fatalf("feed of %d entries is not 1..%d", len(ids), appends+batches*per)
	}
}

// MaxEntries keeps the newest MaxEntries entries where imported IDs left
// gaps (the last ID minus MaxEntries would delete entries it keeps).
func testPruneAcrossImportedGaps(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c := mustChannel(t, db, "gappy")
	batch := []channels.Entry{
		imported(c.ID, 1, base, "a"),
		imported(c.ID, 10, base.Add(time.Minute), "b"),
		imported(c.ID, 20, base.Add(2*time.Minute), "c"),
		imported(c.ID, 30, base.Add(3*time.Minute), "d"),
	}
	if err := db.ImportEntries(ctx, c.ID, batch, true); err != nil {
		t.Fatal(err)
	}
	withRetention(t, db, c, 3, 0)
	if n, err := db.Prune(ctx, base); err != nil || n != 1 {
		t.Fatalf("Prune: %d, %v; want 1", n, err)
	}
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, []uint64{10, 20, 30}) {
		t.Fatalf("max_entries 3 over IDs 1, 10, 20, 30 left %v", ids)
	}
}

// A canceled context fails every call with context.Canceled in its chain
// and changes nothing.
func testCanceled(t *testing.T, _ Suite, db Store) {
	c := mustChannel(t, db, "c")
	d := mustDevice(t, db, "d")
	mustAppend(t, db, c.ID, base, "v")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"CreateChannel": func() error { return db.CreateChannel(ctx, newChannel("x")) },
		"UpdateChannel": func() error { u := *c; u.Name = "renamed"; return db.UpdateChannel(ctx, &u) },
		"DeleteChannel": func() error { return db.DeleteChannel(ctx, c.ID) },
		"ClearChannel":  func() error { return db.ClearChannel(ctx, c.ID) },
		"FindChannel":   func() error { _, err := db.FindChannel(ctx, c.ID); return err },
		"ListChannels":  func() error { _, err := db.ListChannels(ctx); return err },
		"AppendEntry":   func() error { return db.AppendEntry(ctx, &channels.Entry{ChannelID: c.ID, Set: 1}) },
		"AppendEntries": func() error { return db.AppendEntries(ctx, batchOf(c.ID, 2)) },
		"AppendEntryAsync": func() error {
			return db.AppendEntryAsync(ctx, &channels.Entry{ChannelID: c.ID, Set: 1}, func(*channels.Entry, error) {})
		},
		"Entries":    func() error { _, err := db.Entries(ctx, c.ID, channels.EntryFilter{}); return err },
		"FindEntry":  func() error { _, err := db.FindEntry(ctx, c.ID, 1); return err },
		"EntryCount": func() error { _, err := db.EntryCount(ctx, c.ID); return err },
		"EntryKeys":  func() error { _, err := db.EntryKeys(ctx, c.ID, channels.EntryFilter{Limit: 1}); return err },
		"CreateDevice": func() error {
			return db.CreateDevice(ctx, &auth.Device{Name: "x", ClientID: "x", Username: "x", PasswordHash: "h"})
		},
		"UpdateDevice": func() error { u := *d; u.Name = "renamed"; return db.UpdateDevice(ctx, &u) },
		"DeleteDevice": func() error { return db.DeleteDevice(ctx, d.ID) },
		"FindDevice":   func() error { _, err := db.FindDevice(ctx, d.ID); return err },
		"ListDevices":  func() error { _, err := db.ListDevices(ctx); return err },
		"SetRules": func() error {
			_, err := db.SetRules(ctx, auth.RulesChange{Anonymous: &[]auth.Rule{{Access: auth.AccessRead, Pattern: "a"}}})
			return err
		},
		"SharedRules": func() error { _, _, err := db.SharedRules(ctx); return err },
		"PutAccount":  func() error { return db.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000001"}) },
		"Account":     func() error { _, err := db.Account(ctx); return err },
		"CreateBinding": func() error {
			return db.CreateBinding(ctx, &channels.Binding{ChannelID: c.ID, Topic: "t", Fields: [8]string{"$"}})
		},
		"Bindings": func() error { _, err := db.Bindings(ctx); return err },
		"ImportEntries": func() error {
			return db.ImportEntries(ctx, c.ID, []channels.Entry{imported(c.ID, 0, base, "i")}, false)
		},
		"Prune": func() error { _, err := db.Prune(ctx, base); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	ctx = t.Context()
	if got, err := db.FindChannel(ctx, c.ID); err != nil || got.Name != c.Name || got.LastEntryID != 1 {
		t.Fatalf("channel after canceled calls: %+v, %v", got, err)
	}
	if list, _ := db.ListChannels(ctx); len(list) != 1 {
		t.Fatalf("channels after canceled calls: %d", len(list))
	}
	if got, err := db.FindDevice(ctx, d.ID); err != nil || got.Name != d.Name {
		t.Fatalf("device after canceled calls: %+v, %v", got, err)
	}
	if list, _ := db.ListDevices(ctx); len(list) != 1 {
		t.Fatalf("devices after canceled calls: %d", len(list))
	}
	if a, _, _ := db.SharedRules(ctx); a != nil {
		t.Fatalf("rules after canceled calls: %v", a)
	}
	if a, _ := db.Account(ctx); *a != (auth.Account{}) {
		t.Fatalf("account after canceled calls: %+v", a)
	}
	if bs, _ := db.Bindings(ctx); len(bs) != 0 {
		t.Fatalf("bindings after canceled calls: %+v", bs)
	}
}

func withRetention(t *testing.T, db Store, c *channels.Channel, maxEntries uint64, maxAge time.Duration) {
	t.Helper()
	c.MaxEntries, c.MaxAge = maxEntries, maxAge
	if err := db.UpdateChannel(t.Context(), c); err != nil {
		t.Fatal(err)
	}
}

func testPruneMaxEntries(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	c, keep := mustChannel(t, db, "capped"), mustChannel(t, db, "unlimited")
	for range 50 {
		mustAppend(t, db, c.ID, base, "v")
		mustAppend(t, db, keep.ID, base, "v")
	}
	if n, err := db.Prune(ctx, base); err != nil || n != 0 {
		t.Fatalf("Prune without retention: %d, %v", n, err)
	}
	withRetention(t, db, c, 10, 0)
	if n, err := db.Prune(ctx, base); err != nil || n != 40 {
		t.Fatalf("Prune: %d, %v; want 40", n, err)
	}
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(41, 50)) {
		t.Fatalf("capped feed: %v", ids)
	}
	if n, _ := db.EntryCount(ctx, keep.ID); n != 50 {
		t.Fatalf("the unlimited feed holds %d entries", n)
	}
	// Nothing more to do; IDs go on from the sequence.
	if n, err := db.Prune(ctx, base); err != nil || n != 0 {
		t.Fatalf("second Prune: %d, %v", n, err)
	}
	if e := mustAppend(t, db, c.ID, base, "v"); e.ID != 51 {
		t.Fatalf("next entry ID %d, want 51", e.ID)
	}
	if got, _ := db.FindChannel(ctx, c.ID); got.LastEntryID != 51 || got.MaxEntries != 10 {
		t.Fatalf("channel after prune: %+v", got)
	}
}

func testPruneMaxAge(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	now := base
	c := mustChannel(t, db, "aged")
	for i := range 10 { // one entry an hour, 10h ago .. 1h ago
		mustAppend(t, db, c.ID, now.Add(-time.Duration(10-i)*time.Hour), "v")
	}
	withRetention(t, db, c, 0, 5*time.Hour+30*time.Minute)
	if n, err := db.Prune(ctx, now); err != nil || n != 5 {
		t.Fatalf("Prune: %d, %v; want 5", n, err)
	}
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(6, 10)) {
		t.Fatalf("feed: %v", ids)
	}
	// Later, everything has expired.
	if n, err := db.Prune(ctx, now.Add(24*time.Hour)); err != nil || n != 5 {
		t.Fatalf("Prune a day later: %d, %v", n, err)
	}
	if e := mustAppend(t, db, c.ID, now, "v"); e.ID != 11 {
		t.Fatalf("next entry ID %d, want 11", e.ID)
	}

	// Deletion goes from the oldest ID on: an expired entry behind a
	// younger one waits for it, so the feed stays a run of IDs.
	d := mustChannel(t, db, "out of order")
	for _, age := range []int{120, 90, 61, 30, 100, 10} { // minutes; IDs 1..6
		mustAppend(t, db, d.ID, now.Add(-time.Duration(age)*time.Minute), "v")
	}
	withRetention(t, db, d, 0, time.Hour)
	if n, err := db.Prune(ctx, now); err != nil || n != 3 {
		t.Fatalf("Prune: %d, %v; want 3", n, err)
	}
	if ids := feedIDs(t, db, d.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(4, 6)) {
		t.Fatalf("feed with an old entry behind a young one: %v, want 4..6", ids)
	}
}

func testPruneBoth(t *testing.T, _ Suite, db Store) {
	ctx := t.Context()
	now := base
	c := mustChannel(t, db, "both")
	for i := range 20 { // 20 minutes ago .. 1 minute ago
		mustAppend(t, db, c.ID, now.Add(-time.Duration(20-i)*time.Minute), "v")
	}
	// MaxEntries is the stricter limit here...
	withRetention(t, db, c, 5, time.Hour)
	if n, err := db.Prune(ctx, now); err != nil || n != 15 {
		t.Fatalf("Prune: %d, %v; want 15", n, err)
	}
	// ...and MaxAge here: entries 16 and 17 are older than 3m30s.
	withRetention(t, db, c, 5, 3*time.Minute+30*time.Second)
	if n, err := db.Prune(ctx, now); err != nil || n != 2 {
		t.Fatalf("Prune: %d, %v; want 2", n, err)
	}
	if ids := feedIDs(t, db, c.ID, channels.EntryFilter{}); !slices.Equal(ids, seq(18, 20)) {
		t.Fatalf("feed: %v", ids)
	}
}
