package httpd

import (
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// TestLastBucketSkipsEmptyBuckets: last_average, last_median and last_sum
// answer the newest bucket only, so the empty buckets between entries
// years apart (a device without a clock writes 1970) must not be walked:
// from 1970 to 9999 in one-minute buckets that is 4.2e9 rows, minutes of
// CPU per anonymous request. The fixed walk is three entries; the 60 s
// bound is a hang detector, not a timing.
func TestLastBucketSkipsEmptyBuckets(t *testing.T) {
	mk := func(t time.Time, v string) channels.Entry {
		e := channels.Entry{ChannelID: 1, CreatedAt: t}
		e.SetValue(0, v)
		return e
	}
	entries := []channels.Entry{
		mk(time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), "1"),
		mk(time.Date(9999, 1, 1, 0, 3, 10, 0, time.UTC), "2"),
		mk(time.Date(9999, 1, 1, 0, 3, 50, 0, time.UTC), "4"),
	}
	p := readParams{rows: channels.RowOptions{Kind: channels.Average, Bucket: channels.Bucket{Minutes: 1}, Round: -1}}
	done := make(chan []channels.Entry, 1)
	go func() { done <- lastBucket(entries, &p, []int{0}) }()
	var got []channels.Entry
	select {
	case got = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("lastBucket is still walking the empty buckets since 1970")
	}
	if len(got) != 1 || !got[0].CreatedAt.Equal(time.Date(9999, 1, 1, 0, 3, 0, 0, time.UTC)) {
		t.Fatalf("newest bucket %+v", got)
	}
	if v, _ := got[0].Field(1); v != "3.0" {
		t.Errorf("average %q, want 3.0", v)
	}
}
