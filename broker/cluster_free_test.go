package broker_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/cluster"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/storage"
)

// freeNodes are two brokers sharing one store, registry and bindings,
// linked by a real NATS server, with a third NATS connection that
// records every free-topic message crossing it.
type freeNodes struct {
	svc      *admin.Local
	db       *storage.DB
	srvs     []*broker.Server
	addrs    []string
	clusters []*cluster.Cluster

	mu   sync.Mutex
	seen []string // "origin topic payload" of each message on the free subject
}

func startFreeNodes(t *testing.T) *freeNodes {
	t.Helper()
	ns := startTestNATS(t)
	db, svc := openSharedStore(t)
	fn := &freeNodes{svc: svc, db: db}
	obs, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(obs.Close)
	if _, err := obs.Subscribe("feedmq.test.free", func(m *nats.Msg) {
		msg, origin, err := cluster.DecodeFree(m.Data, 1<<20)
		fn.mu.Lock()
		defer fn.mu.Unlock()
		if err != nil {
			fn.seen = append(fn.seen, "malformed "+err.Error())
			return
		}
		fn.seen = append(fn.seen, origin+" "+msg.Topic+" "+string(msg.Payload))
	}); err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		srv, c := startClusterBroker(t, ns.ClientURL(), i, db, svc)
		fn.srvs = append(fn.srvs, srv)
		fn.addrs = append(fn.addrs, srv.Addr("mqtt").String())
		fn.clusters = append(fn.clusters, c)
	}
	// Both nodes hold every binding, as cluster nodes do.
	if err := svc.WatchBindings(context.Background(), func(bs []channels.Binding) {
		for _, srv := range fn.srvs {
			srv.SetBindings(slices.Clone(bs))
		}
	}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "NATS subscriptions", func() bool { return ns.GlobalAccount().Interest("feedmq.test.free") == 3 })
	return fn
}

func (fn *freeNodes) device(t *testing.T, rules ...string) *auth.Credentials {
	t.Helper()
	cr, err := fn.svc.CreateDevice(context.Background(), auth.DeviceSpec{Name: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	fn.allow(t, cr, rules...)
	return cr
}

func (fn *freeNodes) allow(t *testing.T, cr *auth.Credentials, rules ...string) {
	t.Helper()
	ctx := context.Background()
	target := auth.DeviceRules(cr.Device.ID)
	all, err := fn.svc.AccessRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all.Devices {
		if d.ID != cr.Device.ID {
			continue
		}
		var old []string
		for _, r := range d.Rules {
			old = append(old, r.Pattern)
		}
		if _, err := fn.svc.DisallowRules(ctx, target, old); err != nil {
			t.Fatal(err)
		}
	}
	var rs []auth.Rule
	for _, r := range rules {
		access, pattern, _ := bytes.Cut([]byte(r), []byte(" "))
		a, err := auth.ParseAccess(string(access))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, auth.Rule{Access: a, Pattern: string(pattern)})
	}
	if len(rs) > 0 {
		if _, err := fn.svc.AllowRules(ctx, target, rs); err != nil {
			t.Fatal(err)
		}
	}
}

// waitSeen waits until the free subject carried exactly want (in order)
// and nothing else.
func (fn *freeNodes) waitSeen(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		fn.mu.Lock()
		got = slices.Clone(fn.seen)
		fn.mu.Unlock()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("on NATS: %q\nwant       %q", got, want)
	}
}

// A free publish on node 1 reaches subscribers on both nodes, crosses
// NATS once, and node 2 sends nothing back: after node 2 delivered it, a
// marker published on node 2 is the next message on the subject (NATS
// keeps node 2's sends in order, so a loop would come before it). It
// counts as a publish on node 1 only.
func TestClusterFreePublishCrossesOnce(t *testing.T) {
	fn := startFreeNodes(t)
	writer := fn.device(t, "readwrite home/#")
	reader := fn.device(t, "readwrite home/#")
	local := fn.device(t, "read home/#")
	w := mustConnect(t, fn.addrs[0], writer)
	l := mustConnect(t, fn.addrs[0], local)
	r := mustConnect(t, fn.addrs[1], reader)
	for _, c := range []*client{l, r} {
		if code := c.subscribe(t, "home/#"); code != 0 {
			t.Fatalf("SUBACK %#x", code)
		}
	}
	if err := w.publish(t, "home/hall/temp", 0, "21.5"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, l, "home/hall/temp", "21.5")
	expectMsg(t, r, "home/hall/temp", "21.5")
	if err := r.publish(t, "home/marker", 0, "m"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, r, "home/marker", "m")
	expectMsg(t, l, "home/marker", "m") // from node 2 to node 1
	fn.waitSeen(t, "node1 home/hall/temp 21.5", "node2 home/marker m")
	r.expectNothing(t) // not delivered twice on node 2
	if got := fn.srvs[1].Stats().FreePublished; got != 1 {
		t.Errorf("node 2 counts %d local publishes, want 1 (the marker)", got)
	}
	m1, m2 := fn.clusters[0].Metrics(), fn.clusters[1].Metrics()
	if m1.FreeForwarded != 1 || m1.FreeReceived != 1 || m2.FreeForwarded != 1 || m2.FreeReceived != 1 ||
		m1.FreeDropped+m2.FreeDropped != 0 {
		t.Errorf("metrics: node 1 %+v, node 2 %+v", m1, m2)
	}
}

