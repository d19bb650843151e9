package auth_test

import (
	"testing"

	"github.com/feedmq/feedmq/auth"
)

func TestDefaultLimits(t *testing.T) {
	if got := auth.DefaultLimits(); got != (auth.Limits{MaxDevices: 100, MaxChannelsPerDevice: 10, MaxBindingsPerChannel: 10, MaxBindings: 200}) {
		t.Fatalf("DefaultLimits() = %+v, want 100 devices and 10 channels per device", got)
	}
}
