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

// TestHookProvides checks the event sets mochi asks each hook about:
// the events a hook implements answer true, every other event false (a
// hook that claimed an event it does not implement would be run by mochi
// as HookBase's no-op, and one that missed an event would never see it).
func TestHookProvides(t *testing.T) {
	sessions := &sessionStore{}
	tests := []struct {
		name string
		h    mqtt.Hook
		want []byte
	}{
		{"feedmq", &hook{}, []byte{
			mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished,
			mqtt.OnDisconnect, mqtt.OnACLCheck, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnPublish,
			mqtt.OnPublishDropped, mqtt.OnPacketRead, mqtt.OnPacketEncode,
			mqtt.OnSessionEstablish, mqtt.OnWill, mqtt.OnRetainMessage, mqtt.OnRetainedExpired,
			mqtt.OnClientExpired, mqtt.OnQosPublish,
		}},
		{"forward", &forwardHook{}, []byte{mqtt.OnPublished, mqtt.OnWillSent}},
		{"sessions", sessions, []byte{
			mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
			mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
			mqtt.OnClientExpired, mqtt.OnRetainedExpired,
			mqtt.StoredClients, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages, mqtt.StoredSubscriptions,
		}},
	}
	for _, tt := range tests {
		want := make(map[byte]bool)
		for _, e := range tt.want {
			want[e] = true
		}
		for e := 0; e < 256; e++ {
			if got := tt.h.Provides(byte(e)); got != want[byte(e)] {
				t.Errorf("%s: Provides(%d) = %v, want %v", tt.name, e, got, want[byte(e)])
			}
		}
	}
}
