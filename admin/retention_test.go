package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

func TestLocal_ChannelRetention(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "r", MaxEntries: 10, MaxAge: time.Hour})
	if c.MaxEntries != 10 || c.MaxAge != time.Hour {
		t.Fatalf("created %+v", c)
	}
	zero, age := uint64(0), 2*time.Hour
	c, err := s.UpdateChannel(ctx, c.ID, auth.ChannelUpdate{MaxEntries: &zero, MaxAge: &age})
	if err != nil || c.MaxEntries != 0 || c.MaxAge != 2*time.Hour {
		t.Fatalf("updated %+v, %v", c, err)
	}
	if got := mustFindChannel(t, s, c.ID); got.MaxEntries != 0 || got.MaxAge != 2*time.Hour {
		t.Fatalf("stored %+v", got)
	}
	neg := -time.Minute
	if _, err := s.UpdateChannel(ctx, c.ID, auth.ChannelUpdate{MaxAge: &neg}); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("negative max age: %v", err)
	}
	if _, err := s.CreateChannel(ctx, auth.ChannelSpec{Name: "n", MaxAge: -1}); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("negative max age: %v", err)
	}
}
