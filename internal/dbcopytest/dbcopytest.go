// Package dbcopytest fills a database with one of everything a copy must
// carry over, for the copy tests of each engine.
package dbcopytest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/dbcopy"
)

// Store is what Fill writes through: the everyday writes and the loads.
type Store interface {
	dbcopy.Destination
	CreateChannel(ctx context.Context, c *channels.Channel) error
	UpdateChannel(ctx context.Context, c *channels.Channel) error
	AppendEntry(ctx context.Context, e *channels.Entry) error
	CreateDevice(ctx context.Context, d *auth.Device) error
	CreateBinding(ctx context.Context, b *channels.Binding) error
}

// Base is the creation time of the entries Fill writes.
var Base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Fill stores, through the everyday writes where they serve:
//   - channel 1 with every setting, five entries (one back-dated, one
//     setting all twelve values, some empty or non-ASCII);
//   - channel 2, deleted (a gap in the IDs);
//   - channel 3 with entries 10, 11 and 15 kept from elsewhere and last
//     entry_id 20 (retention took the newest);
//   - channel 4 without entries; channel 5, deleted (the counter is 5);
//   - devices 1 (grants out of ID order, rules) and 3 (a description, no
//     grants); 2 and 4 deleted;
//   - bindings 1 and 2; 3 deleted;
//   - the owner account and shared access rules.
func Fill(tb testing.TB, s Store) {
	tb.Helper()
	ctx := context.Background()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	ch := func(name string) *channels.Channel {
		c := &channels.Channel{Name: name, Fields: channels.DefaultFields(), WriteKey: "WRITEKEY0000000" + strings.ToUpper(name[:1]), ReadKey: "READKEY00000000" + strings.ToUpper(name[:1])}
		must(s.CreateChannel(ctx, c))
		return c
	}
	c1 := &channels.Channel{
		Name: "weather", Description: "roof\tstation\nnorth", Public: true,
		Fields:   [channels.NumFields]string{"Temperature", "Humidity", "", "Wind ✓", "", "", "", "Battery"},
		WriteKey: "WRITEKEY0000000W", ReadKey: "READKEY00000000W",
		MaxEntries: 1000, MaxAge: 72 * time.Hour,
		Latitude: "52.5163", Longitude: "-13.3777", Elevation: "34.5",
		Metadata: `{"site":"berlin"}`, Tags: []string{"outdoor", "roof top", "ünïcode"}, URL: "https://example.com/station?id=1",
	}
	must(s.CreateChannel(ctx, c1))
	c2 := ch("gone")
	c3 := ch("kept")
	ch("empty")
	c5 := ch("last")
	must(s.DeleteChannel(ctx, c2.ID))
	must(s.DeleteChannel(ctx, c5.ID))

	for i, sec := range []int{0, 60, 120, 90, 180} { // the fourth is back-dated
		e := &channels.Entry{ChannelID: c1.ID, CreatedAt: Base.Add(time.Duration(sec) * time.Second)}
		e.SetValue(0, []string{"20.5", "-3", "", "1e3", "21"}[i])
		if i == 2 {
			for v := 1; v < channels.NumValues; v++ {
				e.SetValue(v, []string{"x", "ä ö ü", "", "52.1", "13.2", "40", "status: ok, \"quoted\"", "", "", "", ""}[v-1])
			}
		}
		must(s.AppendEntry(ctx, e))
	}
	// The rate limit comes after the entries: a store may enforce it.
	c1.RateLimit = 15 * time.Second
	must(s.UpdateChannel(ctx, c1))
	var kept []channels.Entry
	for _, id := range []uint64{10, 11, 15} {
		e := channels.Entry{ChannelID: c3.ID, ID: id, CreatedAt: Base.Add(time.Duration(id) * time.Minute)}
		e.SetValue(channels.Status, "kept")
		kept = append(kept, e)
	}
	must(s.LoadEntries(ctx, c3.ID, kept))
	must(s.RaiseLastEntryID(ctx, c3.ID, 20))

	dev := func(name string, grants ...auth.Grant) *auth.Device {
		d := &auth.Device{Name: name, ClientID: name, Username: name, PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA", Channels: grants}
		must(s.CreateDevice(ctx, d))
		return d
	}
	d1 := &auth.Device{Name: "sensor one", ClientID: "DEVICEONE000001", Username: "DEVICEONE000001", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$b25l",
		Channels: []auth.Grant{{ChannelID: c3.ID, Publish: true}, {ChannelID: c1.ID, Publish: true, Subscribe: true}},
		Rules:    []auth.Rule{{Access: auth.AccessRead, Pattern: "sensors/#"}, {Access: auth.AccessDeny, Pattern: "sensors/secret"}, {Access: auth.AccessReadWrite, Pattern: "home/%u/#"}}}
	must(s.CreateDevice(ctx, d1))
	d2 := dev("two", auth.Grant{ChannelID: c1.ID, Subscribe: true})
	d3 := &auth.Device{Name: "three", Description: "in the cellar", ClientID: "three", Username: "three", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$dGhyZWU"}
	must(s.CreateDevice(ctx, d3))
	d4 := dev("four")
	must(s.DeleteDevice(ctx, d2.ID))
	must(s.DeleteDevice(ctx, d4.ID))

	for i, b := range []*channels.Binding{
		{ChannelID: c1.ID, Topic: "zigbee2mqtt/+/state", Fields: [channels.NumFields]string{"$.temperature", "$.humidity"}, Status: "$.battery", CreatedAt: "$.time"},
		{ChannelID: c3.ID, Topic: "tele/+/SENSOR", Fields: [channels.NumFields]string{"", "$.a[0]"}, Latitude: "$.lat", Longitude: "$.lon", Elevation: "$.alt"},
		{ChannelID: c1.ID, Topic: "x/#", Fields: [channels.NumFields]string{"$"}},
	} {
		must(s.CreateBinding(ctx, b))
		if i == 2 {
			must(s.DeleteBinding(ctx, b.ID))
		}
	}
	must(s.PutAccount(ctx, &auth.Account{UserAPIKey: "USERKEY000000001", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$b3duZXI",
		PasswordChangedAt: time.Date(2026, 4, 2, 3, 4, 5, 123456000, time.UTC)}))
	anon := []auth.Rule{{Access: auth.AccessRead, Pattern: "public/#"}}
	every := []auth.Rule{{Access: auth.AccessDeny, Pattern: "admin/#"}, {Access: auth.AccessReadWrite, Pattern: "home/%c/#"}}
	_, err := s.SetRules(ctx, auth.RulesChange{Anonymous: &anon, Everyone: &every})
	must(err)
}

// MustSame fails the test when a and b differ.
func MustSame(tb testing.TB, a, b dbcopy.Source) {
	tb.Helper()
	diffs, err := dbcopy.Diff(context.Background(), a, b, 2)
	if err != nil {
		tb.Fatal(err)
	}
	for _, d := range diffs {
		tb.Error(d)
	}
	if len(diffs) > 0 {
		tb.FailNow()
	}
}

// OpenBolt opens an empty bbolt database in a temporary directory.
func OpenBolt(tb testing.TB) *storage.DB {
	tb.Helper()
	db, err := storage.Open(filepath.Join(tb.TempDir(), "feedmq.db"), storage.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// MustNumberOn checks that s, a copy of what Fill stores, numbers new
// channels, entries, devices and bindings on where the original would:
// after the highest ID ever given, deleted ones and last entry_ids
// included. It writes one of each to s.
func MustNumberOn(tb testing.TB, s Store) {
	tb.Helper()
	ctx := context.Background()
	c := &channels.Channel{Name: "new", Fields: channels.DefaultFields(), WriteKey: "WRITEKEY0000000N", ReadKey: "READKEY00000000N"}
	if err := s.CreateChannel(ctx, c); err != nil || c.ID != 6 {
		tb.Fatalf("new channel: ID %d, %v; want 6", c.ID, err)
	}
	for ch, want := range map[uint64]uint64{1: 6, 3: 21, 4: 1} {
		e := &channels.Entry{ChannelID: ch}
		e.SetValue(0, "1")
		if err := s.AppendEntry(ctx, e); err != nil || e.ID != want {
			tb.Fatalf("append to channel %d: ID %d, %v; want %d", ch, e.ID, err, want)
		}
	}
	d := &auth.Device{Name: "n", ClientID: "n", Username: "n", PasswordHash: "h"}
	if err := s.CreateDevice(ctx, d); err != nil || d.ID != 5 {
		tb.Fatalf("new device: ID %d, %v; want 5", d.ID, err)
	}
	b := &channels.Binding{ChannelID: 1, Topic: "new/#", Fields: [8]string{"$"}}
	if err := s.CreateBinding(ctx, b); err != nil || b.ID != 4 {
		tb.Fatalf("new binding: ID %d, %v; want 4", b.ID, err)
	}
}
