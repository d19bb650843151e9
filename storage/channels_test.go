package storage_test

import (
	"context"
	"reflect"
	"testing"
)

// Every setting survives closing and reopening the file, and unsetting
// too. (storetest's suite checks the settings' round trip on every store;
// a reopen is this store's own.)
func TestChannel_SettingsSurviveReopen(t *testing.T) {
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
}
