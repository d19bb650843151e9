package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
)

// Open works on the file when no server runs (creating it only when
// asked) and through the socket when one does.
func TestOpenPicksFileOrSocket(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Open(ctx, dir, Options{}); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("no database: %v", err)
	}
	a, err := Open(ctx, dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(ownedLocal); !ok {
		t.Fatalf("offline Open gave %T", a)
	}
	if _, err := a.CreateChannel(ctx, auth.ChannelSpec{Name: "c"}); err != nil {
		t.Fatal(err)
	}
	// A second Open while the file is held and no server answers.
	if _, err := Open(ctx, dir, Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked: %v", err)
	}
	// The holder starts serving: Open now reaches it.
	srv, err := Listen(dir, a, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer srv.Close()
	b, err := Open(ctx, dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, ok := b.(*Client); !ok {
		t.Fatalf("Open with a server running gave %T", b)
	}
	if cs, err := b.ListChannels(ctx); err != nil || len(cs) != 1 || cs[0].Name != "c" {
		t.Fatalf("through the socket: %v, %v", cs, err)
	}
	if _, err := Listen(dir, a, slog.New(slog.NewTextHandler(io.Discard, nil))); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Listen: %v", err)
	}
}
