package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
	svc, err := auth.NewService(context.Background(), db, db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLocal(svc, db)
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
