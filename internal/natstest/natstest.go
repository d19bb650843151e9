// Package natstest runs NATS servers inside test processes, on loopback
// ports, stopped when the test ends.
package natstest

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Start starts a NATS server with options o on 127.0.0.1, quiet and
// without signal handlers; o.Port 0 picks a free port (the server's own
// default would be the well-known 4222). It fails the test if the server
// does not take connections within 10 s, and shuts it down at cleanup.
func Start(tb testing.TB, o natsserver.Options) *natsserver.Server {
	tb.Helper()
	o.Host, o.NoLog, o.NoSigs = "127.0.0.1", true, true
	if o.Port == 0 {
		o.Port = -1
	}
	s, err := natsserver.NewServer(&o)
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("NATS server did not start")
	}
	tb.Cleanup(s.Shutdown)
	return s
}
