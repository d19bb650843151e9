package postgres

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/feedmq/feedmq/cluster"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// The cluster layer's gap fill and last-ID reads: a range of one
// channel's entries, oldest first, leaving out what retention deleted,
// and every channel's last ID.
func TestFillGapAndLastIDs(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	var _ cluster.Store = db // what the cluster layer reads
	a, b, empty := addChannel(t, db, 0, 0, 0), addChannel(t, db, 0, 0, 0), addChannel(t, db, 0, 0, 0)
	for i := 0; i < 10; i++ {
		db.AppendEntry(ctx, entry(a, "a"))
	}
	db.AppendEntry(ctx, entry(b, "b"))
	if _, err := db.pool.Exec(ctx, "DELETE FROM entries WHERE channel_id = $1 AND entry_id = 5", int64(a)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ch, after, upTo uint64
		want            []uint64
	}{
		{a, 2, 7, []uint64{3, 4, 6, 7}},
		{a, 0, 100, []uint64{1, 2, 3, 4, 6, 7, 8, 9, 10}},
		{a, 7, 7, nil},
		{a, 8, 3, nil},
		{a, 1 << 63, 1<<64 - 1, nil},
		{b, 0, 10, []uint64{1}},
		{999, 0, 10, nil},
	}
	for _, c := range cases {
		got, err := db.FillGap(ctx, c.ch, c.after, c.upTo)
		if err != nil || !slices.Equal(ids(got), c.want) {
			t.Errorf("FillGap(%d, %d, %d) = %v, %v; want %v", c.ch, c.after, c.upTo, ids(got), err, c.want)
		}
		for _, e := range got {
			if e.ChannelID != c.ch {
				t.Errorf("entry of channel %d in a fill of channel %d", e.ChannelID, c.ch)
			}
		}
	}
	last, err := db.LastIDs(ctx)
	want := map[uint64]uint64{a: 10, b: 1, empty: 0}
	if err != nil || !maps.Equal(last, want) {
		t.Fatalf("LastIDs = %v, %v; want %v", last, err, want)
	}
}
