package broker

import (
	"testing"

	"github.com/feedmq/feedmq/channels"
)

// TestTopicCache: the cached topics are the channel's feed and field
// topics, also for channels whose slot another channel held before, and
// a hit builds nothing.
func TestTopicCache(t *testing.T) {
	var c topicCache
	for _, id := range []uint64{1, 9, 10, 1 + topicSlots, 1, 1<<64 - 1, 12345678901234} {
		got := c.get(id)
		if got.id != id || got.feed != channels.FeedTopic(id) {
			t.Fatalf("channel %d: %d %q, want %q", id, got.id, got.feed, channels.FeedTopic(id))
		}
		for n := 1; n <= channels.NumFields; n++ {
			if got.fields[n-1] != channels.FieldTopic(id, n) {
				t.Errorf("channel %d field %d: %q, want %q", id, n, got.fields[n-1], channels.FieldTopic(id, n))
			}
		}
	}
	c.get(77)
	if n := testing.AllocsPerRun(100, func() { c.get(77) }); n != 0 {
		t.Errorf("a cached channel's topics cost %v allocations", n)
	}
}
