package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// BenchmarkFanOut measures the delivery path alone (no commit): fanOut of
// one entry setting three fields of a public channel to 60 subscribers
// that read everything (20 on the feed topic, 20 on every five-level topic
// by wildcard, 20 on "#"). Each entry is 7 topics and about 280 deliveries,
// each checked against its subscriber's rights; ns/topic (one topic to all
// of its subscribers) is the figure to compare.
// go test -run '^$' -bench FanOut ./broker
func BenchmarkFanOut(b *testing.B) {
	db, svc := openLocal(b)
	s, err := New(Options{MQTTAddr: "127.0.0.1:0", Anonymous: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, db, svc.Registry)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ch, err := svc.CreateChannel(context.Background(), auth.ChannelSpec{Name: "bench", Public: true, Fields: [8]string{"a", "b", "c"}})
	if err != nil {
		b.Fatal(err)
	}
	filters := []string{channels.FeedTopic(ch.ID), "+/+/+/+/+", "#"}
	var got atomic.Int64
	for i := range 60 {
		c, err := mqtttest.Dial(s.Addr("mqtt").String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if code, err := c.Connect(mqtttest.Connect{ClientID: fmt.Sprintf("sub%d", i), Clean: true}); err != nil || code != 0 {
			b.Fatalf("connect: %d %v", code, err)
		}
		if code, err := c.Subscribe(1, filters[i%3]); err != nil || code != 0 {
			b.Fatalf("subscribe: %d %v", code, err)
		}
		go func() {
			for {
				if _, _, err := c.ReadPacket(); err != nil {
					return
				}
				got.Add(1)
			}
		}()
	}
	e := channels.Entry{ChannelID: ch.ID, ID: 1, CreatedAt: time.Now()}
	for n := range 3 {
		e.SetValue(n, "23.5")
	}
	s.fanOut(&e) // the first routes are built here
	before := s.stats.delivered.Load()
	b.ResetTimer()
	for range b.N {
		s.fanOut(&e)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(s.stats.delivered.Load()-before), "ns/topic")
	_ = got.Load()
}
