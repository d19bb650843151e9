package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
)

func batch(ch uint64, vals ...string) []*channels.Entry {
	es := make([]*channels.Entry, len(vals))
	for i, v := range vals {
		es[i] = &channels.Entry{ChannelID: ch}
		es[i].SetValue(0, v)
	}
	return es
}

// A batch is stored with consecutive IDs, then fanned out in order, and
// counts as one write against the rate limit.
func TestPublishBatch(t *testing.T) {
	ts := startServer(t, broker.Options{RateLimit: time.Hour})
	ch := ts.channel(false, "temp", "hum")
	sub := mustConnect(t, ts.addr, ts.device(pubsub(ch)))
	sub.subscribe(t, channels.FeedTopic(ch))
	sub.subscribe(t, channels.FieldTopic(ch, 1))
	ctx := context.Background()
	if err := ts.srv.PublishBatch(ctx, batch(ch, "a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	var feed, field []string
	for range 6 {
		m := sub.expect(t)
		if strings.HasSuffix(m.topic, "/field1") {
			field = append(field, m.payload)
		} else {
			feed = append(feed, m.payload)
		}
	}
	if fmt.Sprint(field) != "[a b c]" {
		t.Errorf("field1 subscriber got %v", field)
	}
	for i, p := range feed {
		if !strings.Contains(p, fmt.Sprintf(`"entry_id":%d,"field1":"%c"`, i+1, 'a'+i)) {
			t.Errorf("feed message %d: %s", i, p)
		}
	}
	// The rate limit took the batch as one write: the next one, batch
	// or single entry, is refused and stores nothing.
	if err := ts.srv.PublishBatch(ctx, batch(ch, "d")); channels.ErrorCode(err) != channels.ERATELIMIT {
		t.Errorf("second batch: %v, want ERATELIMIT", err)
	}
	e := &channels.Entry{ChannelID: ch}
	e.SetValue(0, "e")
	if err := ts.srv.Publish(ctx, e); channels.ErrorCode(err) != channels.ERATELIMIT {
		t.Errorf("entry after a batch: %v, want ERATELIMIT", err)
	}
	if n := len(ts.entries(ch)); n != 3 {
		t.Errorf("stored %d entries, want 3", n)
	}
	// A batch to a channel that does not exist stores and sends nothing.
	if err := ts.srv.PublishBatch(ctx, batch(ch+10, "x")); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Errorf("batch to a missing channel: %v, want ENOTFOUND", err)
	}
	sub.expectNothing(t)
}
