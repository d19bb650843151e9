package broker_test

import (
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestConnectionStats: accepted connections are counted per listener and
// live while connected; refused CONNECTs are counted by reason.
func TestConnectionStats(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: false})
	dev := ts.device()
	c := rawDevice(t, ts.addr, dev, 4)

	bad := *dev
	bad.Password = "wrong"
	if _, code, _ := connect(t, ts.addr, &bad, 4); code != 0x04 {
		t.Fatalf("bad password: CONNACK %#x", code)
	}
	anon := dial(t, ts.addr)
	if code, err := anon.Connect(mqtttest.Connect{ClientID: "anon", Clean: true}); err != nil || code != 0x05 {
		t.Fatalf("anonymous: CONNACK %#x %v", code, err)
	}

	st := ts.srv.Stats()
	if len(st.Connections) != 1 {
		t.Errorf("connections by listener %v, want only mqtt", st.Connections)
	}
	if got := st.Connections["mqtt"]; got.Live != 1 || got.Accepted != 1 {
		t.Errorf("mqtt listener %+v, want 1 live, 1 accepted", got)
	}
	for reason, want := range map[string]uint64{"bad_credentials": 1, "anonymous_disabled": 1,
		"persistent_session": 0, "throttled": 0, "max_connections": 0, "bad_client_id": 0, "shutting_down": 0} {
		if got, ok := st.Refused[reason]; !ok || got != want {
			t.Errorf("refused %s = %d (present %v), want %d", reason, got, ok, want)
		}
	}

	c.Disconnect()
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.Stats().Connections["mqtt"].Live != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("live connections after disconnect: %+v", ts.srv.Stats().Connections["mqtt"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := ts.srv.Stats().Connections["mqtt"].Accepted; got != 1 {
		t.Errorf("accepted after disconnect = %d", got)
	}
}
