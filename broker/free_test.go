package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.etcd.io/bbolt"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// allow replaces a device's access rules ("readwrite home/#", ...)
// through the admin service, as `feedmq device allow/disallow` does: the
// rules are stored and the registry updated at once; nil cr means the
// anonymous rules.
func (ts *testServer) allow(cr *auth.Credentials, rules ...string) {
	ts.t.Helper()
	ctx := context.Background()
	target := auth.RuleTarget{Scope: auth.ScopeAnonymous}
	if cr != nil {
		target = auth.DeviceRules(cr.Device.ID)
	}
	all, err := ts.svc.AccessRules(ctx)
	if err != nil {
		ts.t.Fatal(err)
	}
	have := all.Anonymous
	for _, d := range all.Devices {
		if cr != nil && d.ID == cr.Device.ID {
			have = d.Rules
		}
	}
	if cr != nil && !slices.ContainsFunc(all.Devices, func(d auth.DeviceRuleList) bool { return d.ID == cr.Device.ID }) {
		have = nil
	}
	var patterns []string
	for _, r := range have {
		patterns = append(patterns, r.Pattern)
	}
	if len(patterns) > 0 {
		if _, err := ts.svc.DisallowRules(ctx, target, patterns); err != nil {
			ts.t.Fatal(err)
		}
	}
	var rs []auth.Rule
	for _, r := range rules {
		access, pattern, _ := strings.Cut(r, " ")
		a, err := auth.ParseAccess(access)
		if err != nil {
			ts.t.Fatal(err)
		}
		rs = append(rs, auth.Rule{Access: a, Pattern: pattern})
	}
	if len(rs) > 0 {
		if _, err := ts.svc.AllowRules(ctx, target, rs); err != nil {
			ts.t.Fatal(err)
		}
	}
}

