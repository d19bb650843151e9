package broker

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// noStore is a store that anonymous connections that publish nothing
// never reach.
type noStore struct{ channels.Store }

// A listener's Close disconnects its clients itself, never through the
// CloseFn mochi hands it: mochi's lists the clients with
// Clients.GetByListener, whose nested read lock deadlocks with a client
// ending at the same time (mochi-mqtt/server#488). MQTT 5 clients get a
// DISCONNECT saying the server is shutting down, and every connection ends.
func TestListenerCloseDisconnectsClients(t *testing.T) {
	s, err := New(Options{MQTTAddr: "127.0.0.1:0", Anonymous: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		noStore{}, auth.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var conns []*mqtttest.Conn
	for _, v := range []byte{4, 5, 4} {
		c, err := mqtttest.Dial(s.Addr("mqtt").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if code, err := c.Connect(mqtttest.Connect{ClientID: "close-" + string('a'+rune(len(conns))), Clean: true, Version: v}); err != nil || code != 0 {
			t.Fatalf("connect v%d: %#x, %v", v, code, err)
		}
		conns = append(conns, c)
	}
	s.listeners["mqtt"].Close(func(id string) { t.Errorf("mochi's CloseFn called for %s", id) })
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, body, err := c.ReadPacket()
		if i == 1 && (err != nil || typ != mqtttest.DISCONNECT || len(body) == 0 || body[0] != 0x8B) {
			t.Errorf("MQTT 5 client: packet %d % x, %v; want DISCONNECT 0x8B (server shutting down)", typ, body, err)
		}
		for err == nil {
			_, _, err = c.ReadPacket()
		}
		if err != io.EOF {
			t.Errorf("client %d: connection ended with %v, want EOF", i, err)
		}
	}
}
