package broker_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestSubscriptionLimitSurvivesTakeover: a connection that is taken over
// (another CONNECT with its client ID) while mochi is still working
// through its SUBSCRIBEs must not leave filters in the topic index that no
// live client holds. Each would stay there for good, outside every
// client's limits.max_subscriptions_per_client, and route deliveries to
// whichever client uses that client ID next, without it subscribing.
func TestSubscriptionLimitSurvivesTakeover(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, Logger: quietLogger()})
	ch := ts.channel(true)
	var next atomic.Int64
	var conns []*mqtttest.Conn
	// Each round's connection also asks for its own filter that matches
	// the channel's feed, so that one left behind is not removed by a later
	// connection holding the same filter.
	id := fmt.Sprint(ch)
	matching := []string{"#", "+/#", "channels/#", "channels/" + id + "/#", "channels/+/#", "+/" + id + "/#", "+/+/#",
		"channels/+/subscribe", "+/" + id + "/subscribe", "+/+/subscribe"}
	for _, feed := range matching {
		c := dial(t, ts.addr)
		conns = append(conns, c)
		if code, err := c.Connect(mqtttest.Connect{ClientID: "x", Clean: true}); err != nil || code != 0 {
			t.Fatalf("CONNACK %#x %v", code, err)
		}
		acked := make(chan struct{}, 1)
		go func() {
			for {
				typ, _, err := c.ReadPacket()
				if err != nil {
					return
				}
				if typ == mqtttest.SUBACK {
					select {
					case acked <- struct{}{}:
					default:
					}
				}
			}
		}()
		// SUBSCRIBEs back to back, so that one is being processed when
		// the next connection takes this one over.
		go func() {
			for id := 1; ; id++ {
				var filters []string
				for i := range 300 {
					if i%20 == 0 {
						filters = append(filters, feed)
					}
					filters = append(filters, fmt.Sprintf("+/%d/subscribe", next.Add(1)))
				}
				if _, err := c.Write(mqtttest.SubscribePacket(uint16(id), false, filters...)); err != nil {
					return
				}
			}
		}()
		select {
		case <-acked:
		case <-time.After(5 * time.Second):
			t.Fatal("no SUBACK")
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	var n int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n = ts.srv.Subscriptions(); n == 0 || time.Now().After(deadline) {
			break
		}
	}
	if n != 0 {
		t.Errorf("%d subscriptions left in the index with every client gone", n)
	}

	// A later client with that ID, subscribed to nothing, receives nothing.
	c := rawAnonymous(t, ts.addr, "x")
	w := rawAnonymous(t, ts.addr, "w")
	cc, _ := ts.svc.Channel(t.Context(), ch)
	if err := w.Publish(fmt.Sprintf("channels/%d/publish/%s", ch, cc.WriteKey), 1, 1, []byte("field1=1")); err != nil {
		t.Fatal(err)
	}
	if _, code, err := w.ReadPuback(); err != nil || code != 0 {
		t.Fatalf("PUBACK %#x %v", code, err)
	}
	readNothing(t, c)
}