// pahoOpts connects a paho client (MQTT 3.1.1) with a device's
// credentials, changed by set (a will, a persistent session).
func pahoOpts(t testing.TB, addr string, cr *auth.Credentials, set func(*paho.ClientOptions)) *client {
	t.Helper()
	c := &client{msgs: make(chan message, 1000), lost: make(chan error, 1)}
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(30 * time.Second).
		SetClientID(cr.Device.ClientID).SetUsername(cr.Device.Username).SetPassword(cr.Password).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			c.msgs <- message{m.Topic(), string(m.Payload())}
		})
	if set != nil {
		set(o)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func (c *client) subscribeQos(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *client) publishRetained(t testing.TB, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, true, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func expectMsg(t testing.TB, c *client, topic, payload string) {
	t.Helper()
	if m := c.expect(t); m.topic != topic || m.payload != payload {
		t.Fatalf("got %s %q, want %s %q", m.topic, m.payload, topic, payload)
	}
}

// TestFreeTopicRules: free topics are governed by access rules, default
// deny: a filter without a read rule gets SUBACK 0x80, a denied publish
// is acknowledged (3.1.1) but neither delivered nor retained, and a rule
// removed while subscribed stops deliveries at once.
func TestFreeTopicRules(t *testing.T) {
	ts := startServer(t, broker.Options{})
	writer, reader, nobody := ts.device(), ts.device(), ts.device()
	ts.allow(writer, "readwrite home/#")
	ts.allow(reader, "read home/#", "write home/%c/status")

	n := mustConnect(t, ts.addr, nobody)
	if code := n.subscribe(t, "home/#"); code != 0x80 {
		t.Fatalf("SUBACK %#x without a rule, want 0x80", code)
	}
	w, r := mustConnect(t, ts.addr, writer), mustConnect(t, ts.addr, reader)
	if code := r.subscribe(t, "home/+/temp"); code != 0 {
		t.Fatalf("SUBACK %#x with a read rule", code)
	}
	if code := r.subscribe(t, "garden/#"); code != 0x80 {
		t.Fatalf("SUBACK %#x outside the rule", code)
	}
	if code := w.subscribe(t, "home/#"); code != 0 {
		t.Fatalf("writer SUBACK %#x", code)
	}
	if err := w.publish(t, "home/kitchen/temp", 1, "21.5"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, r, "home/kitchen/temp", "21.5")
	expectMsg(t, w, "home/kitchen/temp", "21.5")

	// Denied: acknowledged as Mosquitto does, not delivered, not retained.
	if err := r.publish(t, "home/kitchen/temp", 1, "99"); err != nil {
		t.Fatalf("denied QoS 1 publish not acknowledged: %v", err)
	}
	r.publishRetained(t, "home/kitchen/temp", 2, "98")
	if err := r.publish(t, "home/"+reader.Device.ClientID+"/status", 1, "up"); err != nil {
		t.Fatal(err) // %c substitution
	}
	expectMsg(t, w, "home/"+reader.Device.ClientID+"/status", "up")
	w.expectNothing(t)
	late := mustConnect(t, ts.addr, writer) // takes the writer's session over
	_ = late
	if code := late.subscribe(t, "home/#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	late.expectNothing(t) // nothing was retained

	// The reader's rule goes: its subscription stays, deliveries stop.
	ts.allow(reader, "write home/%c/status")
	if err := late.publish(t, "home/kitchen/temp", 1, "22"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, late, "home/kitchen/temp", "22")
	r.expectNothing(t)
	if st := ts.srv.Stats(); st.FreePublished != 3 || st.Rejected["not_authorized"] != 2 {
		t.Errorf("free published %d, rejected %d; want 3 and 2", st.FreePublished, st.Rejected["not_authorized"])
	}
}

// TestFreeTopicMQTT5Refusals: an MQTT 5 client learns that a publish was
// refused: PUBACK 0x87 at QoS 1, PUBREC 0x87 at QoS 2, and keeps its
// connection; a subscription without a rule gets SUBACK 0x87.
func TestFreeTopicMQTT5Refusals(t *testing.T) {
	ts := startServer(t, broker.Options{})
	dev := ts.device()
	ts.allow(dev, "read home/#")
	c := rawDevice(t, ts.addr, dev, 5)
	if code, err := c.Subscribe(1, "garden/x"); err != nil || code != 0x87 {
		t.Fatalf("SUBACK %#x %v, want 0x87", code, err)
	}
	if code, err := c.Subscribe(2, "home/#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	if err := c.Publish("home/x", 1, 3, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if id, code, err := c.ReadPuback(); err != nil || id != 3 || code != 0x87 {
		t.Fatalf("PUBACK %d %#x %v, want 3 0x87", id, code, err)
	}
	if _, err := c.Write(mqtttest.Packet(0x34, publishBody5("home/x", 4, "2"))); err != nil { // QoS 2
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := c.ReadPacket()
	if err != nil || typ != 5 || len(body) < 3 || body[0] != 0 || body[1] != 4 || body[2] != 0x87 {
		t.Fatalf("got type %d % x %v, want PUBREC 4 0x87", typ, body, err)
	}
	readNothing(t, c) // neither delivered back to its own subscription
	// Still connected.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if code, err := c.Subscribe(5, "home/y"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v after the refusals", code, err)
	}
}

// publishBody5 is an MQTT 5 QoS > 0 PUBLISH body without properties.
func publishBody5(topic string, id uint16, payload string) []byte {
	b := []byte{byte(len(topic) >> 8), byte(len(topic))}
	b = append(b, topic...)
	b = append(b, byte(id>>8), byte(id), 0)
	return append(b, payload...)
}

// TestFreeRetained: retained messages of free topics are delivered on
// subscribe, survive a restart, and are removed by an empty retained
// publish; nothing of the reserved trees is retained.
func TestFreeRetained(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	ts.allow(dev, "readwrite homeassistant/#")
	c := mustConnect(t, ts.addr, dev)
	c.publishRetained(t, "homeassistant/status", 1, "online")
	c.publishRetained(t, "homeassistant/sensor/t1/config", 0, `{"name":"t1"}`)
	c.publishRetained(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=1")
	if st := ts.srv.Stats(); st.Retained != 2 {
		t.Fatalf("retained %d, want 2", st.Retained)
	}
	c.Disconnect(100)

	for round := range 2 {
		s := mustConnect(t, ts.addr, dev)
		if code := s.subscribe(t, "homeassistant/status"); code != 0 {
			t.Fatalf("SUBACK %#x", code)
		}
		expectMsg(t, s, "homeassistant/status", "online")
		if code := s.subscribe(t, "#"); code != 0 {
			t.Fatalf("SUBACK # %#x", code)
		}
		got := map[string]string{}
		for range 2 {
			m := s.expect(t)
			got[m.topic] = m.payload
		}
		if got["homeassistant/status"] != "online" || got["homeassistant/sensor/t1/config"] != `{"name":"t1"}` {
			t.Fatalf("round %d: retained %v", round, got)
		}
		s.expectNothing(t) // no channel entry retained
		s.Disconnect(100)
		if round == 0 {
			ts.restart() // rules are stored: nothing to apply again
		}
	}
	c = mustConnect(t, ts.addr, dev)
	c.publishRetained(t, "homeassistant/status", 1, "")
	s := mustConnect(t, ts.addr, ts.device())
	_ = s
	if st := ts.srv.Stats(); st.Retained != 1 {
		t.Fatalf("retained %d after an empty retained publish, want 1", st.Retained)
	}
}

// TestFreeRetainedBounds: past retained.max_messages, a retained publish
// is delivered but not retained; replacing a retained topic still works.
func TestFreeRetainedBounds(t *testing.T) {
	ts := startServer(t, broker.Options{RetainedMax: 2, RetainedMaxBytes: 10})
	dev := ts.device()
	ts.allow(dev, "readwrite r/#")
	c := mustConnect(t, ts.addr, dev)
	c.publishRetained(t, "r/1", 1, "a")
	c.publishRetained(t, "r/2", 1, "b")
	c.publishRetained(t, "r/3", 1, "c")            // over the count
	c.publishRetained(t, "r/1", 1, "replaced")     // a replacement fits
	c.publishRetained(t, "r/2", 1, "far too long") // over the bytes
	if code := c.subscribe(t, "r/#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	got := map[string]string{}
	for range 2 {
		m := c.expect(t)
		got[m.topic] = m.payload
	}
	c.expectNothing(t)
	if got["r/1"] != "replaced" || got["r/2"] != "b" {
		t.Fatalf("retained %v", got)
	}
	if st := ts.srv.Stats(); st.Retained != 2 || st.RetainedRefused != 2 {
		t.Fatalf("retained %d, refused %d; want 2 and 2", st.Retained, st.RetainedRefused)
	}
}

// TestFreeWill: a will on a free topic the device may write is sent when
// the connection drops uncleanly, and not after a DISCONNECT; a will on a
// reserved topic or without a rule is ignored; a rule removed after
// CONNECT stops the will.
func TestFreeWill(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev, watcher := ts.device(pubsub(ch)), ts.device(pubsub(ch))
	ts.allow(dev, "readwrite home/#")
	ts.allow(watcher, "read #")
	w := mustConnect(t, ts.addr, watcher)
	if code := w.subscribe(t, "#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	cases := []struct {
		topic string
		drop  func(*mqtttest.Conn)
		rule  string
		want  bool
	}{
		{"home/dev/availability", func(c *mqtttest.Conn) { c.Close() }, "readwrite home/#", true},
		{"home/dev/availability", func(c *mqtttest.Conn) { _ = c.Disconnect(); c.Close() }, "readwrite home/#", false},
		{fmt.Sprintf("channels/%d/publish", ch), func(c *mqtttest.Conn) { c.Close() }, "readwrite home/#", false},
		{"garden/dev", func(c *mqtttest.Conn) { c.Close() }, "readwrite home/#", false},
		{"home/dev/availability", func(c *mqtttest.Conn) { ts.allow(dev, "read home/#"); c.Close() }, "readwrite home/#", false},
	}
	for i, tc := range cases {
		ts.allow(dev, tc.rule)
		c := dial(t, ts.addr)
		if _, err := c.Write(connectWithWill(dev, tc.topic, fmt.Sprintf("offline %d", i))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
			t.Fatalf("case %d: CONNACK %d % x %v", i, typ, body, err)
		}
		tc.drop(c)
		if tc.want {
			expectMsg(t, w, tc.topic, fmt.Sprintf("offline %d", i))
		} else {
			w.expectNothing(t)
		}
	}
}

// connectWithWill is a 3.1.1 CONNECT of a device with a QoS 1 will.
func connectWithWill(cr *auth.Credentials, topic, payload string) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	b := str(nil, "MQTT")
	b = append(b, 4, 0x80|0x40|0x08|0x04|0x02, 0, 60) // user, password, will QoS 1, will, clean
	b = str(b, cr.Device.ClientID)
	b = str(b, topic)
	b = str(b, payload)
	b = str(b, cr.Device.Username)
	b = str(b, cr.Password)
	return mqtttest.Packet(mqtttest.CONNECT<<4, b)
}

// TestPersistentSession: a device's CleanSession=0 session keeps its
// free-topic subscriptions and gets the QoS 1 and 2 messages published
// while it was away when it reconnects, also after a restart; its
// reserved filters are gone after it reconnects.
func TestPersistentSession(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	sub, pub := ts.device(pubsub(ch)), ts.device(pubsub(ch))
	ts.allow(sub, "read home/#")
	ts.allow(pub, "write home/#")
	persist := func(o *paho.ClientOptions) { o.SetCleanSession(false) }
	s := pahoOpts(t, ts.addr, sub, persist)
	for _, f := range []string{"home/#", fmt.Sprintf("channels/%d/subscribe", ch)} {
		if code := s.subscribeQos(t, f, 2); code > 2 {
			t.Fatalf("SUBACK %s %#x", f, code)
		}
	}
	s.Disconnect(100)

	p := mustConnect(t, ts.addr, pub)
	for i, qos := range []byte{1, 2, 0} {
		if err := p.publish(t, fmt.Sprintf("home/m%d", i), qos, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitStats(t, ts, "2 queued for 1 session", func(st broker.Stats) bool { return st.Queued == 2 && st.Sessions == 1 })
	p.Disconnect(100)
	ts.restart()

	s = pahoOpts(t, ts.addr, sub, persist)
	got := map[string]string{}
	for range 2 {
		m := s.expect(t)
		got[m.topic] = m.payload
	}
	if got["home/m0"] != "0" || got["home/m1"] != "1" {
		t.Fatalf("queued messages after a restart: %v", got)
	}
	s.expectNothing(t) // the QoS 0 one is not queued
	// The subscription itself came back too; the channel's did not.
	p = mustConnect(t, ts.addr, pub)
	if err := p.publish(t, "home/again", 1, "x"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, s, "home/again", "x")
	if err := p.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=5"); err != nil {
		t.Fatal(err)
	}
	s.expectNothing(t)

	// A clean session discards it all.
	s.Disconnect(100)
	clean := mustConnect(t, ts.addr, sub)
	clean.Disconnect(100)
	if err := p.publish(t, "home/lost", 1, "x"); err != nil {
		t.Fatal(err)
	}
	s = pahoOpts(t, ts.addr, sub, persist)
	s.expectNothing(t)
}

// TestPersistentSessionQueueBounds: past sessions.max_queued_per_client,
// the oldest queued messages are dropped and counted.
func TestPersistentSessionQueueBounds(t *testing.T) {
	ts := startServer(t, broker.Options{QueuedPerClient: 3})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read q/#")
	ts.allow(pub, "write q/#")
	persist := func(o *paho.ClientOptions) { o.SetCleanSession(false) }
	s := pahoOpts(t, ts.addr, sub, persist)
	s.subscribeQos(t, "q/#", 1)
	s.Disconnect(100)
	p := mustConnect(t, ts.addr, pub)
	for i := range 5 {
		if err := p.publish(t, "q/x", 1, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // creation times are in seconds: make the order plain
	}
	waitStats(t, ts, "3 queued, 2 dropped", func(st broker.Stats) bool { return st.Queued == 3 && st.QueueDropped == 2 })
	s = pahoOpts(t, ts.addr, sub, persist)
	got := map[string]bool{}
	for range 3 {
		got[s.expect(t).payload] = true
	}
	if !got["2"] || !got["3"] || !got["4"] {
		t.Fatalf("kept %v, want the newest 2, 3, 4", got)
	}
}

// TestPersistentSessionRevoked: a password reset or a deletion discards
// the device's session, and an anonymous client never keeps one.
func TestPersistentSessionRevoked(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read q/#")
	ts.allow(pub, "write q/#")
	persist := func(o *paho.ClientOptions) { o.SetCleanSession(false) }
	s := pahoOpts(t, ts.addr, sub, persist)
	s.subscribeQos(t, "q/#", 1)
	s.Disconnect(100)
	waitStats(t, ts, "1 session", func(st broker.Stats) bool { return st.Sessions == 1 })
	cr, err := ts.svc.ResetPassword(context.Background(), sub.Device.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st := ts.srv.Stats(); st.Sessions != 0 {
		t.Fatalf("sessions %d after a password reset, want 0", st.Sessions)
	}
	ts.allow(cr, "read q/#")
	s = pahoOpts(t, ts.addr, cr, persist)
	s.subscribeQos(t, "q/#", 1)
	s.Disconnect(100)
	if err := ts.svc.DeleteDevice(context.Background(), sub.Device.ID); err != nil {
		t.Fatal(err)
	}
	if st := ts.srv.Stats(); st.Sessions != 0 {
		t.Fatalf("sessions %d after a deletion, want 0", st.Sessions)
	}
	ts.restart()
	if st := ts.srv.Stats(); st.Sessions != 0 {
		t.Fatalf("sessions %d after a restart, want 0", st.Sessions)
	}
}

// TestHashSubscriberNoChannelLeak: a "#" subscriber allowed every free
// topic receives free publishes but no channel entry it has no grant for,
// and one with a grant gets that channel's entries only on our path.
func TestHashSubscriberNoChannelLeak(t *testing.T) {
	ts := startServer(t, broker.Options{})
	secret, mine := ts.channel(false), ts.channel(false)
	owner, dev := ts.device(pubsub(secret)), ts.device(pubsub(mine))
	ts.allow(dev, "readwrite #")
	ts.allow(owner, "readwrite #")
	s := mustConnect(t, ts.addr, dev)
	if code := s.subscribe(t, "#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	o := mustConnect(t, ts.addr, owner)
	if err := o.publish(t, fmt.Sprintf("channels/%d/publish", secret), 1, "field1=1"); err != nil {
		t.Fatal(err)
	}
	if err := o.publish(t, "free/topic", 1, "hello"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, s, "free/topic", "hello")
	if err := o.publish(t, fmt.Sprintf("channels/%d/publish", mine), 1, "field1=1"); err == nil {
		// not the owner's channel: refused (3.1.1 disconnects)
		t.Log("publish to a channel without a grant was acknowledged")
	}
	s.expectNothing(t)
}

// TestFreeTopicLength: free topics may be longer than any reserved one,
// up to limits.max_free_topic_length.
func TestFreeTopicLength(t *testing.T) {
	ts := startServer(t, broker.Options{MaxFreeTopicLen: 600})
	dev := ts.device()
	ts.allow(dev, "readwrite #")
	c := rawDevice(t, ts.addr, dev, 5)
	long := "a/" + strings.Repeat("x", 590)
	if code, err := c.Subscribe(1, long); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	if code, err := c.Subscribe(2, long+strings.Repeat("y", 20)); err != nil || code != 0x8F {
		t.Fatalf("SUBACK %#x %v for a filter over the limit, want 0x8F", code, err)
	}
	if err := c.Publish(long, 0, 0, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if topic, payload := readPublish(t, c); topic != long || payload != "v" {
		t.Fatalf("got %q %q", topic, payload)
	}
	if err := c.Publish(long+strings.Repeat("y", 20), 1, 4, []byte("v")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		typ, body, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if typ == mqtttest.PUBACK && body[1] == 4 {
			if body[2] != 0x90 {
				t.Fatalf("PUBACK %#x for a topic over the limit, want 0x90", body[2])
			}
			break
		}
	}
}

// waitStats polls the server's counters until ok accepts them.
func waitStats(t testing.TB, ts *testServer, what string, ok func(broker.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := ts.srv.Stats()
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed %s: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionExpiry: a persistent session whose client stays away past
// sessions.expiry is gone: its subscriptions leave the topic index (mochi
// only forgets the client) and it is not restored after a restart.
func TestSessionExpiry(t *testing.T) {
	ts := startServer(t, broker.Options{SessionExpiry: time.Second})
	sub := ts.device()
	ts.allow(sub, "read q/#")
	s := pahoOpts(t, ts.addr, sub, func(o *paho.ClientOptions) { o.SetCleanSession(false) })
	s.subscribeQos(t, "q/#", 1)
	s.subscribeQos(t, "q/2/#", 1)
	s.Disconnect(100)
	waitStats(t, ts, "1 session", func(st broker.Stats) bool { return st.Sessions == 1 })
	if n := ts.srv.Subscriptions(); n != 2 {
		t.Fatalf("%d subscriptions held for the session, want 2", n)
	}
	waitStats(t, ts, "the session expired", func(st broker.Stats) bool { return st.Sessions == 0 })
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.Subscriptions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions left after the session expired", ts.srv.Subscriptions())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.restart()
	if st := ts.srv.Stats(); st.Sessions != 0 || ts.srv.Subscriptions() != 0 {
		t.Fatalf("sessions %d, subscriptions %d after a restart", st.Sessions, ts.srv.Subscriptions())
	}
}

// TestAnonymousSessions: anonymous clients keep persistent sessions
// (MQTT 3.1.1 and 5) under the anonymous rules, up to
// sessions.max_anonymous of them; past it one asking for a session is
// refused (0x03, 0x97), a clean one is not; resuming its own session
// never counts against the cap.
func TestAnonymousSessions(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, MaxAnonymousSessions: 2})
	ts.allow(nil, "readwrite pub/#")
	v5 := func(id string) (*mqtttest.Conn, bool, byte) {
		c := dial(t, ts.addr)
		if _, err := c.Write(mqtttest.Packet(mqtttest.CONNECT<<4, connectBody5(id, 3600))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, body, err := c.ReadPacket()
		if err != nil || typ != mqtttest.CONNACK {
			t.Fatalf("CONNACK %d % x %v", typ, body, err)
		}
		return c, body[0] == 1, body[1]
	}
	c, present, code := v5("anon-a")
	if code != 0 || present {
		t.Fatalf("first session: CONNACK %#x present %v", code, present)
	}
	sb := []byte{0, 1, 0, 0, 5, 'p', 'u', 'b', '/', '#', 1} // SUBSCRIBE 1, no properties, pub/# at QoS 1
	if _, err := c.Write(mqtttest.Packet(0x82, sb)); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := c.ReadPacket(); err != nil || typ != 9 || body[len(body)-1] != 1 {
		t.Fatalf("SUBACK %d % x %v", typ, body, err)
	}
	c.Close()
	b := dial(t, ts.addr)
	if code, err := b.Connect(mqtttest.Connect{ClientID: "anon-b", Clean: false}); err != nil || code != 0 {
		t.Fatalf("second session (3.1.1): CONNACK %#x %v", code, err)
	}
	b.Close()
	waitStats(t, ts, "2 sessions", func(st broker.Stats) bool { return st.Sessions == 2 })
	if _, _, code := v5("anon-c"); code != 0x97 {
		t.Fatalf("third MQTT 5 session: CONNACK %#x, want 0x97", code)
	}
	third := dial(t, ts.addr)
	if code, err := third.Connect(mqtttest.Connect{ClientID: "anon-c", Clean: false}); err != nil || code != 0x03 {
		t.Fatalf("third 3.1.1 session: CONNACK %#x %v, want 0x03", code, err)
	}
	clean := dial(t, ts.addr)
	if code, err := clean.Connect(mqtttest.Connect{ClientID: "anon-c", Clean: true}); err != nil || code != 0 {
		t.Fatalf("clean session past the cap: CONNACK %#x %v", code, err)
	}
	if st := ts.srv.Stats(); st.Refused["persistent_session"] != 2 {
		t.Fatalf("refused persistent_session %d, want 2", st.Refused["persistent_session"])
	}
	// The first session resumes, also after a restart, and got what was
	// published for it meanwhile.
	p := rawAnonymous(t, ts.addr, "anon-pub")
	if err := p.Publish("pub/x", 1, 1, []byte("queued")); err != nil {
		t.Fatal(err)
	}
	if _, code, err := p.ReadPuback(); err != nil || code != 0 {
		t.Fatalf("PUBACK %#x %v", code, err)
	}
	waitStats(t, ts, "1 queued", func(st broker.Stats) bool { return st.Queued == 1 })
	ts.restart()
	c, present, code = v5("anon-a")
	if code != 0 || !present {
		t.Fatalf("resumed session: CONNACK %#x present %v", code, present)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		typ, body, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if typ == 3 {
			if !strings.Contains(string(body), "pub/x") || !strings.HasSuffix(string(body), "queued") {
				t.Fatalf("got % x", body)
			}
			break
		}
	}
}

// TestAnonymousSessionsOff: with anonymous connections off after a
// restart, the anonymous sessions are not restored.
func TestAnonymousSessionsOff(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ts.allow(nil, "read pub/#")
	c := dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: "anon-a", Clean: false}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	c.Close()
	waitStats(t, ts, "1 session", func(st broker.Stats) bool { return st.Sessions == 1 })
	ts.opts.Anonymous = false
	ts.restart()
	if st := ts.srv.Stats(); st.Sessions != 0 {
		t.Fatalf("%d sessions restored with anonymous connections off", st.Sessions)
	}
}

// connectBody5 is an MQTT 5 CONNECT body, Clean Start=0, with a session
// expiry interval.
func connectBody5(clientID string, expiry uint32) []byte {
	b := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0, 0, 60}
	b = append(b, 5, 0x11, byte(expiry>>24), byte(expiry>>16), byte(expiry>>8), byte(expiry))
	b = append(b, byte(len(clientID)>>8), byte(len(clientID)))
	return append(b, clientID...)
}

// TestQueuedTotalBound: past sessions.max_queued_total, the longest
// queues lose their oldest messages.
func TestQueuedTotalBound(t *testing.T) {
	ts := startServer(t, broker.Options{QueuedPerClient: 10, QueuedTotal: 10})
	pub := ts.device()
	ts.allow(pub, "write q/#")
	var subs []*auth.Credentials
	for range 2 {
		s := ts.device()
		ts.allow(s, "read q/#")
		c := pahoOpts(t, ts.addr, s, func(o *paho.ClientOptions) { o.SetCleanSession(false) })
		c.subscribeQos(t, "q/#", 1)
		c.Disconnect(100)
		subs = append(subs, s)
	}
	waitStats(t, ts, "2 sessions", func(st broker.Stats) bool { return st.Sessions == 2 })
	p := mustConnect(t, ts.addr, pub)
	for i := range 8 {
		if err := p.publish(t, "q/x", 1, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitStats(t, ts, "10 queued, 6 dropped", func(st broker.Stats) bool { return st.Queued == 10 && st.QueueDropped == 6 })
}

// TestFreeTopicAliasesAndLogs: MQTT 5 topic aliases work on free topics;
// a free topic over the length limit is refused (PUBACK 0x90) and not
// kept as an alias; a flood of refused publishes and wills logs a few
// short lines and never the password.
func TestFreeTopicAliasesAndLogs(t *testing.T) {
	log, logs := captureLogs(t)
	ts := startServer(t, broker.Options{Logger: log, MaxFreeTopicLen: 300})
	dev := ts.device()
	ts.allow(dev, "readwrite a/#")
	c := rawDevice(t, ts.addr, dev, 5)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if code, err := c.Subscribe(1, "a/#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	long := "a/" + strings.Repeat("L", 400)
	for i, tc := range []struct {
		pk    []byte
		ack   byte
		topic string
	}{
		{publish5("a/b", 1, 1, 1, []byte("1")), 0, "a/b"},
		{publish5("", 1, 1, 2, []byte("2")), 0, "a/b"},
		{publish5(long, 2, 1, 3, []byte("3")), 0x90, ""},
		{publish5("b/denied", 3, 1, 4, []byte("4")), 0x87, ""},
	} {
		if _, err := c.Write(tc.pk); err != nil {
			t.Fatal(err)
		}
		var acked, delivered bool
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for !acked || (tc.topic != "" && !delivered) {
			typ, body, err := c.ReadPacket()
			if err != nil {
				t.Fatalf("publish %d: %v", i+1, err)
			}
			switch typ {
			case mqtttest.PUBACK:
				if code := append(body, 0)[2]; code != tc.ack {
					t.Fatalf("publish %d: PUBACK %#x, want %#x", i+1, code, tc.ack)
				}
				acked = true
			case 3:
				if n := int(body[0])<<8 | int(body[1]); string(body[2:2+n]) != tc.topic && tc.topic != "" {
					t.Fatalf("publish %d delivered on %q", i+1, body[2:2+n])
				}
				if tc.topic == "" {
					t.Fatalf("publish %d delivered", i+1)
				}
				delivered = true
			}
		}
	}
	// A flood of refused publishes logs one line per rejectLogEvery.
	for i := range 200 {
		if err := c.Publish("b/denied", 0, 0, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if code, err := c.Subscribe(9, "a/x"); err != nil || code != 0 { // orders the flood before the checks
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	logs.mu.Lock()
	out := logs.buf.String()
	logs.mu.Unlock()
	if n := strings.Count(out, "publish rejected"); n > 2 {
		t.Errorf("%d rejection lines for a flood, want at most 2", n)
	}
	if strings.Contains(out, strings.Repeat("L", 300)) {
		t.Error("the log quotes the whole long topic")
	}
	logs.noKeys(t, dev.Password)
}

// TestPersistentSessionRuleRemovedWhileAway: a message queued for a
// session is not delivered when the device comes back if its read rule
// went meanwhile (mochi would resend it unchecked).
func TestPersistentSessionRuleRemovedWhileAway(t *testing.T) {
	ts := startServer(t, broker.Options{})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read q/#")
	ts.allow(pub, "write q/#")
	persist := func(o *paho.ClientOptions) { o.SetCleanSession(false) }
	s := pahoOpts(t, ts.addr, sub, persist)
	s.subscribeQos(t, "q/#", 1)
	s.Disconnect(100)
	p := mustConnect(t, ts.addr, pub)
	for _, topic := range []string{"q/secret", "q/open"} {
		if err := p.publish(t, topic, 1, topic); err != nil {
			t.Fatal(err)
		}
	}
	// mochi writes the PUBACK before it routes the message, and allow
	// passes through no rule at all: q/open routed then would be dropped,
	// not queued. A connection's packets are handled in order, so p's
	// SUBACK comes once both are queued.
	p.subscribe(t, "q/#")
	if st := ts.srv.Stats(); st.Queued != 2 {
		t.Fatalf("%d queued, want 2", st.Queued)
	}
	ts.allow(sub, "read q/open")
	s = pahoOpts(t, ts.addr, sub, persist)
	expectMsg(t, s, "q/open", "q/open")
	s.expectNothing(t)
}

// TestQueuedWholeTopics: an MQTT 5 client that accepts topic aliases
// still gets whole topics, so that messages queued while it is away
// (and resent on its next connection, where no alias holds) keep them.
func TestQueuedWholeTopics(t *testing.T) {
	ts := startServer(t, broker.Options{})
	sub, pub := ts.device(), ts.device()
	ts.allow(sub, "read q/#")
	ts.allow(pub, "write q/#")
	connect := func() *mqtttest.Conn {
		c := dial(t, ts.addr)
		b := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xC0, 0, 60} // username, password, Clean Start=0
		b = append(b, 8, 0x11, 0, 0, 0x0E, 0x10, 0x22, 0, 10) // session expiry 3600, topic alias maximum 10
		for _, f := range []string{sub.Device.ClientID, sub.Device.Username, sub.Password} {
			b = append(append(b, byte(len(f)>>8), byte(len(f))), f...)
		}
		if _, err := c.Write(mqtttest.Packet(mqtttest.CONNECT<<4, b)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
			t.Fatalf("CONNACK %d % x %v", typ, body, err)
		}
		return c
	}
	readTopics := func(c *mqtttest.Conn, n int) []string {
		var topics []string
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for len(topics) < n {
			typ, body, err := c.ReadPacket()
			if err != nil {
				t.Fatalf("after %v: %v", topics, err)
			}
			if typ == 3 {
				topics = append(topics, string(body[2:2+(int(body[0])<<8|int(body[1]))]))
			}
		}
		return topics
	}
	c := connect()
	sb := []byte{0, 1, 0, 0, 3, 'q', '/', '#', 1} // SUBSCRIBE 1, no properties, q/# at QoS 1
	if _, err := c.Write(mqtttest.Packet(0x82, sb)); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := c.ReadPacket(); err != nil || typ != 9 || body[len(body)-1] != 1 {
		t.Fatalf("SUBACK %d % x %v", typ, body, err)
	}
	p := mustConnect(t, ts.addr, pub)
	if err := p.publish(t, "q/a", 1, "live"); err != nil {
		t.Fatal(err)
	}
	if got := readTopics(c, 1); got[0] != "q/a" {
		t.Fatalf("live delivery on %q", got)
	}
	c.Close()
	waitStats(t, ts, "1 session", func(st broker.Stats) bool { return st.Sessions == 1 })
	for range 3 {
		if err := p.publish(t, "q/a", 1, "queued"); err != nil {
			t.Fatal(err)
		}
	}
	c = connect()
	for _, topic := range readTopics(c, 3) {
		if topic != "q/a" {
			t.Fatalf("a queued message came with topic %q", topic)
		}
	}
}

// TestSessionExpiryCapped: an MQTT 5 client asking for a longer session
// expiry than sessions.expiry is told the shorter one in its CONNACK, and
// its session goes after it.
func TestSessionExpiryCapped(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, SessionExpiry: time.Second})
	c := dial(t, ts.addr)
	if _, err := c.Write(mqtttest.Packet(mqtttest.CONNECT<<4, connectBody5("anon-long", 86400))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := c.ReadPacket()
	if err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	if !bytes.Contains(body[2:], []byte{0x11, 0, 0, 0, 1}) {
		t.Fatalf("CONNACK % x does not cut the session expiry to 1s", body)
	}
	c.Close()
	waitStats(t, ts, "1 session", func(st broker.Stats) bool { return st.Sessions == 1 })
	waitStats(t, ts, "the session expired", func(st broker.Stats) bool { return st.Sessions == 0 })
}

// TestSessionStoreContents opens the sessions file after the server
// stopped: it holds the persistent sessions' client records and granted
// free-topic filters and the free topics' retained messages, and nothing
// else: no clean client, no refused filter, no filter of the reserved
// trees, no session ended at DISCONNECT.
func TestSessionStoreContents(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	keep, ended, clean := ts.device(pubsub(ch)), ts.device(), ts.device()
	for _, d := range []*auth.Credentials{keep, ended, clean} {
		ts.allow(d, "readwrite home/#")
	}
	// k gets its own home/status at QoS 1; it disconnects once that is
	// acknowledged, or the session keeps it in flight.
	own := make(chan struct{}, 1)
	k := pahoOpts(t, ts.addr, keep, func(o *paho.ClientOptions) {
		o.SetCleanSession(false)
		o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			if m.Topic() == "home/status" {
				select {
				case own <- struct{}{}:
				default:
				}
			}
		})
	})
	for _, f := range []string{"home/#", fmt.Sprintf("channels/%d/subscribe", ch)} {
		if code := k.subscribeQos(t, f, 1); code > 2 {
			t.Fatalf("SUBACK %s %#x", f, code)
		}
	}
	if code := k.subscribeQos(t, "garden/#", 1); code != 0x80 {
		t.Fatalf("SUBACK garden/# %#x", code)
	}
	k.publishRetained(t, "home/status", 1, "online")
	k.publishRetained(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=1")
	select {
	case <-own:
	case <-time.After(5 * time.Second):
		t.Fatal("home/status was not delivered to its publisher")
	}
	k.Disconnect(100) // waits for the PUBACK paho sends after the handler

	// A v5 session that ends at DISCONNECT (expiry set to 0 there).
	e := dial(t, ts.addr)
	b := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xC0, 0, 60, 5, 0x11, 0, 0, 0x0E, 0x10}
	for _, f := range []string{ended.Device.ClientID, ended.Device.Username, ended.Password} {
		b = append(append(b, byte(len(f)>>8), byte(len(f))), f...)
	}
	if _, err := e.Write(mqtttest.Packet(mqtttest.CONNECT<<4, b)); err != nil {
		t.Fatal(err)
	}
	_ = e.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := e.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	if _, err := e.Write(mqtttest.Packet(0x82, []byte{0, 1, 0, 0, 6, 'h', 'o', 'm', 'e', '/', '#', 1})); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := e.ReadPacket(); err != nil || typ != 9 {
		t.Fatalf("SUBACK %d %v", typ, err)
	}
	if _, err := e.Write([]byte{0xE0, 7, 0, 5, 0x11, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, e, 5*time.Second)

	c := mustConnect(t, ts.addr, clean)
	c.subscribe(t, "home/#")
	c.Disconnect(100)
	waitStats(t, ts, "1 session", func(st broker.Stats) bool { return st.Sessions == 1 && st.Retained == 1 })
	ts.stop()

	db, err := bbolt.Open(filepath.Join(ts.dir, "mqtt-sessions.db"), 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys []string
	if err := db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, _ []byte) error {
				keys = append(keys, string(k))
				return nil
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	id := keep.Device.ClientID
	want := []string{"CL_" + id, "RET_home/status", "SUB_" + id + ":home/#"}
	if !slices.Equal(keys, want) {
		t.Fatalf("the sessions file holds %q, want %q", keys, want)
	}
}

// TestDollarTopicPublish: a publish to a $ topic is refused without
// closing the connection (Paho's interoperability suite publishes one at
// QoS 1 over MQTT 3.1.1): acknowledged, delivered to nobody.
func TestDollarTopicPublish(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ts.allow(nil, "readwrite #")
	c := rawAnonymous(t, ts.addr, "dollar")
	if code, err := c.Subscribe(1, "#"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	for i, topic := range []string{"$TopicA/B", "$feedmq/refused-will"} {
		if err := c.Publish(topic, 1, uint16(i+2), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if id, _, err := c.ReadPuback(); err != nil || id != uint16(i+2) {
			t.Fatalf("PUBACK %d %v", id, err)
		}
	}
	if err := c.Publish("TopicA/B", 0, 0, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if topic, payload := readPublish(t, c); topic != "TopicA/B" || payload != "after" {
		t.Fatalf("got %s %q", topic, payload)
	}
	if st := ts.srv.Stats(); st.Rejected["bad_topic"] != 2 {
		t.Fatalf("bad_topic %d, want 2", st.Rejected["bad_topic"])
	}
}

// TestRevokeDuringCleanDisconnect: a device revoked while its connection
// ends with a DISCONNECT. mochi emptied the will there with a plain write
// of the whole struct while Revoke cleared its flag atomically from
// another goroutine: a data race, which this fails on under -race (as
// make test runs it). The reader waits between its DISCONNECT and that
// write, and nothing orders Revoke before the write but time.
func TestRevokeDuringCleanDisconnect(t *testing.T) {
	ts := startServer(t, broker.Options{})
	dev := ts.device()
	ended := make(chan struct{}, 1)
	broker.SetBeforeEndClient(func() {
		select {
		case ended <- struct{}{}:
		default:
		}
		time.Sleep(50 * time.Millisecond)
	})
	t.Cleanup(func() { broker.SetBeforeEndClient(nil) })
	c := mustConnect(t, ts.addr, dev)
	go c.Disconnect(250) // sends DISCONNECT (0 may only close)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not end")
	}
	ts.srv.Revoke(dev.Device.ID)
	waitStats(t, ts, "no connection", func(st broker.Stats) bool { return st.Connections["mqtt"].Live == 0 })
}
