// Package safelog wraps a slog.Handler so that what a server logs stays
// safe to log when it comes from whoever connects: client IDs, usernames,
// topics, filters, URL paths, origins and error texts. Every string value
// (and every message) is cut to MaxValue bytes, any run of characters that
// could be an API key is masked, and the lines are rate limited as a whole
// and per message, with a summary of what was dropped.
//
// Wrap a process's logger once, where it is made, and hand that logger to
// everything; New and Logger return an already wrapped handler unchanged,
// so a library that wraps what it is given (the broker does) does not
// limit the same lines twice.
package safelog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// MaxValue bounds each string logged: enough for any valid topic or filter
// (channels.MaxTopicLen), a device client ID, a URL path a client may
// mean, or an error message.
const MaxValue = 300

// redactedKey replaces what looks like an API key.
const redactedKey = "<key>"

// Text returns s fit for a log line: key-shaped runs (channels.KeyLen or
// more characters from A-Z0-9: write and read keys, wherever they appear
// in a topic, filter, client ID or path) masked, then cut to MaxValue
// bytes on a character boundary, with the original length noted.
func Text(s string) string {
	n := len(s)
	if hasKeyRun(s) {
		s = maskKeys(s)
	}
	if len(s) <= MaxValue {
		return s
	}
	cut := MaxValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], n)
}

func isKeyChar(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }

// hasKeyRun reports whether s holds a run that maskKeys would replace, so
// that the common line (no key in it) is logged without a copy.
func hasKeyRun(s string) bool {
	run := 0
	for i := 0; i < len(s); i++ {
		if !isKeyChar(s[i]) {
			run = 0
			continue
		}
		if run++; run >= channels.KeyLen {
			return true
		}
	}
	return false
}

// maskKeys replaces every run of at least channels.KeyLen key characters.
// It stops copying once the result is well past MaxValue, since Text cuts
// it there anyway: a huge value costs no more than a short one.
func maskKeys(s string) string {
	var b strings.Builder
	run := 0 // start of the current run of key characters
	flush := func(end int) {
		if end-run >= channels.KeyLen {
			b.WriteString(redactedKey)
		} else {
			b.WriteString(s[run:end])
		}
	}
	for i := 0; i < len(s); i++ {
		if isKeyChar(s[i]) {
			continue
		}
		flush(i)
		b.WriteByte(s[i])
		run = i + 1
		if b.Len() > 2*MaxValue {
			// What follows is cut by Text; it is not copied, and a
			// key in it cannot show, as the cut comes before it.
			return b.String() + s[i+1:min(len(s), i+1+MaxValue)]
		}
	}
	flush(len(s))
	return b.String()
}

// safeAttr sanitizes an attribute's value (Text) and drops nothing.
func safeAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Text(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = safeAttr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case nil:
			return a
		case error:
			return slog.String(a.Key, Text(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, Text(x.String()))
		default:
			return slog.String(a.Key, Text(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// handler sanitizes every attribute and the message, and applies the
// line limits.
type handler struct {
	h   slog.Handler
	lim *limiter
}

// New returns h wrapped: every string logged through it is cut and
// key-masked (Text), and at most perSecond lines a second pass, after a
// burst of ten seconds' worth (0: no limit). When h is already wrapped it
// is returned as it is, with its own limit.
func New(h slog.Handler, perSecond int) slog.Handler {
	if IsSafe(h) {
		return h
	}
	return handler{h: h, lim: newLimiter(h, perSecond)}
}

// Logger returns l with its handler wrapped by New; an already wrapped
// logger is returned as it is.
func Logger(l *slog.Logger, perSecond int) *slog.Logger {
	if IsSafe(l.Handler()) {
		return l
	}
	return slog.New(New(l.Handler(), perSecond))
}

// IsSafe reports whether h was made by New (or derived from such a
// handler with WithAttrs or WithGroup).
func IsSafe(h slog.Handler) bool {
	_, ok := h.(handler)
	return ok
}

func (s handler) Enabled(ctx context.Context, l slog.Level) bool { return s.h.Enabled(ctx, l) }

func (s handler) Handle(ctx context.Context, r slog.Record) error {
	// Messages are constants in the code, except where a library's text
	// becomes one (http.Server's ErrorLog); they key the limiter, so they
	// are bounded first.
	msg := Text(r.Message)
	if !s.lim.allow(msg, r.Level >= slog.LevelError) {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(safeAttr(a))
		return true
	})
	return s.h.Handle(ctx, out)
}

func (s handler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = safeAttr(a)
	}
	return handler{s.h.WithAttrs(clean), s.lim}
}

func (s handler) WithGroup(g string) slog.Handler { return handler{s.h.WithGroup(g), s.lim} }

// limiter bounds the lines logged with token buckets: one over all lines
// (a burst of burstSeconds worth, then perSecond a second), and one per
// message (a quarter of that), so that a flood of one kind of line
// (connections, refused requests) cannot hide the others. The first lines
// of a flood are kept, since they say what is going on; what is dropped
// is counted and reported, by message, once every summaryEvery.
type limiter struct {
	out       slog.Handler // where summaries go
	perSecond float64      // 0: no limit

	mu         sync.Mutex
	all        bucket
	byMsg      map[string]*bucket
	suppressed map[string]int
	timer      *time.Timer // the pending summary; nil when none is due
}

const (
	burstSeconds = 10
	summaryEvery = 10 * time.Second
	// maxMessages bounds byMsg and suppressed; messages are constants in
	// the code, so this is far above what exists.
	maxMessages = 256
)

// bucket is a token bucket; the zero bucket is full.
type bucket struct {
	used float64 // tokens taken and not yet refilled
	last time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if !b.last.IsZero() {
		b.used = max(0, b.used-now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.used+1 > burst {
		return false
	}
	b.used++
	return true
}

func newLimiter(out slog.Handler, perSecond int) *limiter {
	return &limiter{out: out, perSecond: float64(perSecond),
		byMsg: make(map[string]*bucket), suppressed: make(map[string]int)}
}

// allow takes a token for one line with message msg, or counts the line
// as suppressed. Errors take none from the overall budget, only from
// their message's: what clients drive is logged at info and warn, and
// must not hide a failing store or listener.
func (l *limiter) allow(msg string, isError bool) bool {
	if l.perSecond <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	b := l.byMsg[msg]
	if b == nil && len(l.byMsg) < maxMessages {
		b = new(bucket)
		l.byMsg[msg] = b
	}
	rate, burst := l.perSecond, l.perSecond*burstSeconds
	if (b == nil || b.take(now, rate/4, burst/4)) && (isError && b != nil || l.all.take(now, rate, burst)) {
		return true
	}
	if _, ok := l.suppressed[msg]; ok || len(l.suppressed) < maxMessages {
		l.suppressed[msg]++
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(summaryEvery, l.summarize)
	}
	return false
}

// summarize logs how many lines were dropped since the last summary, by
// message.
func (l *limiter) summarize() {
	l.mu.Lock()
	counts := l.suppressed
	l.suppressed, l.timer = make(map[string]int), nil
	l.mu.Unlock()
	if len(counts) == 0 {
		return
	}
	total := 0
	var by []any
	for msg, n := range counts {
		total += n
		by = append(by, slog.Int(msg, n))
	}
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "log lines suppressed by the rate limit", 0)
	r.AddAttrs(slog.Int("suppressed", total), slog.Group("by_message", by...),
		slog.Float64("lines_per_second", l.perSecond))
	_ = l.out.Handle(context.Background(), r)
}
