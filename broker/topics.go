package broker

import (
	"strconv"
	"sync/atomic"

	"github.com/feedmq/feedmq/channels"
)

// topicSlots is the size of the fan-out's topic cache. Channel IDs are
// handed out in sequence, so the channels in use spread over the slots;
// a broker with more busy channels than slots builds the topics of the
// ones that collide again, which is what every entry cost before.
const topicSlots = 1024

// chanTopics is the subscribe topics of one channel: its feed topic and
// its field topics, held in one string.
type chanTopics struct {
	id     uint64
	feed   string
	fields [channels.NumFields]string
}

// topicCache keeps, per channel, the topics fan-out delivers to, so that
// an entry's fan-out builds no topic string. The topics follow from the
// channel ID alone, so an entry never goes stale; a slot holds one channel
// at a time and is replaced whole (readers never see half of one), so
// memory is bounded by topicSlots whatever the channels do.
type topicCache struct {
	slots [topicSlots]atomic.Pointer[chanTopics]
}

// get returns channel id's topics.
func (c *topicCache) get(id uint64) *chanTopics {
	slot := &c.slots[id%topicSlots]
	if t := slot.Load(); t != nil && t.id == id {
		return t
	}
	t := newChanTopics(id)
	slot.Store(t)
	return t
}

// newChanTopics builds channel id's topics into one string: feed topic
// first, then each field topic, which starts with the feed topic.
func newChanTopics(id uint64) *chanTopics {
	const field = "/fields/field"
	b := make([]byte, 0, 9*(40+len(field)+1))
	b = append(b, "channels/"...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "/subscribe"...)
	feedLen := len(b)
	ends := [channels.NumFields]int{}
	for n := 1; n <= channels.NumFields; n++ {
		b = append(b, b[:feedLen]...)
		b = append(b, field...)
		b = strconv.AppendInt(b, int64(n), 10)
		ends[n-1] = len(b)
	}
	all := string(b)
	t := &chanTopics{id: id, feed: all[:feedLen]}
	start := feedLen
	for n := range t.fields {
		t.fields[n] = all[start:ends[n]]
		start = ends[n]
	}
	return t
}
