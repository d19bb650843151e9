package safelog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestLogTextMasksKeysAndCuts(t *testing.T) {
	const key = "AB12CD34EF56GH78"
	for in, want := range map[string]string{
		"channels/7/publish/" + key:                      "channels/7/publish/<key>",
		"channels/7/subscribe/" + key + "X":              "channels/7/subscribe/<key>",
		"client-" + key + "-x":                           "client-<key>-x",
		"/channels/7/feeds/" + key + ".json":             "/channels/7/feeds/<key>.json",
		"channels/7/subscribe/fields/field1":             "channels/7/subscribe/fields/field1",
		"devices/ABC/sensors/T1/value":                   "devices/ABC/sensors/T1/value",
		"pWCgR0Rl3XTiiJVyGZMyvF0":                        "pWCgR0Rl3XTiiJVyGZMyvF0",
		"SIGHUP: TLS certificate reloaded":               "SIGHUP: TLS certificate reloaded",
		"level after subscribe must be json, not " + key: "level after subscribe must be json, not <key>",
		key[:15]: key[:15],
		key:      "<key>",
		"":       "",
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
	long := Text(strings.Repeat("é", 40000) + key)
	if len(long) > MaxValue+32 || strings.Contains(long, key) || !strings.HasSuffix(long, "(80016 bytes)") {
		t.Errorf("long value logged as %d bytes: ...%s", len(long), long[max(0, len(long)-40):])
	}
	long = Text(strings.Repeat("a/", 30000) + key)
	if len(long) > MaxValue+32 || strings.Contains(long, key) {
		t.Errorf("long topic logged as %d bytes", len(long))
	}
	// A key straddling the cut shows no more than a short prefix.
	long = Text(strings.Repeat("/", MaxValue-4) + key + strings.Repeat("/", 1000))
	if strings.Contains(long, key[:5]) {
		t.Errorf("a key at the cut shows: %q", long)
	}
}

// Every string a line carries is sanitized: attributes of any kind,
// attributes added with With, groups, and the message itself.
func TestLogLineSanitized(t *testing.T) {
	const key = "AB12CD34EF56GH78"
	var buf bytes.Buffer
	log := slog.New(New(slog.NewTextHandler(&buf, nil), 0)).With("client", "c-"+key)
	huge := strings.Repeat("p", 60000) + key
	log.WithGroup("req").Info("refused "+huge, "path", "/"+key+huge, "error", errors.New(huge),
		slog.Group("g", "v", huge), "any", []byte(huge))
	out := buf.String()
	if strings.Contains(out, key) || len(out) > 6*(MaxValue+32)+200 {
		t.Fatalf("logged %d bytes: %.2000q", len(out), out)
	}
	for _, want := range []string{"client=c-<key>", `req.path="/<key>ppp`, "(60016 bytes)", `msg="refused ppp`} {
		if !strings.Contains(out, want) {
			t.Errorf("line lacks %q: %.2000q", want, out)
		}
	}
}

func TestLogLimiter(t *testing.T) {
	var buf bytes.Buffer
	root := New(slog.NewTextHandler(&buf, nil), 20).(handler)
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

// Wrapping a wrapped handler or logger, or one derived from it with With
// or WithGroup, returns it unchanged: its lines are limited once, by the
// first limiter, whatever the second wrapping asks for.
func TestLogWrapIdempotent(t *testing.T) {
	var buf bytes.Buffer
	base := slog.NewTextHandler(&buf, nil)
	if IsSafe(base) {
		t.Fatal("a plain handler counts as safe")
	}
	safe := New(base, 2)
	if !IsSafe(safe) {
		t.Fatal("New's handler does not count as safe")
	}
	if h := New(safe, 1000); h != safe {
		t.Fatalf("New(New(h)) = %#v, want the same handler", h)
	}
	derived := safe.WithAttrs([]slog.Attr{slog.String("component", "http")}).WithGroup("g")
	if h := New(derived, 1000); h != derived {
		t.Fatalf("wrapping a derived handler made %#v", h)
	}
	l := slog.New(safe)
	if got := Logger(l, 1000); got != l {
		t.Fatal("Logger wrapped a safe logger again")
	}
	if got := Logger(l.With("component", "x"), 1000); !IsSafe(got.Handler()) || got.Handler().(handler).lim != safe.(handler).lim {
		t.Fatal("a logger derived from a safe one got a limiter of its own")
	}
	if got := Logger(slog.New(base), 5); !IsSafe(got.Handler()) {
		t.Fatal("Logger left a plain logger unwrapped")
	}
	// One limit of 2 a second (a burst of 20 lines, 5 per message) holds
	// across the wrappings: twice wrapped would not limit more, but a
	// second limiter would let a second burst through.
	twice := slog.New(New(New(base, 2), 1000))
	for range 100 {
		twice.Info("again")
	}
	if n := strings.Count(buf.String(), "again"); n != 5 {
		t.Fatalf("%d of 100 lines passed a limit of 5 per message", n)
	}
}

// TestLogLimiterKeepsErrors: a flood of several kinds of attacker-driven
// lines (connections, refusals) spends the overall budget; an error line
// (a failing store, a listener that cannot accept) must still be logged.
func TestLogLimiterKeepsErrors(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(New(slog.NewTextHandler(&buf, nil), 20))
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
