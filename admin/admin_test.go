package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// serveLocal opens a new data directory as serve does and returns its
// Local and a Client connected to its admin socket.
func serveLocal(t *testing.T) (*Local, *Client) {
	t.Helper()
	dir := t.TempDir()
	db, err := storage.Open(DBPath(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l, err := NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(dir, l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return l, c
}

// An error reads the same, has the same code and wraps the same sentinel
// whether it comes from the Local or through the socket.
func TestErrorsCrossTheSocket(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	ch, err := l.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := l.CreateDevice(ctx, auth.DeviceSpec{Name: "d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc     string
		op       func(s Service) error
		sentinel error
	}{
		{"missing channel", func(s Service) error { _, err := s.Channel(ctx, 9); return err }, channels.ErrChannelNotFound},
		{"grant on a missing channel", func(s Service) error {
			_, err := s.AuthorizeDevice(ctx, creds.Device.ID, []auth.Grant{{ChannelID: 9, Publish: true}})
			return err
		}, channels.ErrChannelNotFound},
		{"missing device", func(s Service) error { return s.DeleteDevice(ctx, 9) }, auth.ErrDeviceNotFound},
		{"missing grant", func(s Service) error { _, err := s.DeauthorizeDevice(ctx, creds.Device.ID, ch.ID); return err }, auth.ErrNoGrant},
	} {
		local, remote := tc.op(l), tc.op(c)
		if !errors.Is(local, tc.sentinel) || !errors.Is(remote, tc.sentinel) {
			t.Errorf("%s: local %v, remote %v: want both to wrap %v", tc.desc, local, remote, tc.sentinel)
			continue
		}
		if local.Error() != remote.Error() || channels.ErrorCode(local) != channels.ErrorCode(remote) {
			t.Errorf("%s: local %q (%s), remote %q (%s)", tc.desc, local, channels.ErrorCode(local), remote, channels.ErrorCode(remote))
		}
	}
}

// An error without a sentinel keeps its code and message and wraps none.
func TestErrorWithoutSentinel(t *testing.T) {
	_, c := serveLocal(t)
	_, err := c.CreateChannel(context.Background(), auth.ChannelSpec{})
	var e *channels.Error
	if !errors.As(err, &e) || e.Code != channels.EINVALID || e.Err != nil {
		t.Fatalf("got %#v", err)
	}
}

// Channel settings travel through the socket unchanged, and an empty tag
// list (not a nil one) removes the tags there too.
func TestChannelSettingsCrossTheSocket(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	spec := auth.ChannelSpec{Name: "c", Latitude: "1.5", Longitude: "-2", Elevation: "3", Metadata: "m\n",
		Tags: []string{"a", "b"}, URL: "https://example.com/"}
	remote, err := c.CreateChannel(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	local, err := l.Channel(ctx, remote.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(remote, local) || local.Metadata != "m\n" || !reflect.DeepEqual(local.Tags, spec.Tags) {
		t.Fatalf("through the socket\n%+v\nstored\n%+v", remote, local)
	}
	none, url := []string{}, "http://example.org"
	remote, err = c.UpdateChannel(ctx, remote.ID, auth.ChannelUpdate{Tags: &none, URL: &url})
	if err != nil || remote.Tags != nil || remote.URL != url || remote.Latitude != "1.5" {
		t.Fatalf("update through the socket: %+v, %v", remote, err)
	}
	bad := "91"
	_, err = c.UpdateChannel(ctx, remote.ID, auth.ChannelUpdate{Latitude: &bad})
	if channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "latitude") {
		t.Fatalf("bad latitude through the socket: %v", err)
	}
}

// UpdateDevice works the same through the socket as locally: it changes
// the name, description and grants, never sends the password hash, and
// its errors keep their code, message and sentinel.
func TestUpdateDeviceCrossesTheSocket(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	var chs []uint64
	for range auth.DefaultLimits().MaxChannelsPerDevice + 1 {
		ch, err := l.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
		if err != nil {
			t.Fatal(err)
		}
		chs = append(chs, ch.ID)
	}
	creds, err := c.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Description: "first", Grants: []auth.Grant{{ChannelID: chs[0], Publish: true}}})
	if err != nil {
		t.Fatal(err)
	}
	id := creds.Device.ID
	if creds.Device.Description != "first" || creds.Device.PasswordHash != "" || creds.Password == "" {
		t.Fatalf("created through the socket: %+v", creds)
	}

	name, desc := "renamed", "second"
	grants := []auth.Grant{{ChannelID: chs[1], Subscribe: true}}
	d, err := c.UpdateDevice(ctx, id, auth.DeviceUpdate{Name: &name, Description: &desc, Grants: &grants})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != name || d.Description != desc || !reflect.DeepEqual(d.Channels, grants) || d.PasswordHash != "" {
		t.Fatalf("updated through the socket: %+v", d)
	}
	stored, err := l.Device(ctx, id)
	if err != nil || stored.Name != name || stored.Description != desc || !reflect.DeepEqual(stored.Channels, grants) {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	if err := l.Registry.CanPublish(id, chs[0], ""); !errors.Is(err, auth.ErrNotAuthorized) {
		t.Fatalf("the replaced publish grant still works: %v", err)
	}

	// A nil list behind the pointer removes every grant there too.
	var none []auth.Grant
	if d, err = c.UpdateDevice(ctx, id, auth.DeviceUpdate{Grants: &none}); err != nil || len(d.Channels) != 0 {
		t.Fatalf("removing grants through the socket: %+v, %v", d, err)
	}

	all := make([]auth.Grant, len(chs))
	for i, ch := range chs {
		all[i] = auth.Grant{ChannelID: ch, Publish: true}
	}
	long := strings.Repeat("x", channels.MaxDescriptionLen+1)
	for _, tc := range []struct {
		desc     string
		u        auth.DeviceUpdate
		id       uint64
		code     string
		sentinel error
	}{
		{"missing device", auth.DeviceUpdate{Name: &name}, 99, channels.ENOTFOUND, auth.ErrDeviceNotFound},
		{"missing channel", auth.DeviceUpdate{Grants: &[]auth.Grant{{ChannelID: 99, Publish: true}}}, id, channels.ENOTFOUND, channels.ErrChannelNotFound},
		{"over the limit", auth.DeviceUpdate{Grants: &all}, id, channels.ELIMIT, nil},
		{"long description", auth.DeviceUpdate{Description: &long}, id, channels.EINVALID, nil},
	} {
		_, local := l.UpdateDevice(ctx, tc.id, tc.u)
		_, remote := c.UpdateDevice(ctx, tc.id, tc.u)
		if channels.ErrorCode(local) != tc.code || channels.ErrorCode(remote) != tc.code || local.Error() != remote.Error() {
			t.Errorf("%s: local %v, remote %v; want code %s", tc.desc, local, remote, tc.code)
		}
		if tc.sentinel != nil && (!errors.Is(local, tc.sentinel) || !errors.Is(remote, tc.sentinel)) {
			t.Errorf("%s: local %v, remote %v; want both to wrap %v", tc.desc, local, remote, tc.sentinel)
		}
	}
	if after, _ := l.Device(ctx, id); after.Name != name || after.Description != desc || len(after.Channels) != 0 {
		t.Fatalf("refused updates changed the device: %+v", after)
	}
}
