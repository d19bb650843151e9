package natstest_test

import (
	"net"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/feedmq/feedmq/internal/natstest"
)

// Start listens on a loopback port of its own choosing, not 4222.
func TestStartLoopbackFreePort(t *testing.T) {
	s := natstest.Start(t, natsserver.Options{})
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() || addr.Port == 4222 || addr.Port <= 0 {
		t.Fatalf("listening on %v, want a free loopback port", s.Addr())
	}
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("client URL %s", s.ClientURL())
	}
}
