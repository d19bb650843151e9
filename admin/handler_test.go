package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/adminsock"
)

func TestHandlerBadRequests(t *testing.T) {
	h := NewHandler(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, err := h(context.Background(), "channel.explode", nil)
	var e *adminsock.Error
	if !errors.As(err, &e) || e.Code != channels.EINVALID || !strings.Contains(e.Message, "unknown admin operation channel.explode") {
		t.Fatalf("unknown op: %#v", err)
	}
	_, err = h(context.Background(), opChannelGet, json.RawMessage(`{"id":"one"}`))
	if !errors.As(err, &e) || e.Code != channels.EINVALID || !strings.Contains(e.Message, "malformed arguments") {
		t.Fatalf("bad args: %#v", err)
	}
}

// device.update answers malformed arguments with EINVALID and never
// sends a password hash.
func TestHandlerDeviceUpdate(t *testing.T) {
	l, _ := serveLocal(t)
	h := NewHandler(l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	if _, err := l.CreateDevice(ctx, auth.DeviceSpec{Name: "d"}); err != nil {
		t.Fatal(err)
	}
	var e *adminsock.Error
	for _, raw := range []string{`{"id":1,"update":{"Grants":"all"}}`, `{"id":1,"update":{"Name":7}}`, `[]`} {
		if _, err := h(ctx, opDeviceUpdate, json.RawMessage(raw)); !errors.As(err, &e) || e.Code != channels.EINVALID || !strings.Contains(e.Message, "malformed arguments") {
			t.Errorf("%s: %#v", raw, err)
		}
	}
	out, err := h(ctx, opDeviceUpdate, json.RawMessage(`{"id":1,"update":{"Description":"new"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	if d := out.(*auth.Device); d.Description != "new" || d.PasswordHash != "" || strings.Contains(string(b), "sha") {
		t.Fatalf("answer %s", b)
	}
}
