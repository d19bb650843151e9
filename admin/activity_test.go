package admin

import (
	"context"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
)

// DeviceActivity answers what the Activity hook says, the same through
// the socket, and an empty map (never nil) without a hook: an offline
// database has no live connections.
func TestDeviceActivity(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	for _, s := range []Service{l, c} {
		got, err := s.DeviceActivity(ctx)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("%T without a broker: %v %v, want an empty map", s, got, err)
		}
	}
	offline, err := Open(ctx, t.TempDir(), Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer offline.Close()
	if got, err := offline.DeviceActivity(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("offline: %v %v, want an empty map", got, err)
	}

	since := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	last := since.Add(90 * time.Second)
	want := map[uint64]auth.Activity{
		3: {Connections: []auth.Connection{{ClientID: "c3", RemoteAddr: "127.0.0.1:50000", Listener: "mqtts", Since: since}}, LastPublish: &last},
		7: {Connections: []auth.Connection{}, LastPublish: &last},
	}
	l.Activity = func() map[uint64]auth.Activity { return want }
	for _, s := range []Service{l, c} {
		got, err := s.DeviceActivity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || len(got[3].Connections) != 1 || got[3].Connections[0] != want[3].Connections[0] ||
			!got[3].LastPublish.Equal(last) || got[7].Connections == nil || len(got[7].Connections) != 0 {
			t.Fatalf("%T: got %+v, want %+v", s, got, want)
		}
	}
	l.Activity = func() map[uint64]auth.Activity { return nil }
	if got, err := c.DeviceActivity(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("hook answering nil: %v %v, want an empty map", got, err)
	}
}
