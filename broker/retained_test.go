package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/postgres"
)

// retainedNodes are brokers in one process that keep retained messages
// in one PostgreSQL database, each through a handle of its own (as
// separate processes would); devices and rules come from one registry.
type retainedNodes struct {
	t    *testing.T
	url  string
	ts   *testServer // devices, rules and rule-check helpers
	opts broker.Options
	pg   []*postgres.DB
	srv  []*broker.Server
	addr []string
}

func startRetainedNodes(t *testing.T, n int, opts broker.Options) *retainedNodes {
	t.Helper()
	rn := &retainedNodes{t: t, url: pgtest.New(t), opts: opts}
	dir := t.TempDir()
	db, err := storage.Open(filepath.Join(dir, "feedmq.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	rn.ts = &testServer{t: t, dir: dir, db: db, svc: svc}
	rn.pg, rn.srv, rn.addr = make([]*postgres.DB, n), make([]*broker.Server, n), make([]string, n)
	for i := range n {
		rn.start(i)
	}
	t.Cleanup(func() {
		for i := range rn.srv {
			rn.stop(i)
		}
	})
	return rn
}

// start starts node i, with a sessions file of its own.
func (rn *retainedNodes) start(i int) {
	rn.t.Helper()
	pg, err := postgres.Open(context.Background(), rn.url, postgres.Options{})
	if err != nil {
		rn.t.Fatal(err)
	}
	opts := rn.opts
	opts.MQTTAddr = "127.0.0.1:0"
	opts.SessionsPath = filepath.Join(rn.ts.dir, fmt.Sprintf("sessions-%d.db", i))
	opts.Logger = testLogger(rn.t)
	opts.Retained = pg
	srv, err := broker.New(opts, rn.ts.db, rn.ts.svc.Registry)
	if err != nil {
		rn.t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		rn.t.Fatal(err)
	}
	rn.pg[i], rn.srv[i], rn.addr[i] = pg, srv, srv.Addr("mqtt").String()
}

func (rn *retainedNodes) stop(i int) {
	if rn.srv[i] == nil {
		return
	}
	rn.srv[i].Close()
	rn.pg[i].Close()
	rn.srv[i] = nil
}

// waitRetained waits until node i holds want retained messages.
func (rn *retainedNodes) waitRetained(i, want int) {
	rn.t.Helper()
	waitUntil(rn.t, fmt.Sprintf("node %d to hold %d retained messages", i, want), func() bool {
		return rn.srv[i].Stats().Retained == want
	})
}

// received subscribes a new connection of cr on node i to filter and
// returns the retained messages it is sent.
func (rn *retainedNodes) received(i int, cr *auth.Credentials, filter string, want int) map[string]string {
	rn.t.Helper()
	c := mustConnect(rn.t, rn.addr[i], cr)
	defer c.Disconnect(0)
	if code := c.subscribe(rn.t, filter); code != 0 {
		rn.t.Fatalf("SUBACK %#x", code)
	}
	got := map[string]string{}
	for range want {
		m := c.expect(rn.t)
		got[m.topic] = m.payload
	}
	c.expectNothing(rn.t)
	return got
}

// A message retained on node A is in the database when A acknowledges
// it, and reaches a new subscriber on node B; an empty retained publish
// on B clears it on A; a subscriber on B sees the live message too.
func TestSharedRetainedAcrossNodes(t *testing.T) {
	rn := startRetainedNodes(t, 2, broker.Options{})
	dev := rn.ts.device()
	rn.ts.allow(dev, "readwrite home/#")

	a := mustConnect(t, rn.addr[0], dev)
	a.publishRetained(t, "home/status", 1, "online")
	// Acknowledged only once committed: the other node's handle reads it.
	m, _, err := rn.pg[1].RetainedTopic(context.Background(), "home/status")
	if err != nil || m == nil || string(m.Payload) != "online" || m.QoS != 1 {
		t.Fatalf("in the database after the PUBACK: %+v, %v", m, err)
	}
	rn.waitRetained(1, 1)
	reader := rn.ts.device()
	rn.ts.allow(reader, "read home/#")
	if got := rn.received(1, reader, "home/#", 1); got["home/status"] != "online" {
		t.Fatalf("node B sent %v", got)
	}

	// Cleared on B: gone on A.
	dev2 := rn.ts.device()
	rn.ts.allow(dev2, "readwrite home/#")
	b := mustConnect(t, rn.addr[1], dev2)
	b.publishRetained(t, "home/status", 1, "")
	rn.waitRetained(0, 0)
	if got := rn.received(0, reader, "home/#", 0); len(got) != 0 {
		t.Fatalf("node A still sends %v", got)
	}
	if m, _, err := rn.pg[0].RetainedTopic(context.Background(), "home/status"); m != nil || err != nil {
		t.Fatalf("in the database after the clear: %+v, %v", m, err)
	}

	// Replaced twice in a row from both nodes: both end on the last one.
	a.publishRetained(t, "home/mode", 1, "first")
	b.publishRetained(t, "home/mode", 1, "second")
	for i := range 2 {
		rn.waitRetained(i, 1)
		waitUntil(t, "the last message on every node", func() bool {
			got := rn.received(i, reader, "home/mode", 1)
			return got["home/mode"] == "second"
		})
	}
}

// The bounds hold over both nodes: clients on each racing past
// max_messages leave exactly that many retained, everywhere; every
// message is still delivered; a payload past max_bytes is delivered but
// never retained.
func TestSharedRetainedBoundsAcrossNodes(t *testing.T) {
	const maxMessages = 5
	rn := startRetainedNodes(t, 2, broker.Options{RetainedMax: maxMessages, RetainedMaxBytes: 100})
	devs := []*auth.Credentials{rn.ts.device(), rn.ts.device()}
	for _, d := range devs {
		rn.ts.allow(d, "readwrite r/#")
	}
	reader := rn.ts.device()
	rn.ts.allow(reader, "read r/#")
	reader2 := rn.ts.device()
	rn.ts.allow(reader2, "read r/#")
	sub := mustConnect(t, rn.addr[0], reader)
	sub2 := mustConnect(t, rn.addr[1], reader2)
	for _, c := range []*client{sub, sub2} {
		if code := c.subscribe(t, "r/#"); code != 0 {
			t.Fatalf("SUBACK %#x", code)
		}
	}
	var wg sync.WaitGroup
	for i := range 2 {
		c := mustConnect(t, rn.addr[i], devs[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 10 {
				c.publishRetained(t, fmt.Sprintf("r/%d/%d", i, k), 1, "x")
			}
		}()
	}
	wg.Wait()
	// Every message is delivered, retained or not (live messages of free
	// topics go to the subscribers of the node they were published on).
	for range 10 {
		sub.expect(t)
		sub2.expect(t)
	}
	all, _, err := rn.pg[0].AllRetained(context.Background())
	if err != nil || len(all) != maxMessages {
		t.Fatalf("%d retained in the database (%v), want %d", len(all), err, maxMessages)
	}
	for i := range 2 {
		rn.waitRetained(i, maxMessages)
	}
	if refused := rn.srv[0].Stats().RetainedRefused + rn.srv[1].Stats().RetainedRefused; refused != 20-maxMessages {
		t.Fatalf("%d refused, want %d", refused, 20-maxMessages)
	}
	if got := rn.received(1, reader, "r/#", maxMessages); len(got) != maxMessages {
		t.Fatalf("node B sent %v", got)
	}

	// Oversized: past max_bytes on its own.
	c := mustConnect(t, rn.addr[0], devs[0])
	c.publishRetained(t, "r/0/0", 1, strings.Repeat("y", 101))
	if m := sub.expect(t); len(m.payload) != 101 {
		t.Fatalf("oversized message not delivered: %+v", m)
	}
	all, _, _ = rn.pg[1].AllRetained(context.Background())
	for _, m := range all {
		if len(m.Payload) > 1 {
			t.Fatalf("oversized message retained: %s", m.Topic)
		}
	}
}

// A node restarted loads the retained messages as they are now,
// including changes made on another node while it was down; topics with
// odd UTF-8, and one too long for a change notice, travel as well.
func TestSharedRetainedRestartAndOddTopics(t *testing.T) {
	rn := startRetainedNodes(t, 2, broker.Options{MaxFreeTopicLen: 65535, MaxPacketSize: 1 << 20})
	dev := rn.ts.device()
	rn.ts.allow(dev, "readwrite #")
	reader := rn.ts.device()
	rn.ts.allow(reader, "read #")
	a := mustConnect(t, rn.addr[0], dev)
	odd := "🙂/ü/\u200b/\ufeff/€"
	long := "long/" + strings.Repeat("ä", 5000) // 10005 bytes: announced by its key
	a.publishRetained(t, odd, 1, "odd")
	a.publishRetained(t, long, 1, "long")
	a.publishRetained(t, "gone/soon", 1, "x")
	rn.waitRetained(1, 3)
	got := rn.received(1, reader, "#", 3)
	if got[odd] != "odd" || got[long] != "long" || got["gone/soon"] != "x" {
		t.Fatalf("node B sent %d messages: %q %q %q", len(got), got[odd], got[long], got["gone/soon"])
	}

	rn.stop(1)
	a.publishRetained(t, "gone/soon", 1, "")
	a.publishRetained(t, "while/down", 0, "new")
	a.publishRetained(t, odd, 1, "odd again")
	rn.start(1)
	rn.waitRetained(1, 3)
	got = rn.received(1, reader, "#", 3)
	if got[odd] != "odd again" || got[long] != "long" || got["while/down"] != "new" {
		t.Fatalf("restarted node B sent %v", len(got))
	}

	// The long topic, announced by its key, replaced and then cleared.
	a.publishRetained(t, long, 1, "longer")
	waitUntil(t, "the long topic replaced on node B", func() bool {
		return rn.sent(1, reader, "long/#")[long] == "longer"
	})
	a.publishRetained(t, long, 1, "")
	rn.waitRetained(1, 2)
	if got := rn.received(1, reader, "#", 2); got[long] != "" || got[odd] != "odd again" {
		t.Fatalf("node B sent %d messages after the long topic was cleared", len(got))
	}
}

// A store that fails refuses a retained publish: it is not acknowledged
// (MQTT 3.1.1 at QoS 1: disconnected), so the device sends it again.
func TestSharedRetainedStoreFailure(t *testing.T) {
	rn := startRetainedNodes(t, 1, broker.Options{})
	dev := rn.ts.device()
	rn.ts.allow(dev, "readwrite home/#")
	a := mustConnect(t, rn.addr[0], dev)
	rn.pg[0].Close()
	tok := a.Publish("home/status", 1, true, "online")
	tok.WaitTimeout(5 * time.Second)
	select {
	case <-a.lost:
	case <-time.After(5 * time.Second):
		t.Fatalf("still connected after a retained publish the store failed (token error %v)", tok.Error())
	}
	if st := rn.srv[0].Stats(); st.Retained != 0 {
		t.Fatalf("%d retained", st.Retained)
	}

	// MQTT 5 gets the failure in its PUBACK, and stays connected.
	c := dial(t, rn.addr[0])
	if code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Version: 5}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x, %v", code, err)
	}
	for id := uint16(1); id <= 2; id++ {
		body := append([]byte{0, 11}, "home/status"...)
		body = append(body, 0, byte(id), 0) // packet ID, no properties
		body = append(body, "online"...)
		if _, err := c.Write(mqtttest.Packet(mqtttest.PUBLISH<<4|1<<1|1, body)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, code, err := c.ReadPuback(); err != nil || got != id || code != 0x80 {
			t.Fatalf("PUBACK %d %#x %v, want %d 0x80", got, code, err, id)
		}
	}
}

// A retained will of a device that drops off node A is kept in the
// database and sent by node B to a new subscriber.
func TestSharedRetainedWill(t *testing.T) {
	rn := startRetainedNodes(t, 2, broker.Options{})
	dev, reader := rn.ts.device(), rn.ts.device()
	rn.ts.allow(dev, "readwrite home/#")
	rn.ts.allow(reader, "read home/#")
	c := dial(t, rn.addr[0])
	pk := connectWithWill(dev, "home/dev/availability", "offline")
	// Set Will Retain in the connect flags, after the protocol name and
	// version.
	pk[bytes.Index(pk, []byte("\x00\x04MQTT\x04"))+7] |= 0x20
	if _, err := c.Write(pk); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
		t.Fatalf("CONNACK %d % x %v", typ, body, err)
	}
	c.Close()
	waitUntil(t, "the will in the database", func() bool {
		m, _, err := rn.pg[1].RetainedTopic(context.Background(), "home/dev/availability")
		return err == nil && m != nil && string(m.Payload) == "offline"
	})
	rn.waitRetained(1, 1)
	if got := rn.received(1, reader, "home/#", 1); got["home/dev/availability"] != "offline" {
		t.Fatalf("node B sent %v", got)
	}
}

// After its listening connection is lost, a node listens again and
// reloads: a message retained on another node meanwhile reaches it.
func TestSharedRetainedListenerLost(t *testing.T) {
	rn := startRetainedNodes(t, 2, broker.Options{})
	dev, reader := rn.ts.device(), rn.ts.device()
	rn.ts.allow(dev, "readwrite home/#")
	rn.ts.allow(reader, "read home/#")
	a := mustConnect(t, rn.addr[0], dev)
	a.publishRetained(t, "home/before", 1, "1")
	rn.waitRetained(1, 1)

	admin, err := pgx.Connect(context.Background(), pgtest.Admin(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var ended int
	err = admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN%' AND query LIKE '%`+postgres.RetainedChannel+`%'`).Scan(&ended)
	if err != nil || ended != 2 {
		t.Fatalf("ended %d listeners, want 2 (%v)", ended, err)
	}
	a.publishRetained(t, "home/after", 1, "2")
	a.publishRetained(t, "home/before", 1, "")
	waitUntil(t, "node B to hold what node A retained while it was not listening", func() bool {
		got := rn.sent(1, reader, "home/#")
		return len(got) == 1 && got["home/after"] == "2"
	})
}

// sent subscribes a new connection of cr on node i to filter and returns
// the retained messages it is sent (until none comes for a moment).
func (rn *retainedNodes) sent(i int, cr *auth.Credentials, filter string) map[string]string {
	rn.t.Helper()
	c := mustConnect(rn.t, rn.addr[i], cr)
	defer c.Disconnect(0)
	if code := c.subscribe(rn.t, filter); code != 0 {
		rn.t.Fatalf("SUBACK %#x", code)
	}
	got := map[string]string{}
	for {
		select {
		case m := <-c.msgs:
			got[m.topic] = m.payload
		case <-time.After(200 * time.Millisecond):
			return got
		}
	}
}

// An MQTT 5 retained publish keeps its properties in the database, and
// once its message expiry interval is over, a node's expiry deletes it
// there and on every node.
func TestSharedRetainedPropertiesAndExpiry(t *testing.T) {
	rn := startRetainedNodes(t, 2, broker.Options{})
	dev := rn.ts.device()
	rn.ts.allow(dev, "readwrite home/#")
	c := dial(t, rn.addr[0])
	if code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
		Password: dev.Password, Clean: true, Version: 5}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x, %v", code, err)
	}
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	var props []byte
	props = append(props, 0x02, 0, 0, 0, 1) // message expiry interval: 1 s
	props = str(append(props, 0x03), "text/plain")
	props = str(str(append(props, 0x26), "unit"), "°C")
	body := str(nil, "home/temp")
	body = append(body, 0, 7, byte(len(props)))
	body = append(append(body, props...), "21.5"...)
	if _, err := c.Write(mqtttest.Packet(mqtttest.PUBLISH<<4|1<<1|1, body)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if id, code, err := c.ReadPuback(); err != nil || id != 7 || code >= 0x80 {
		t.Fatalf("PUBACK %d %#x %v", id, code, err)
	}
	m, _, err := rn.pg[1].RetainedTopic(context.Background(), "home/temp")
	if err != nil || m == nil || m.ContentType != "text/plain" || len(m.User) != 1 || m.User[0].Val != "°C" ||
		m.ProtocolVersion != 5 || m.Expires.IsZero() {
		t.Fatalf("in the database: %+v, %v", m, err)
	}
	waitUntil(t, "the expired message gone from the database", func() bool {
		var n int
		_ = pgxQueryRow(t, rn.url, "SELECT count(*) FROM retained", &n)
		return n == 0
	})
	for i := range 2 {
		rn.waitRetained(i, 0)
	}
}

func pgxQueryRow(t *testing.T, url, sql string, dest ...any) error {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(context.Background(), sql).Scan(dest...)
}
