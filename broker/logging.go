package broker

import (
	"context"
	"log/slog"
)

// Everything the broker logs passes through a safelog handler (see New):
// client IDs, usernames, topics, filters, origins and error texts come
// from whoever connects, so every string value is cut short, any run of
// characters that could be an API key is masked, and the lines are rate
// limited. mochi's own lines go through mochiHandler first.

// mochiHandler is the logger handed to mochi. Only its errors pass (it
// logs every connection and packet at info and warn; the hook logs those
// events once, with feedmq's fields), without the packet dumps it
// attaches ("pk", "packet": a whole PUBLISH, payload and API key
// included), and not "publish packet error", which is a publish the hook
// refused and has logged itself.
type mochiHandler struct {
	slog.Handler // a safelog handler
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
