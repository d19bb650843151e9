package broker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestLogTextMasksKeysAndCuts(t *testing.T) {
	const key = "AB12CD34EF56GH78"
	for in, want := range map[string]string{
		"channels/7/publish/" + key:                      "channels/7/publish/<key>",
		"channels/7/subscribe/" + key + "X":              "channels/7/subscribe/<key>",
		"client-" + key + "-x":                           "client-<key>-x",
		"channels/7/subscribe/fields/field1":             "channels/7/subscribe/fields/field1",
		"devices/ABC/sensors/T1/value":                   "devices/ABC/sensors/T1/value",
		"pWCgR0Rl3XTiiJVyGZMyvF0":                        "pWCgR0Rl3XTiiJVyGZMyvF0",
		"level after subscribe must be json, not " + key: "level after subscribe must be json, not <key>",
	} {
		if got := logText(in); got != want {
			t.Errorf("logText(%q) = %q, want %q", in, got, want)
		}
	}
	long := logText(strings.Repeat("é", 40000) + key)
	if len(long) > maxLogValue+32 || strings.Contains(long, key) || !strings.HasSuffix(long, "(80016 bytes)") {
		t.Errorf("long value logged as %d bytes: ...%s", len(long), long[max(0, len(long)-40):])
	}
	long = logText(strings.Repeat("a/", 30000) + key)
	if len(long) > maxLogValue+32 || strings.Contains(long, key) {
		t.Errorf("long topic logged as %d bytes", len(long))
	}
}

func TestMochiLogsFiltered(t *testing.T) {
	var buf bytes.Buffer
	root := newSafeHandler(slog.NewTextHandler(&buf, nil), 0)
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

func TestLogLimiter(t *testing.T) {
	var buf bytes.Buffer
	root := newSafeHandler(slog.NewTextHandler(&buf, nil), 20)
	log := slog.New(root)
	for i := 0; i < 1000; i++ {
		log.Info("client connected", "n", i)
	}
	log.Warn("publish rejected") // another message still gets through
	out := buf.String()
	if n := strings.Count(out, "client connected"); n < 10 || n > 60 {
		t.Errorf("%d of 1000 connection lines logged, want the first few tens", n)
	}
	if !strings.Contains(out, "publish rejected") {
		t.Error("a flood of one message hid another")
	}
	buf.Reset()
	root.lim.summarize()
	if out := buf.String(); !strings.Contains(out, "suppressed=") || !strings.Contains(out, "client connected") {
		t.Errorf("summary %q", out)
	}
}

// TestLogLimiterKeepsErrors: a flood of several kinds of attacker-driven
// lines (connections, refusals) spends the overall budget; an error line
// (a failing store, a listener that cannot accept) must still be logged.
func TestLogLimiterKeepsErrors(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newSafeHandler(slog.NewTextHandler(&buf, nil), 20))
	for i := 0; i < 1000; i++ {
		for _, msg := range []string{"client connected", "client disconnected", "connection refused", "publish rejected"} {
			log.Info(msg, "n", i)
		}
	}
	log.Error("accept failed; retrying", "error", "too many open files")
	if !strings.Contains(buf.String(), "accept failed") {
		t.Error("a flood of info lines hid an error")
	}
}
