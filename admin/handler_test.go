package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

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
