package broker

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

// Everything the broker logs passes through safeHandler: client IDs,
// usernames, topics, filters, origins and error texts come from whoever
// connects, so every string value is cut to maxLogValue bytes and any run
// of characters that could be an API key is masked, and the lines are
// rate limited as a whole (logLimiter). mochi's own lines go through
// mochiHandler first.

// maxLogValue bounds each string logged: enough for any valid topic or
// filter (channels.MaxTopicLen), a device client ID or an error message.
const maxLogValue = 300

// redactedKey replaces what looks like an API key.
const redactedKey = "<key>"

// logText returns s fit for a log line: key-shaped runs (channels.KeyLen
// or more characters from A-Z0-9: write and read keys, wherever they
// appear in a topic, filter or client ID) masked, then cut to
// maxLogValue bytes on a character boundary.
func logText(s string) string {
	n := len(s)
	if strings.ContainsFunc(s, isKeyChar) {
		s = maskKeys(s)
	}
	if len(s) <= maxLogValue {
		return s
	}
	cut := maxLogValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], n)
}

func isKeyChar(r rune) bool { return r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' }

// maskKeys replaces every run of at least channels.KeyLen key characters.
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
		if isKeyChar(rune(s[i])) {
			continue
		}
		flush(i)
		b.WriteByte(s[i])
		run = i + 1
		if b.Len() > 2*maxLogValue {
			return b.String() + s[i+1:min(len(s), i+1+maxLogValue)]
		}
	}
	flush(len(s))
	return b.String()
}

// safeAttr sanitizes an attribute's value (logText) and drops nothing.
func safeAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, logText(v.String()))
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
			return slog.String(a.Key, logText(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, logText(x.String()))
		default:
			return slog.String(a.Key, logText(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// safeHandler sanitizes every attribute and applies the global line
// limit.
type safeHandler struct {
	h   slog.Handler
	lim *logLimiter
}

func newSafeHandler(h slog.Handler, perSecond int) safeHandler {
	return safeHandler{h: h, lim: newLogLimiter(h, perSecond)}
}

func (s safeHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.h.Enabled(ctx, l) }

func (s safeHandler) Handle(ctx context.Context, r slog.Record) error {
	if !s.lim.allow(r.Message, r.Level >= slog.LevelError) {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(safeAttr(a))
		return true
	})
	return s.h.Handle(ctx, out)
}

func (s safeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = safeAttr(a)
	}
	return safeHandler{s.h.WithAttrs(clean), s.lim}
}

func (s safeHandler) WithGroup(g string) slog.Handler { return safeHandler{s.h.WithGroup(g), s.lim} }

// logLimiter bounds the broker's log lines with token buckets: one over
// all lines (a burst of logBurstSeconds worth, then perSecond a second),
// and one per message (a quarter of that), so that a flood of one kind
// of line (connections) cannot hide the others (refused publishes). The
// first lines of a flood are kept, since they say what is going on; what
// is dropped is counted and reported, by message, once every
// logSummaryEvery.
type logLimiter struct {
	out       slog.Handler // where summaries go
	perSecond float64      // 0: no limit

	mu         sync.Mutex
	all        bucket
	byMsg      map[string]*bucket
	suppressed map[string]int
	timer      *time.Timer // the pending summary; nil when none is due
}

const (
	logBurstSeconds = 10
	logSummaryEvery = 10 * time.Second
	// maxLogMessages bounds byMsg; messages are constants in the code, so
	// this is far above what exists.
	maxLogMessages = 256
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

func newLogLimiter(out slog.Handler, perSecond int) *logLimiter {
	return &logLimiter{out: out, perSecond: float64(perSecond),
		byMsg: make(map[string]*bucket), suppressed: make(map[string]int)}
}

// allow takes a token for one line with message msg, or counts the line
// as suppressed. Errors take none from the overall budget, only from
// their message's: what clients drive is logged at info and warn, and
// must not hide a failing store or listener.
func (l *logLimiter) allow(msg string, isError bool) bool {
	if l.perSecond <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	b := l.byMsg[msg]
	if b == nil && len(l.byMsg) < maxLogMessages {
		b = new(bucket)
		l.byMsg[msg] = b
	}
	rate, burst := l.perSecond, l.perSecond*logBurstSeconds
	if (b == nil || b.take(now, rate/4, burst/4)) && (isError && b != nil || l.all.take(now, rate, burst)) {
		return true
	}
	if _, ok := l.suppressed[msg]; ok || len(l.suppressed) < maxLogMessages {
		l.suppressed[msg]++
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(logSummaryEvery, l.summarize)
	}
	return false
}

// summarize logs how many lines were dropped since the last summary, by
// message.
func (l *logLimiter) summarize() {
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

// mochiHandler is the logger handed to mochi. Only its errors pass (it
// logs every connection and packet at info and warn; the hook logs those
// events once, with feedmq's fields), without the packet dumps it
// attaches ("pk", "packet": a whole PUBLISH, payload and API key
// included), and not "publish packet error", which is a publish the hook
// refused and has logged itself.
type mochiHandler struct {
	slog.Handler // a safeHandler
}

func (m mochiHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError && m.Handler.Enabled(ctx, l)
}

func (m mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "pk" && a.Key != "packet" {
			out.AddAttrs(a)
		}
		return true
	})
	return m.Handler.Handle(ctx, out)
}

func (m mochiHandler) WithAttrs(as []slog.Attr) slog.Handler {
	keep := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a.Key != "pk" && a.Key != "packet" {
			keep = append(keep, a)
		}
	}
	return mochiHandler{m.Handler.WithAttrs(keep)}
}

func (m mochiHandler) WithGroup(g string) slog.Handler { return mochiHandler{m.Handler.WithGroup(g)} }
