package storage_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

func TestChannel_CRUD(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)

	c := NewChannel("weather")
	c.Description = "roof sensors"
	c.Public = true
	c.Fields = [channels.NumFields]string{"Temperature", "Humidity"}
	c.RateLimit = 15 * time.Second
	if err := db.CreateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.ID != 1 || !c.CreatedAt.Equal(now) || !c.UpdatedAt.Equal(now) {
		t.Fatalf("created channel = %+v", c)
	}
	if c2 := MustCreateChannel(t, db, "second"); c2.ID != 2 {
		t.Fatalf("second channel ID = %d, want 2", c2.ID)
	}

	got, err := db.FindChannel(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("FindChannel =\n%+v\nwant\n%+v", got, c)
	}

	got.Name = "renamed"
	got.CreatedAt = time.Time{} // the store keeps the original
	if err := db.UpdateChannel(ctx, got); err != nil {
		t.Fatal(err)
	}
	if again, _ := db.FindChannel(ctx, 1); again.Name != "renamed" || !again.CreatedAt.Equal(now) {
		t.Fatalf("after update = %+v", again)
	}

	list, err := db.ListChannels(ctx)
	if err != nil || len(list) != 2 || list[0].ID != 1 || list[1].ID != 2 {
		t.Fatalf("ListChannels = %v, %v", list, err)
	}

	if err := db.DeleteChannel(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, err = db.FindChannel(ctx, 1)
	wantCode(t, err, channels.ENOTFOUND)
	if c3 := MustCreateChannel(t, db, "third"); c3.ID != 3 {
		t.Fatalf("IDs must not be reused: got %d, want 3", c3.ID)
	}
}

func TestChannel_Errors(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)

	wantCode(t, db.CreateChannel(ctx, &channels.Channel{}), channels.EINVALID)
	missing := NewChannel("x")
	missing.ID = 9
	wantCode(t, db.UpdateChannel(ctx, missing), channels.ENOTFOUND)
	wantCode(t, db.DeleteChannel(ctx, 9), channels.ENOTFOUND)
	wantCode(t, db.ClearChannel(ctx, 9), channels.ENOTFOUND)
	_, err := db.FindChannel(ctx, 9)
	wantCode(t, err, channels.ENOTFOUND)
	_, err = db.Entries(ctx, 9, channels.EntryFilter{})
	wantCode(t, err, channels.ENOTFOUND)
	_, err = db.FindEntry(ctx, 9, 1)
	wantCode(t, err, channels.ENOTFOUND)
	wantCode(t, db.AppendEntry(ctx, &channels.Entry{ChannelID: 9, Set: 1}), channels.ENOTFOUND)
	if list, err := db.ListChannels(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListChannels on empty DB = %v, %v", list, err)
	}
}

func TestChannel_UpdateKeepsFeed(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	MustAppend(t, db, c.ID, "1")
	MustAppend(t, db, c.ID, "2")
	c.LastEntryID = 0
	if err := db.UpdateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.LastEntryID != 2 {
		t.Fatalf("UpdateChannel left LastEntryID = %d, want 2", c.LastEntryID)
	}
	if e := MustAppend(t, db, c.ID, "3"); e.ID != 3 {
		t.Fatalf("entry after update has ID %d, want 3", e.ID)
	}
}

func TestChannel_Clear(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	for i := 0; i < 3; i++ {
		MustAppend(t, db, c.ID, "v")
	}
	if err := db.ClearChannel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if list, err := db.Entries(ctx, c.ID, channels.EntryFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("Entries after clear = %v, %v", list, err)
	}
	if got, _ := db.FindChannel(ctx, c.ID); got.LastEntryID != 0 {
		t.Fatalf("LastEntryID after clear = %d, want 0", got.LastEntryID)
	}
	if e := MustAppend(t, db, c.ID, "v"); e.ID != 1 {
		t.Fatalf("first entry after clear has ID %d, want 1", e.ID)
	}
}

func TestChannel_DeleteRemovesFeedAndGrants(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	a, b := MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b")
	MustAppend(t, db, a.ID, "v")
	d1 := MustCreateDevice(t, db, "d1", auth.Grant{ChannelID: a.ID, Publish: true}, auth.Grant{ChannelID: b.ID, Subscribe: true})
	d2 := MustCreateDevice(t, db, "d2", auth.Grant{ChannelID: a.ID, Subscribe: true})
	d3 := MustCreateDevice(t, db, "d3", auth.Grant{ChannelID: b.ID, Publish: true})

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
		if !reflect.DeepEqual(d.Channels, grants) {
			t.Errorf("device %d grants = %+v, want %+v", id, d.Channels, grants)
		}
	}
	wantCode(t, db.AppendEntry(ctx, &channels.Entry{ChannelID: a.ID, Set: 1}), channels.ENOTFOUND)
}

func TestChannel_SettingsRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	c := NewChannel("station")
	c.Latitude, c.Longitude, c.Elevation = "52.5163", "-13.3777", "34.5"
	c.Metadata = "{\"owner\":\"me\"}\n<x/>"
	c.Tags = []string{"roof", "weather station"}
	c.URL = "https://example.com/station"
	if err := db.CreateChannel(ctx, c); err != nil {
		t.Fatal(err)
	}
	db = MustReopen(t, db)
	got, err := db.FindChannel(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("after reopen\n%+v\nwant\n%+v", got, c)
	}

	// An update can unset every one of them again.
	got.Latitude, got.Longitude, got.Elevation, got.Metadata, got.Tags, got.URL = "", "", "", "", nil, ""
	if err := db.UpdateChannel(ctx, got); err != nil {
		t.Fatal(err)
	}
	db = MustReopen(t, db)
	again, err := db.FindChannel(ctx, c.ID)
	if err != nil || again.Latitude != "" || again.Longitude != "" || again.Elevation != "" || again.Metadata != "" || again.Tags != nil || again.URL != "" {
		t.Fatalf("after unsetting: %+v, %v", again, err)
	}

	// The store refuses what Validate refuses, naming the field.
	bad := NewChannel("bad")
	bad.Latitude = "91"
	if err := db.CreateChannel(ctx, bad); channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "latitude") {
		t.Fatalf("latitude 91: %v", err)
	}
}
