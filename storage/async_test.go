package storage_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

// TestAppendEntryAsync: queued appends are committed in order, each
// callback sees its entry's ID after the commit, a missing channel fails
// only its own entry, and Close flushes what is queued.
func TestAppendEntryAsync(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "x")
	var mu sync.Mutex
	var ids []uint64
	var failed int
	var wg sync.WaitGroup
	then := func(e *channels.Entry, err error) {
		defer wg.Done()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			return
		}
		ids = append(ids, e.ID)
	}
	for i := 1; i <= 500; i++ {
		ch := c.ID
		if i == 250 {
			ch = 999 // no such channel
		}
		e := &channels.Entry{ChannelID: ch}
		e.SetValue(0, strconv.Itoa(i))
		wg.Add(1)
		if err := db.AppendEntryAsync(context.Background(), e, then); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if failed != 1 || len(ids) != 499 {
		t.Fatalf("%d stored, %d failed", len(ids), failed)
	}
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("callback %d saw ID %d: out of order", i, id)
		}
	}
	es, err := db.Entries(context.Background(), c.ID, channels.EntryFilter{})
	if err != nil || len(es) != 499 {
		t.Fatalf("%d entries stored, %v", len(es), err)
	}
	for i, e := range es {
		want := i + 1
		if want >= 250 {
			want++ // entry 250 went to the missing channel
		}
		if v, _ := e.Field(1); v != strconv.Itoa(want) {
			t.Fatalf("entry %d holds %s, want %d: order lost", e.ID, v, want)
		}
	}
}
