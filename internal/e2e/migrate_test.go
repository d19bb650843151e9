package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// TestMigrateFromServe moves a channel of two pages out of a running
// `feedmq serve` into another data directory with `feedmq feed migrate`,
// and checks that the copy reads exactly as the original.
func TestMigrateFromServe(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	var ch struct{ ID uint64 }
	cli(t, src, &ch, "channel", "create", "--name", "source", "--field", "1=T", "--field", "2=H", "--public", "--json")
	cli(t, dst, nil, "channel", "create", "--name", "copy", "--field", "1=T", "--field", "2=H", "--json")

	// Filled through storage before serve starts: quicker than writes.
	const n = 9001
	db, err := storage.Open(filepath.Join(src, "feedmq.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC)
	var batch []channels.Entry
	for i := range n {
		e := channels.Entry{ChannelID: ch.ID, ID: uint64(i + 1), CreatedAt: base.Add(time.Duration(i/3) * time.Second)}
		e.SetValue(0, fmt.Sprintf("%d.5", i))
		if i%10 == 0 {
			e.SetValue(channels.Status, fmt.Sprintf("note %d, with a comma", i))
		}
		batch = append(batch, e)
		if len(batch) == 2000 || i == n-1 {
			if err := db.ImportEntries(context.Background(), ch.ID, batch, true); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := startServeWith(t, raceBuild, src, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "warn")

	var sum struct {
		Entries        int
		FirstID        uint64 `json:"first_id"`
		LastID         uint64 `json:"last_id"`
		IDsKept        bool   `json:"ids_kept"`
		Pages          int
		LastCreatedAt  string `json:"last_created_at"`
		FirstCreatedAt string `json:"first_created_at"`
	}
	cli(t, dst, &sum, "feed", "migrate", "--from", "http://"+s.addrs["http"], "--channel", fmt.Sprint(ch.ID), "--to", "1", "--json")
	last := base.Add((n - 1) / 3 * time.Second).Format(channels.TimeFormat)
	if sum.Entries != n || sum.FirstID != 1 || sum.LastID != n || !sum.IDsKept || sum.Pages != 2 ||
		sum.FirstCreatedAt != base.Format(channels.TimeFormat) || sum.LastCreatedAt != last {
		t.Fatalf("summary %+v", sum)
	}
	// The running source answers feed get through its socket, the copy
	// offline: the same entries, byte for byte.
	get := func(data string) []byte {
		cmd := exec.Command(feedmqBinary(t), "--data", data, "feed", "get", "1", "--results", "0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("feed get: %v", err)
		}
		return out
	}
	from, to := get(src), get(dst)
	if !bytes.Equal(from, to) || bytes.Count(to, []byte("\n{")) != n {
		t.Fatalf("the copy differs: %d bytes with %d entries, source %d bytes", len(to), bytes.Count(to, []byte("\n{")), len(from))
	}
}
