package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestPublishDroppedCounted: the hook asks mochi for OnPublishDropped and
// counts each drop in Stats.Dropped.
func TestPublishDroppedCounted(t *testing.T) {
	s := &Server{}
	s.stats.init()
	h := &hook{srv: s}
	if !h.Provides(mqtt.OnPublishDropped) {
		t.Fatal("hook does not provide OnPublishDropped")
	}
	h.OnPublishDropped(&mqtt.Client{}, packets.Packet{})
	h.OnPublishDropped(&mqtt.Client{}, packets.Packet{})
	if got := s.Stats().Dropped; got != 2 {
		t.Fatalf("Dropped = %d, want 2", got)
	}
}
