package storage_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// One big commit (a bulk batch of several megabytes) does not pin its
// size in memory once it is checkpointed: the writer keeps no buffer past
// maxKeptBuf, and the log's own write buffer must not either.
func TestBigCommitIsNotKeptInMemory(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "c")
	MustAppend(t, db, c.ID, "small")
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	big := strings.Repeat("x", 255)
	es := make([]*channels.Entry, storage.MaxBatchEntries)
	for i := range es {
		es[i] = &channels.Entry{ChannelID: c.ID}
		for f := range 8 {
			es[i].SetValue(f, big)
		}
	}
	if err := db.AppendEntries(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	es = nil
	if err := storage.SyncErr(db); err != nil {
		t.Fatal(err)
	}
	MustAppend(t, db, c.ID, "small again")
	after := heap()
	if grew := int64(after) - int64(before); grew > 4<<20 {
		t.Fatalf("after a commit of about 8 MB and its checkpoint, the heap holds %d MB more", grew>>20)
	}
}