// A read rule on node 2 decides node 2's deliveries: a subscriber whose
// rule was removed after it subscribed gets nothing, while one whose rule
// stands gets the message.
func TestClusterFreeReadRuleHolds(t *testing.T) {
	fn := startFreeNodes(t)
	writer := fn.device(t, "write home/#")
	allowed := fn.device(t, "read home/#")
	removed := fn.device(t, "read home/#")
	w := mustConnect(t, fn.addrs[0], writer)
	a := mustConnect(t, fn.addrs[1], allowed)
	x := mustConnect(t, fn.addrs[1], removed)
	for _, c := range []*client{a, x} {
		if code := c.subscribe(t, "home/#"); code != 0 {
			t.Fatalf("SUBACK %#x", code)
		}
	}
	fn.allow(t, removed, "read garden/#")
	if err := w.publish(t, "home/door", 1, "open"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, a, "home/door", "open")
	x.expectNothing(t)
}

// A bound topic makes one entry, on the node it was published to, though
// both nodes have the binding and node 2's subscriber gets the message.
func TestClusterFreeBindingOnce(t *testing.T) {
	fn := startFreeNodes(t)
	ctx := context.Background()
	ch, err := fn.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "lamp"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fn.svc.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "zigbee2mqtt/lamp",
		Fields: [8]string{"$.temperature"}}); err != nil {
		t.Fatal(err)
	}
	writer := fn.device(t, "write zigbee2mqtt/#")
	reader := fn.device(t, "read zigbee2mqtt/#")
	w := mustConnect(t, fn.addrs[0], writer)
	r := mustConnect(t, fn.addrs[1], reader)
	if code := r.subscribe(t, "zigbee2mqtt/#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	if err := w.publish(t, "zigbee2mqtt/lamp", 1, `{"temperature":22.5}`); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, r, "zigbee2mqtt/lamp", `{"temperature":22.5}`)
	// A second entry would have been made before node 2 routed it.
	es, err := fn.svc.Entries(ctx, ch.ID, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 {
		t.Fatalf("%d entries, want one", len(es))
	}
	if v, _ := es[0].Value(0); v != "22.5" {
		t.Fatalf("entries %+v, want one with field1 22.5", es)
	}
}

type qosMessage struct {
	topic, payload string
	qos            byte
	retained       bool
}

func subscribeRecord(t *testing.T, c *client, filter string, qos byte) chan qosMessage {
	t.Helper()
	got := make(chan qosMessage, 10)
	tok := c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) {
		got <- qosMessage{m.Topic(), string(m.Payload()), m.Qos(), m.Retained()}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return got
}

func expectQos(t *testing.T, ch chan qosMessage, want qosMessage) {
	t.Helper()
	select {
	case m := <-ch:
		if m != want {
			t.Fatalf("got %+v, want %+v", m, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message (want %+v)", want)
	}
}

// Node 2 delivers at the subscription's QoS at most: QoS 1 to a QoS 1
// subscriber, which acknowledges it (nothing stays queued on node 2),
// QoS 0 to a QoS 0 one; a retained publish arrives live with retain 0.
func TestClusterFreeQoS(t *testing.T) {
	fn := startFreeNodes(t)
	writer := fn.device(t, "write home/#")
	r1 := fn.device(t, "read home/#")
	r0 := fn.device(t, "read home/#")
	w := mustConnect(t, fn.addrs[0], writer)
	c1, c0 := mustConnect(t, fn.addrs[1], r1), mustConnect(t, fn.addrs[1], r0)
	got1, got0 := subscribeRecord(t, c1, "home/#", 1), subscribeRecord(t, c0, "home/#", 0)
	if err := w.publish(t, "home/a", 2, "two"); err != nil {
		t.Fatal(err)
	}
	expectQos(t, got1, qosMessage{"home/a", "two", 1, false})
	expectQos(t, got0, qosMessage{"home/a", "two", 0, false})
	waitUntil(t, "the PUBACK on node 2", func() bool { return fn.srvs[1].Stats().Queued == 0 })
	if err := w.publish(t, "home/b", 0, "zero"); err != nil {
		t.Fatal(err)
	}
	expectQos(t, got1, qosMessage{"home/b", "zero", 0, false})
	expectQos(t, got0, qosMessage{"home/b", "zero", 0, false})
	w.publishRetained(t, "home/c", 1, "kept")
	expectQos(t, got1, qosMessage{"home/c", "kept", 1, false})
	expectQos(t, got0, qosMessage{"home/c", "kept", 0, false})
}

// An MQTT 5 publish keeps its properties across nodes: payload format,
// content type, response topic, correlation data, user properties and
// message expiry; a will crosses as well.
func TestClusterFreeProperties(t *testing.T) {
	fn := startFreeNodes(t)
	writer := fn.device(t, "readwrite ha/#")
	reader := fn.device(t, "read ha/#")
	sub, err := mqtttest.Dial(fn.addrs[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	// The reader asks for response information: mochi sends a response
	// topic and correlation data only then.
	if _, err := sub.Write(mqtttest.Packet(mqtttest.CONNECT<<4, connectBody5Auth(reader))); err != nil {
		t.Fatal(err)
	}
	_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := sub.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	if _, err := sub.Write(mqtttest.SubscribePacket(1, true, "ha/#")); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := sub.ReadPacket(); err != nil || typ != mqtttest.SUBACK || body[len(body)-1] != 0 {
		t.Fatalf("SUBACK %d % x %v", typ, body, err)
	}
	pub, err := mqtttest.Dial(fn.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if code, err := pub.Connect(mqtttest.Connect{Version: 5, Clean: true, ClientID: writer.Device.ClientID,
		Username: writer.Device.Username, Password: writer.Password}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	props := packets.Properties{PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "application/json",
		ResponseTopic: "ha/reply", CorrelationData: []byte{1, 2, 3}, MessageExpiryInterval: 3600,
		User: []packets.UserProperty{{Key: "source", Val: "ha"}, {Key: "source", Val: "z2m"}}}
	out := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 5,
		TopicName: "ha/light", Payload: []byte(`{"on":true}`), Properties: props}
	out.Mods.AllowResponseInfo = true
	var buf bytes.Buffer
	if err := out.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := sub.ReadPacket()
	if err != nil || typ != mqtttest.PUBLISH {
		t.Fatalf("read %d %v", typ, err)
	}
	in := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Remaining: len(body)}, ProtocolVersion: 5}
	if err := in.PublishDecode(body); err != nil {
		t.Fatal(err)
	}
	p := in.Properties
	if in.TopicName != "ha/light" || string(in.Payload) != `{"on":true}` || p.PayloadFormat != 1 || !p.PayloadFormatFlag ||
		p.ContentType != props.ContentType || p.ResponseTopic != props.ResponseTopic ||
		!bytes.Equal(p.CorrelationData, props.CorrelationData) || !slices.Equal(p.User, props.User) ||
		p.MessageExpiryInterval == 0 || p.MessageExpiryInterval > 3600 {
		t.Fatalf("node 2 delivered %s %q with %+v", in.TopicName, in.Payload, p)
	}
}

// A will of a client on node 1 reaches a subscriber on node 2.
func TestClusterFreeWill(t *testing.T) {
	fn := startFreeNodes(t)
	dev := fn.device(t, "readwrite home/#")
	watcher := fn.device(t, "read home/#")
	w := mustConnect(t, fn.addrs[1], watcher)
	if code := w.subscribe(t, "home/#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	c, err := mqtttest.Dial(fn.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(connectWithWill(dev, "home/dev/availability", "offline")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	c.Close()
	expectMsg(t, w, "home/dev/availability", "offline")
}

// connectBody5Auth is an MQTT 5 CONNECT body of a device, clean start,
// requesting response information.
func connectBody5Auth(cr *auth.Credentials) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	b := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xc2, 0, 60, 2, 0x19, 1}
	b = str(b, cr.Device.ClientID)
	b = str(b, cr.Device.Username)
	return str(b, cr.Password)
}

// A persistent session on node 2 whose client is away keeps a QoS 1
// message published on node 1 and hands it over when the client returns.
func TestClusterFreePersistentSession(t *testing.T) {
	fn := startFreeNodes(t)
	writer := fn.device(t, "write home/#")
	reader := fn.device(t, "read home/#")
	persistent := func(o *paho.ClientOptions) { o.SetCleanSession(false) }
	r := pahoOpts(t, fn.addrs[1], reader, persistent)
	if code := r.subscribeQos(t, "home/#", 1); code != 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	r.Disconnect(0)
	waitUntil(t, "the reader gone from node 2", func() bool { return fn.srvs[1].Stats().Connections["mqtt"].Live == 0 })
	w := mustConnect(t, fn.addrs[0], writer)
	if err := w.publish(t, "home/while-away", 1, "kept"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the message queued on node 2", func() bool { return fn.srvs[1].Stats().Queued == 1 })
	r = pahoOpts(t, fn.addrs[1], reader, persistent)
	expectMsg(t, r, "home/while-away", "kept")
}
