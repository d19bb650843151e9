package broker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
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
// public and private channels, some named like IDs (another channel's ID,
// a zero-padded ID, a number), subscribes each (and some anonymous
// clients) to random filters (exact, wildcard, legacy with right or wrong
// read keys, field and sensor topics by ID, name or label, non-canonical
// IDs), publishes one entry per channel, and
// checks against an independent model that every subscriber gets exactly
// the topics it is entitled to: nothing more, nothing less. Devices (and
// anonymous clients) also get random access rules on free topics (read,
// write, deny, %c and %u, wildcards) and free filters; a writer allowed
// everything and one allowed little publish free topics, and the model
// says who gets which.
func TestAuthorizationProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ts := startServer(t, broker.Options{Anonymous: true, Logger: quietLogger()})
	ctx := context.Background()

	const nChannels, nDevices, nAnonymous = 10, 98, 10 // two more devices write free topics
	chans := make([]*channels.Channel, nChannels)
	for i := range chans {
		c, err := ts.svc.CreateChannel(ctx, auth.ChannelSpec{Name: fmt.Sprintf("ch%d", i), Public: rng.IntN(10) < 3})
		if err != nil {
			t.Fatal(err)
		}
		chans[i] = c
	}
	// Names that look like IDs cannot be created, but an older database
	// may hold them: another channel's ID, a zero-padded ID, a number that
	// is no channel's ID. Put them where loading such a database would.
	always := rng.IntN(nChannels) // at least one name is another channel's ID
	for i, c := range chans {
		if rng.IntN(3) != 0 && i != always {
			continue
		}
		renamed := *c
		switch kind := rng.IntN(3); {
		case i == always || kind == 0:
			renamed.Name = strconv.FormatUint(chans[(i+1+rng.IntN(nChannels-1))%nChannels].ID, 10)
		case kind == 1:
			renamed.Name = "0" + strconv.FormatUint(c.ID, 10)
		default:
			renamed.Name = "99999"
		}
		ts.svc.Registry.PutChannel(&renamed)
		chans[i] = &renamed
	}
	byID := map[uint64]*channels.Channel{}
	for _, c := range chans {
		byID[c.ID] = c
	}
	type subscriber struct {
		grants   map[uint64]auth.Grant
		filters  []genFilter
		conn     *mqtttest.Conn
		rules    []string // "ACCESS PATTERN"
		clientID string
		username string
	}
	randomRules := func() []string {
		var rules []string
		seen := map[string]bool{} // one rule per pattern, as a stored list holds
		for range rng.IntN(4) {
			r := freeRulePool[rng.IntN(len(freeRulePool))]
			if _, pattern, _ := strings.Cut(r, " "); !seen[pattern] {
				seen[pattern] = true
				rules = append(rules, r)
			}
		}
		return rules
	}
	anonRules := randomRules()
	ts.allow(nil, anonRules...)
	var deviceIDs []string
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
			s.rules, s.clientID, s.username = randomRules(), cr.Device.ClientID, cr.Device.Username
			ts.allow(cr, s.rules...)
			s.conn = rawDevice(t, ts.addr, cr, 4)
			deviceIDs = append(deviceIDs, cr.Device.ClientID)
		} else {
			s.rules, s.clientID = anonRules, fmt.Sprintf("anon%d", i)
			s.conn = rawAnonymous(t, ts.addr, s.clientID)
		}
		for range 2 {
			s.filters = append(s.filters, randomFilter(rng, chans, byID))
		}
		subs = append(subs, s)
	}
	// Free filters: the rule pool's topics, and client IDs (own or
	// another's, for %c and %u).
	freeTopics := []string{"home/kitchen/temp", "home/secret/x", "home/status", "garden/status", "home/a/b/c"}
	for range 5 {
		if topic := deviceIDs[rng.IntN(len(deviceIDs))] + "/cmd"; !slices.Contains(freeTopics, topic) {
			freeTopics = append(freeTopics, topic)
		}
	}
	for _, s := range subs {
		for range 1 + rng.IntN(2) {
			f := freeFilterPool[rng.IntN(len(freeFilterPool))]
			switch f {
			case "%own":
				f = s.clientID + "/#"
			case "%other":
				f = deviceIDs[rng.IntN(len(deviceIDs))] + "/cmd"
			}
			s.filters = append(s.filters, genFilter{filter: f, free: true})
		}
	}

	canRead := func(s *subscriber, c *channels.Channel, key string) bool {
		return s.grants[c.ID].Subscribe || c.Public || key == c.ReadKey
	}
	// granted tells from the model whether a filter is accepted.
	granted := func(s *subscriber, f genFilter) bool {
		// A filter outside the reserved trees is granted by a read rule,
		// even one that also reaches them (+/...): deliveries from those
		// trees are still checked against channel grants.
		if !channels.Reserved(f.filter) && modelAllows(s.rules, "read", f.filter, s.clientID, s.username) {
			return true
		}
		return !f.free && (f.wildcard || f.target != nil && canRead(s, f.target, f.key))
	}
	for _, s := range subs {
		for i, f := range s.filters {
			code, err := s.conn.Subscribe(uint16(i+1), f.filter)
			if err != nil {
				t.Fatal(err)
			}
			if want := granted(s, f); (code == 0) != want {
				t.Fatalf("SUBACK %#x for %s with grants %v, model says granted=%v", code, f.filter, s.grants, want)
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

	// Free topics: one writer may write them all, the other only
	// home/kitchen/#; what the second publishes elsewhere must reach
	// nobody.
	free, limited := ts.device(), ts.device()
	ts.allow(free, "write #")
	ts.allow(limited, "write home/kitchen/#", "read #")
	fw, lw := rawDevice(t, ts.addr, free, 4), rawDevice(t, ts.addr, limited, 4)
	for i, topic := range freeTopics {
		if err := fw.Publish(topic, 1, uint16(i+1), []byte("free:"+topic)); err != nil {
			t.Fatal(err)
		}
		if _, code, err := fw.ReadPuback(); err != nil || code != 0 {
			t.Fatalf("PUBACK %v %v", code, err)
		}
	}
	for i, topic := range []string{"home/denied", "garden/denied", limited.Device.ClientID + "/cmd"} {
		if err := lw.Publish(topic, 1, uint16(i+1), []byte("denied")); err != nil {
			t.Fatal(err)
		}
		if _, code, err := lw.ReadPuback(); err != nil || code != 0 {
			t.Fatalf("PUBACK %v %v (3.1.1: acknowledged and dropped)", code, err)
		}
	}

	// expected maps the topics a subscriber must receive to the channel
	// whose entry each must carry (0: a free topic).
	expected := func(s *subscriber) map[string]uint64 {
		set := map[string]uint64{}
		for _, topic := range freeTopics {
			if !modelAllows(s.rules, "read", topic, s.clientID, s.username) {
				continue
			}
			for _, f := range s.filters {
				if granted(s, f) && mqttMatch(f.filter, topic) {
					set[topic] = 0
				}
			}
		}
		for _, f := range s.filters {
			if !granted(s, f) || f.free {
				continue
			}
			for _, c := range chans {
				if !canRead(s, c, "") && !strings.Contains(f.filter, c.ReadKey) {
					continue
				}
				for _, topic := range topicsOf(c) {
					if receives(f.filter, topic) {
						set[topic] = c.ID
					}
				}
			}
		}
		return set
	}
	var wg sync.WaitGroup
	var delivered, refused, freeDelivered, freeRefused atomic.Int64
	for _, s := range subs {
		for _, f := range s.filters {
			if !granted(s, f) {
				refused.Add(1)
				if f.free {
					freeRefused.Add(1)
				}
			}
		}
	}
	errs := make(chan string, len(subs))
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			set := map[string]bool{}
			want := expected(s)
			for {
				_ = s.conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
				topic, payload, err := s.conn.ReadPublish()
				if err != nil {
					break
				}
				if set[topic] {
					errs <- fmt.Sprintf("subscriber %d got %s twice", i, topic)
				}
				set[topic] = true
				delivered.Add(1)
				if id, ok := want[topic]; ok && id == 0 {
					if string(payload) != "free:"+topic {
						errs <- fmt.Sprintf("subscriber %d got %q on free topic %s", i, payload, topic)
					}
					freeDelivered.Add(1)
					continue
				}
				// Every entry's values are v<channel ID>: a topic must
				// carry its own channel's entry, never another's.
				if id, ok := want[topic]; ok && string(payload) != fmt.Sprintf("v%d", id) &&
					!strings.Contains(string(payload), fmt.Sprintf(`"v%d"`, id)) {
					errs <- fmt.Sprintf("subscriber %d got %s on %s, want channel %d's entry", i, payload, topic, id)
				}
			}
			wantTopics := map[string]bool{}
			for topic := range want {
				wantTopics[topic] = true
			}
			if got, want := sortedKeys(set), sortedKeys(wantTopics); strings.Join(got, " ") != strings.Join(want, " ") {
				errs <- fmt.Sprintf("subscriber %d (grants %v, filters %v):\n got  %v\n want %v", i, s.grants, s.filters, got, want)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d subscribers, %d filters refused (%d free), %d messages delivered as the model predicts (%d free)",
		len(subs), refused.Load(), freeRefused.Load(), delivered.Load(), freeDelivered.Load())
	if delivered.Load() < int64(nChannels) || refused.Load() == 0 || freeDelivered.Load() == 0 || freeRefused.Load() == 0 {
		t.Fatalf("the random set-up exercised too little: %d deliveries (%d free), %d refusals (%d free)",
			delivered.Load(), freeDelivered.Load(), refused.Load(), freeRefused.Load())
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// topicsOf lists every topic an entry setting field1 on c is fanned out
// to. Channels have the default labels ("Field 1"...). A name that looks
// like an ID never stands in a topic.
func topicsOf(c *channels.Channel) []string {
	feed := channels.FeedTopic(c.ID)
	id := strconv.FormatUint(c.ID, 10)
	topics := []string{feed, feed + "/fields/field1", feed + "/json", feed + "/json/" + c.ReadKey,
		feed + "/fields/field1/" + c.ReadKey, "devices/" + id + "/sensors/field1/value",
		"devices/" + id + "/sensors/Field 1/value"}
	if !allDigits(c.Name) {
		topics = append(topics, "devices/"+c.Name+"/sensors/field1/value", "devices/"+c.Name+"/sensors/Field 1/value")
	}
	return topics
}

// receives models delivery: legacy topics and sensor topics that name the
// channel or the field only to their exact filter (or fields/+/<KEY>), the
// rest by plain MQTT matching.
func receives(filter, topic string) bool {
	legacy := strings.HasSuffix(topic, "/json") || strings.Count(topic, "/") == 5 && strings.HasPrefix(topic, "channels/") ||
		strings.Contains(topic, "/json/")
	if sensor, ok := strings.CutPrefix(topic, "devices/"); ok {
		levels := strings.Split(sensor, "/")
		legacy = !allDigits(levels[0]) || levels[2] != "field1"
	}
	if legacy {
		if filter == topic {
			return true
		}
		// .../fields/+/<KEY> matches .../fields/field1/<KEY>.
		return strings.Contains(filter, "/fields/+/") && mqttMatch(filter, topic)
	}
	return mqttMatch(filter, topic)
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
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

// genFilter is a generated filter with what the model needs: a wildcard
// filter is granted and checked per delivery; any other is granted when
// its subscriber may read target with key (nil: refused).
type genFilter struct {
	filter   string
	wildcard bool
	target   *channels.Channel
	key      string
	free     bool // a free filter: granted by the subscriber's read rules
}

// freeRulePool and freeFilterPool are what free-topic rules and filters
// are drawn from; %own and %other stand for the subscriber's client ID
// and another device's.
var (
	freeRulePool = []string{"read #", "readwrite home/#", "read home/+/temp", "deny home/secret/#", "read %c/#",
		"read %u/#", "read +/status", "write home/%c/#", "read garden/status", "read home/+", "deny #"}
	freeFilterPool = []string{"home/#", "home/+/temp", "home/kitchen/temp", "home/secret/x", "home/+/status",
		"garden/status", "home/+", "home/status", "%own", "%other", "garden/#"}
)

// modelAllows is the rule model, written apart from auth.Allows: a deny
// rule matching vetoes; otherwise some rule with the access must match.
// A pattern matches after %c and %u levels take the client ID and
// username; a filter's own + and # are literal levels, except that a
// pattern's + or # covers a +, and only a pattern's # covers a #.
func modelAllows(rules []string, want, topic, clientID, username string) bool {
	ok := false
	for _, r := range rules {
		access, pattern, _ := strings.Cut(r, " ")
		if !modelMatch(pattern, topic, clientID, username) {
			continue
		}
		if access == "deny" {
			return false
		}
		if access == want || access == "readwrite" {
			ok = true
		}
	}
	return ok
}

func modelMatch(pattern, topic, clientID, username string) bool {
	p, tp := strings.Split(pattern, "/"), strings.Split(topic, "/")
	for i, l := range p {
		switch {
		case l == "#":
			return true
		case i >= len(tp):
			return false
		case l == "%c":
			l = clientID
		case l == "%u":
			l = username
		}
		if l == "" {
			return false
		}
		if l == "+" && tp[i] != "#" || l == tp[i] {
			continue
		}
		return false
	}
	return len(p) == len(tp)
}

func (f genFilter) String() string { return f.filter }

func randomFilter(rng *rand.Rand, chans []*channels.Channel, byID map[uint64]*channels.Channel) genFilter {
	c := chans[rng.IntN(len(chans))]
	id := strconv.FormatUint(c.ID, 10)
	wrong := "AAAAAAAAAAAAAAAA"
	switch rng.IntN(18) {
	case 0:
		return genFilter{filter: "#", wildcard: true}
	case 1:
		return genFilter{filter: "channels/+/subscribe", wildcard: true}
	case 2:
		return genFilter{filter: "channels/" + id + "/subscribe/json/" + c.ReadKey, target: c, key: c.ReadKey}
	case 3:
		return genFilter{filter: "channels/" + id + "/subscribe/json/" + wrong, target: c, key: wrong}
	case 4:
		return genFilter{filter: "channels/" + id + "/subscribe/fields/+", target: c}
	case 5:
		return genFilter{filter: "channels/" + id + "/subscribe/fields/+/" + c.ReadKey, target: c, key: c.ReadKey}
	case 6:
		return genFilter{filter: "devices/" + id + "/sensors/field1/value", target: c}
	case 7:
		return genFilter{filter: "devices/+/sensors/+/value", wildcard: true}
	case 8, 9, 16, 17:
		// By name: a name that looks like an ID is read as one.
		sensor := []string{"field1", "Field 1"}[rng.IntN(2)]
		return genFilter{filter: "devices/" + c.Name + "/sensors/" + sensor + "/value", target: byLevel(c.Name, c, byID)}
	case 10:
		return genFilter{filter: "devices/" + id + "/sensors/Field 1/value", target: c}
	case 11:
		// Non-canonical spellings of an ID are refused everywhere.
		return genFilter{filter: []string{"channels/0" + id + "/subscribe", "devices/0" + id + "/sensors/field1/value",
			"+/0" + id + "/subscribe", "channels/0" + id + "/#", "devices/0" + id + "/sensors/Field 1/value"}[rng.IntN(5)]}
	case 12:
		return genFilter{filter: "+/" + id + "/+/+/+", wildcard: true}
	}
	return genFilter{filter: "channels/" + id + "/subscribe", target: c}
}

// byLevel resolves a sensor topic's channel level as the model reads it:
// digits are an ID in its one spelling, anything else is c's name.
func byLevel(level string, c *channels.Channel, byID map[uint64]*channels.Channel) *channels.Channel {
	if !allDigits(level) {
		return c
	}
	n, err := strconv.ParseUint(level, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != level {
		return nil
	}
	return byID[n]
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
