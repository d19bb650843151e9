package main

import (
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/internal/fdlimit"
)

// serve warns when the open-file limit caps connections below
// max_connections, or (without max_connections) below fewOpenFiles.
func TestCheckFileLimit(t *testing.T) {
	soft, _, err := fdlimit.Raise(0)
	if err != nil {
		t.Skip("no open file limit here:", err)
	}
	check := func(maxConns int) string {
		var b strings.Builder
		checkFileLimit(slog.New(slog.NewTextHandler(&b, nil)), maxConns)
		return b.String()
	}
	if got := check(math.MaxInt32); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "max_connections=2147483647") {
		t.Errorf("max_connections above the limit: %q", got)
	}
	if got := check(1); got != "" {
		t.Errorf("max_connections 1: %q", got)
	}
	got := check(0)
	if warn := soft < fewOpenFiles; warn != strings.Contains(got, "caps MQTT connections") {
		t.Errorf("open_files %d, no max_connections: %q", soft, got)
	}
}
