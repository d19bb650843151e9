package broker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestAuthorizationProperty builds 100 devices with random grants on 10
// public and private channels, subscribes each (and some anonymous
// clients) to random filters (exact, wildcard, legacy with right or wrong
// read keys, field and sensor topics), publishes one entry per channel, and
// checks against an independent model that every subscriber gets exactly
// the topics it is entitled to: nothing more, nothing less.
func TestAuthorizationProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ts := startServer(t, broker.Options{Anonymous: true, Logger: quietLogger()})
	ctx := context.Background()

	const nChannels, nDevices, nAnonymous = 10, 100, 10
	chans := make([]*channels.Channel, nChannels)
	for i := range chans {
		c, err := ts.svc.CreateChannel(ctx, auth.ChannelSpec{Name: fmt.Sprintf("ch%d", i), Public: rng.IntN(10) < 3})
		if err != nil {
			t.Fatal(err)
		}
		chans[i] = c
	}
	type subscriber struct {
		grants  map[uint64]auth.Grant
		filters []string
		conn    *mqtttest.Conn
	}
	var subs []*subscriber
	for i := 0; i < nDevices+nAnonymous; i++ {
		s := &subscriber{grants: map[uint64]auth.Grant{}}
		var cr *auth.Credentials
		if i < nDevices {
			var grants []auth.Grant
			for _, c := range chans {
				if rng.IntN(3) == 0 {
					g := auth.Grant{ChannelID: c.ID, Publish: rng.IntN(2) == 0, Subscribe: rng.IntN(2) == 0}
					if !g.Publish && !g.Subscribe {
						g.Subscribe = true
					}
					grants = append(grants, g)
					s.grants[c.ID] = g
				}
			}
			cr = ts.device(grants...)
			s.conn = rawDevice(t, ts.addr, cr, 4)
		} else {
			s.conn = rawAnonymous(t, ts.addr, fmt.Sprintf("anon%d", i))
		}
		for range 2 {
			s.filters = append(s.filters, randomFilter(rng, chans))
		}
		subs = append(subs, s)
	}

	canRead := func(s *subscriber, c *channels.Channel, key string) bool {
		return s.grants[c.ID].Subscribe || c.Public || key == c.ReadKey
	}
	byID := map[uint64]*channels.Channel{}
	for _, c := range chans {
		byID[c.ID] = c
	}
	// granted tells from the model whether a filter is accepted.
	granted := func(s *subscriber, f string) bool {
		if strings.ContainsAny(f, "+#") && !strings.Contains(f, "/fields/+") {
			return true
		}
		if strings.HasPrefix(f, "devices/") {
			var id uint64
			fmt.Sscanf(f, "devices/%d/", &id)
			return canRead(s, byID[id], "")
		}
		tp, err := channels.ParseTopic(f)
		return err == nil && canRead(s, byID[tp.ChannelID], tp.Key)
	}
	for _, s := range subs {
		for i, f := range s.filters {
			code, err := s.conn.Subscribe(uint16(i+1), f)
			if err != nil {
				t.Fatal(err)
			}
			if want := granted(s, f); (code == 0) != want {
				t.Fatalf("SUBACK %#x for %s with grants %v, model says granted=%v", code, f, s.grants, want)
			}
		}
	}

	// One entry per channel, from a device that may publish or with the
	// write key.
	writer := rawAnonymous(t, ts.addr, "writer")
	for i, c := range chans {
		topic := fmt.Sprintf("channels/%d/publish/%s", c.ID, c.WriteKey)
		if err := writer.Publish(topic, 1, uint16(i+1), []byte(fmt.Sprintf("field1=v%d", c.ID))); err != nil {
			t.Fatal(err)
		}
		if _, code, err := writer.ReadPuback(); err != nil || code != 0 {
			t.Fatalf("PUBACK %v %v", code, err)
		}
	}

	// expected lists the topics a subscriber must receive.
	expected := func(s *subscriber) []string {
		set := map[string]bool{}
		for _, f := range s.filters {
			if !granted(s, f) {
				continue
			}
			for _, c := range chans {
				if !canRead(s, c, "") && !strings.Contains(f, c.ReadKey) {
					continue
				}
				for _, topic := range topicsOf(c) {
					if receives(f, topic) {
						set[topic] = true
					}
				}
			}
		}
		return sortedKeys(set)
	}
	var wg sync.WaitGroup
	var delivered, refused atomic.Int64
	for _, s := range subs {
		for _, f := range s.filters {
			if !granted(s, f) {
				refused.Add(1)
			}
		}
	}
	errs := make(chan string, len(subs))
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			set := map[string]bool{}
			for {
				_ = s.conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
				topic, _, err := s.conn.ReadPublish()
				if err != nil {
					break
				}
				if set[topic] {
					errs <- fmt.Sprintf("subscriber %d got %s twice", i, topic)
				}
				set[topic] = true
				delivered.Add(1)
			}
			got, want := sortedKeys(set), expected(s)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				errs <- fmt.Sprintf("subscriber %d (grants %v, filters %v):\n got  %v\n want %v", i, s.grants, s.filters, got, want)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d subscribers, %d filters refused, %d messages delivered as the model predicts", len(subs), refused.Load(), delivered.Load())
	if delivered.Load() < int64(nChannels) || refused.Load() == 0 {
		t.Fatalf("the random set-up exercised too little: %d deliveries, %d refusals", delivered.Load(), refused.Load())
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// topicsOf lists every topic an entry setting field1 on c is fanned out to.
func topicsOf(c *channels.Channel) []string {
	feed := channels.FeedTopic(c.ID)
	return []string{feed, feed + "/fields/field1", feed + "/json", feed + "/json/" + c.ReadKey,
		feed + "/fields/field1/" + c.ReadKey, fmt.Sprintf("devices/%d/sensors/field1/value", c.ID)}
}

// receives models delivery: legacy topics only to their exact filter (or
// fields/+/<KEY>), the rest by plain MQTT matching.
func receives(filter, topic string) bool {
	legacy := strings.HasSuffix(topic, "/json") || strings.Count(topic, "/") == 5 && strings.HasPrefix(topic, "channels/") ||
		strings.Contains(topic, "/json/")
	if legacy {
		if filter == topic {
			return true
		}
		// .../fields/+/<KEY> matches .../fields/field1/<KEY>.
		return strings.Contains(filter, "/fields/+/") && mqttMatch(filter, topic)
	}
	return mqttMatch(filter, topic)
}

func mqttMatch(filter, topic string) bool {
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(tp) || (l != "+" && l != tp[i]) {
			return false
		}
	}
	return len(f) == len(tp)
}

func randomFilter(rng *rand.Rand, chans []*channels.Channel) string {
	c := chans[rng.IntN(len(chans))]
	wrong := "AAAAAAAAAAAAAAAA"
	switch rng.IntN(9) {
	case 0:
		return "#"
	case 1:
		return "channels/+/subscribe"
	case 2:
		return fmt.Sprintf("channels/%d/subscribe/json/%s", c.ID, c.ReadKey)
	case 3:
		return fmt.Sprintf("channels/%d/subscribe/json/%s", c.ID, wrong)
	case 4:
		return fmt.Sprintf("channels/%d/subscribe/fields/+", c.ID)
	case 5:
		return fmt.Sprintf("channels/%d/subscribe/fields/+/%s", c.ID, c.ReadKey)
	case 6:
		return fmt.Sprintf("devices/%d/sensors/field1/value", c.ID)
	case 7:
		return "devices/+/sensors/+/value"
	}
	return fmt.Sprintf("channels/%d/subscribe", c.ID)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
