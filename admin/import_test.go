package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/adminsock"
)

func importEntry(id uint64, at time.Time, idx int, v string) channels.Entry {
	e := channels.Entry{ID: id, CreatedAt: at}
	e.SetValue(idx, v)
	return e
}

// ImportEntries checks every value by the payload rules on the server,
// whatever a client sends, and answers alike locally and over the socket.
func TestImportEntries(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	spec := auth.ChannelSpec{Name: "c"}
	spec.Fields[0] = "A"
	ch, err := l.CreateChannel(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, svc := range map[string]Service{"local": l, "socket": c} {
		t.Run(name, func(t *testing.T) {
			padded := importEntry(0, at, channels.Latitude, " 5")
			emptySet := channels.Entry{CreatedAt: at, Set: 1}
			for _, tc := range []struct {
				name string
				es   []channels.Entry
				ch   uint64
				code string
				msg  string
			}{
				{"disabled field", []channels.Entry{importEntry(0, at, 0, "1"), importEntry(0, at, 2, "1")}, ch.ID, channels.EINVALID, "entry 2 of the batch: field3 is not enabled on channel 1"},
				{"control character", []channels.Entry{importEntry(0, at, channels.Status, "a\x00")}, ch.ID, channels.EINVALID, "entry 1 of the batch: status contains the control character"},
				{"too long", []channels.Entry{importEntry(0, at, 0, strings.Repeat("é", 256))}, ch.ID, channels.EINVALID, "is 256 characters long"},
				{"bad latitude", []channels.Entry{importEntry(0, at, channels.Latitude, "north")}, ch.ID, channels.EINVALID, "lat must be a decimal"},
				{"padded latitude", []channels.Entry{padded}, ch.ID, channels.EINVALID, "latitude is set but empty or padded"},
				{"set but empty", []channels.Entry{emptySet}, ch.ID, channels.EINVALID, "field1 is set but empty"},
				{"unknown values", []channels.Entry{{CreatedAt: at, Set: 1 << 15}}, ch.ID, channels.EINVALID, "unknown values"},
				{"no time", []channels.Entry{importEntry(0, time.Time{}, 0, "1")}, ch.ID, channels.EINVALID, "has no created_at"},
				{"missing channel", []channels.Entry{importEntry(0, at, 0, "1")}, 9, channels.ENOTFOUND, "channel 9 not found"},
				{"too many", make([]channels.Entry, MaxImportBatch+1), ch.ID, channels.ELIMIT, "at most 2000 entries"},
			} {
				_, err := svc.ImportEntries(ctx, tc.ch, tc.es, false)
				if channels.ErrorCode(err) != tc.code || !strings.Contains(channels.ErrorMessage(err), tc.msg) {
					t.Errorf("%s: %v (%s), want %s %q", tc.name, err, channels.ErrorCode(err), tc.code, tc.msg)
				}
			}
		})
	}
	if got, _ := l.Channel(ctx, ch.ID); got.LastEntryID != 0 {
		t.Fatalf("refused batches stored entries: last_entry_id %d", got.LastEntryID)
	}
	// Through the socket the client learns the IDs given.
	es := []channels.Entry{importEntry(0, at, 0, "1"), importEntry(0, at.Add(time.Second), 0, "2")}
	res, err := c.ImportEntries(ctx, ch.ID, es, false)
	if err != nil || res.Entries != 2 || res.FirstID != 1 || res.LastID != 2 || es[1].ID != 2 {
		t.Fatalf("import: %+v %v, IDs %d %d", res, err, es[0].ID, es[1].ID)
	}
	es = []channels.Entry{importEntry(7, at.Add(time.Minute), 0, "3")}
	if res, err := c.ImportEntries(ctx, ch.ID, es, true); err != nil || res.FirstID != 7 || res.LastID != 7 {
		t.Fatalf("keep IDs: %+v %v", res, err)
	}
	got, err := l.Entries(ctx, ch.ID, channels.EntryFilter{})
	if err != nil || len(got) != 3 || got[2].ID != 7 || got[2].ChannelID != ch.ID {
		t.Fatalf("entries %+v %v", got, err)
	}
}

// The socket operation refuses malformed arguments, and logs neither
// them nor the values.
func TestHandlerImportMalformed(t *testing.T) {
	l, _ := serveLocal(t)
	var logs strings.Builder
	h := NewHandler(l, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, raw := range []string{`{"id":1,"entries":"all"}`, `{"id":1,"entries":[{"Set":"x"}]}`, `{"id":-1}`} {
		var e *adminsock.Error
		if _, err := h(context.Background(), opFeedImport, json.RawMessage(raw)); !errors.As(err, &e) || e.Code != channels.EINVALID {
			t.Errorf("%s: %v", raw, err)
		}
	}
	if _, err := h(context.Background(), opFeedImport, json.RawMessage(`{"id":1,"entries":[{"CreatedAt":"2021-01-01T00:00:00Z","Values":["SECRETVALUE"],"Set":1}]}`)); err == nil {
		t.Fatal("import into a missing channel succeeded")
	}
	if strings.Contains(logs.String(), "SECRETVALUE") {
		t.Fatalf("a value reached the log: %s", logs.String())
	}
}
