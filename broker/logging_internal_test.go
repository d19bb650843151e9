package broker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/safelog"
)

func TestMochiLogsFiltered(t *testing.T) {
	var buf bytes.Buffer
	root := safelog.New(slog.NewTextHandler(&buf, nil), 0)
	log := slog.New(mochiHandler{root})
	const key = "AB12CD34EF56GH78"
	pk := packets.Packet{TopicName: "channels/1/publish/" + key, Payload: bytes.Repeat([]byte("x"), 60000)}
	log.Warn("error processing packet", "client", "c", "pk", pk)
	log.Error("publish packet error", "error", errors.New("x"), "packet", pk)
	if buf.Len() != 0 {
		t.Fatalf("logged %q", buf.String())
	}
	log.Error("something broke", "client", strings.Repeat("c", 60000)+key, "pk", pk)
	if out := buf.String(); !strings.Contains(out, "something broke") || strings.Contains(out, key) || len(out) > 600 {
		t.Fatalf("logged %d bytes: %q", len(out), out)
	}
}

// A logger that its caller already made safe is used as it is: the
// broker's lines share the caller's rate limit instead of passing a second
// one. A plain logger is wrapped.
func TestNewLoggerWrappedOnce(t *testing.T) {
	var buf bytes.Buffer
	safe := safelog.New(slog.NewTextHandler(&buf, nil), 5)
	s, err := New(Options{MQTTAddr: "off", Logger: slog.New(safe), LogRate: 1000}, noStore{}, auth.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.log.Handler() != safe {
		t.Fatalf("the broker wrapped a safe logger again: %#v", s.log.Handler())
	}
	plain, err := New(Options{MQTTAddr: "off", Logger: slog.New(slog.NewTextHandler(&buf, nil))}, noStore{}, auth.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !safelog.IsSafe(plain.log.Handler()) {
		t.Fatal("the broker logs through a plain handler")
	}
}
