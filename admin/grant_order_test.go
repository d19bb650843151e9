package admin_test

import (
	"context"
	"errors"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// A grant on a missing channel is reported as the missing channel (what
// the CLI turns into "channel N not found; see `feedmq channel list`"),
// even when the grants would also exceed the per-device channel limit:
// fixing the limit first would only lead to the other error.
func TestLocal_MissingChannelBeforeChannelLimit(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.Limits{MaxDevices: 10, MaxChannelsPerDevice: 1})
	c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "c"})
	const missing = 99
	wantMissing := func(t *testing.T, err error) {
		t.Helper()
		wantCode(t, err, channels.ENOTFOUND)
		if !errors.Is(err, channels.ErrChannelNotFound) {
			t.Fatalf("error %v does not wrap channels.ErrChannelNotFound", err)
		}
	}

	t.Run("create", func(t *testing.T) {
		_, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Grants: []auth.Grant{pub(c.ID), pub(missing)}})
		wantMissing(t, err)
	})
	t.Run("authorize", func(t *testing.T) {
		cr := mustCreateDevice(t, s, "d", pub(c.ID))
		_, err := s.AuthorizeDevice(ctx, cr.Device.ID, []auth.Grant{sub(missing)})
		wantMissing(t, err)
	})
}
