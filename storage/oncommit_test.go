package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// TestOnCommit: every group commit is reported, before its callers are
// answered, with the entries it stored (not those refused for a missing
// channel) and a positive duration.
func TestOnCommit(t *testing.T) {
	type commit struct {
		entries int
		d       time.Duration
	}
	var mu sync.Mutex
	var commits []commit
	db, err := storage.Open(filepath.Join(t.TempDir(), "feedmq.db"), storage.Options{
		OnCommit: func(n int, d time.Duration) {
			mu.Lock()
			commits = append(commits, commit{n, d})
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ch := MustCreateChannel(t, db, "c")
	ctx := context.Background()

	// One append: one commit of one entry, seen once AppendEntry returns.
	MustAppend(t, db, ch.ID, "1")
	mu.Lock()
	if len(commits) != 1 || commits[0].entries != 1 || commits[0].d <= 0 {
		t.Fatalf("after one append: %+v", commits)
	}
	mu.Unlock()

	// A missing channel stores nothing.
	if err := db.AppendEntry(ctx, &channels.Entry{ChannelID: 99, Set: 1}); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Fatalf("append to a missing channel: %v", err)
	}

	// Concurrent appends: the commits account for every stored entry.
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e := &channels.Entry{ChannelID: ch.ID}
			e.SetValue(0, fmt.Sprint(i))
			if err := db.AppendEntry(ctx, e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, c := range commits {
		total += c.entries
	}
	if total != 1+n {
		t.Fatalf("commits report %d entries, want %d: %+v", total, 1+n, commits)
	}
}
