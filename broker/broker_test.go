package broker_test

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

func TestFeedPublishReachesSubscriberAsJSON(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	sub := mustConnect(t, ts.addr, ts.device(auth.Grant{ChannelID: ch, Subscribe: true}))
	if code := sub.subscribe(t, fmt.Sprintf("channels/%d/subscribe", ch)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	pub := mustConnect(t, ts.addr, dev)
	if err := pub.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1,
		"field1=23.5&field3=a%26b%3Dc&status=hello+world&created_at=2026-11-22T10:00:00Z"); err != nil {
		t.Fatal(err)
	}
	m := sub.expect(t)
	want := fmt.Sprintf(`{"channel_id":%d,"created_at":"2026-11-22T10:00:00Z","entry_id":1,`+
		`"field1":"23.5","field2":null,"field3":"a&b=c","field4":null,"field5":null,"field6":null,`+
		`"field7":null,"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":"hello world"}`, ch)
	if m.topic != fmt.Sprintf("channels/%d/subscribe", ch) || m.payload != want {
		t.Fatalf("got %s %s\nwant %s", m.topic, m.payload, want)
	}
	// Server time when the payload gives none: UTC, second precision.
	if err := pub.publish(t, fmt.Sprintf("channels/%d/publish", ch), 0, "field2=40"); err != nil {
		t.Fatal(err)
	}
	m = sub.expect(t)
	re := regexp.MustCompile(`^\{"channel_id":\d+,"created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","entry_id":2,"field1":null,"field2":"40",`)
	if !re.MatchString(m.payload) {
		t.Fatalf("second entry: %s", m.payload)
	}
	if got := len(ts.entries(ch)); got != 2 {
		t.Fatalf("stored %d entries, want 2", got)
	}
}

func TestFieldPublishAndFieldSubscribe(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false, "Temp", "Humidity")
	dev := ts.device(pubsub(ch))
	c := mustConnect(t, ts.addr, dev)
	c.subscribe(t, fmt.Sprintf("channels/%d/subscribe/fields/field2", ch))
	c.subscribe(t, fmt.Sprintf("channels/%d/subscribe/fields/+", ch))
	if err := c.publish(t, fmt.Sprintf("channels/%d/publish/fields/field2", ch), 1, "45"); err != nil {
		t.Fatal(err)
	}
	// Two matching subscriptions: mochi delivers once per client.
	m := c.expect(t)
	if m.topic != fmt.Sprintf("channels/%d/subscribe/fields/field2", ch) || m.payload != "45" {
		t.Fatalf("got %+v", m)
	}
	// fields/+ gets one message per set field, on the concrete topic.
	if err := c.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=1&field2=2"); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for range 2 {
		m := c.expect(t)
		got[m.topic] = m.payload
	}
	if got[fmt.Sprintf("channels/%d/subscribe/fields/field1", ch)] != "1" ||
		got[fmt.Sprintf("channels/%d/subscribe/fields/field2", ch)] != "2" {
		t.Fatalf("got %v", got)
	}
	c.expectNothing(t)
}

func TestConnectRefusals(t *testing.T) {
	ts := startServer(t, broker.Options{})
	dev := ts.device()
	bad := *dev
	bad.Password = "wrong-password-xxxxxxxx"
	if _, code, err := connect(t, ts.addr, &bad, 4); err == nil || code != 0x04 {
		t.Fatalf("wrong password: code %#x err %v, want 0x04", code, err)
	}
	other := *dev
	d := *dev.Device
	d.ClientID = "someone-else"
	other.Device = &d
	if _, code, err := connect(t, ts.addr, &other, 4); err == nil || code != 0x05 {
		t.Fatalf("wrong client ID: code %#x err %v, want 0x05", code, err)
	}
	if _, code, err := connect(t, ts.addr, dev, 4); err != nil || code != 0 {
		t.Fatalf("right credentials: code %#x err %v", code, err)
	}
}

func TestAnonymousDisabled(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: false})
	if _, code, err := connect(t, ts.addr, nil, 4); err == nil || code != 0x05 {
		t.Fatalf("anonymous: code %#x err %v, want 0x05", code, err)
	}
}

func TestUnauthorizedDeviceCannotPublishOrSubscribe(t *testing.T) {
	ts := startServer(t, broker.Options{})
	mine, theirs := ts.channel(false), ts.channel(false)
	dev := ts.device(pubsub(mine))
	c := mustConnect(t, ts.addr, dev)
	if code := c.subscribe(t, fmt.Sprintf("channels/%d/subscribe", theirs)); code != 0x80 {
		t.Fatalf("SUBACK %#x, want 0x80", code)
	}
	// QoS 0: dropped, connection stays.
	if err := c.publish(t, fmt.Sprintf("channels/%d/publish", theirs), 0, "field1=1"); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.entries(theirs)); n != 0 {
		t.Fatalf("%d entries stored for an unauthorized publish", n)
	}
	if !c.IsConnected() {
		t.Fatal("QoS 0 rejection closed the connection")
	}
	// QoS 1 on MQTT 3.1.1: no false PUBACK, the connection is closed.
	_ = c.publish(t, fmt.Sprintf("channels/%d/publish", theirs), 1, "field1=1")
	select {
	case <-c.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after rejected QoS 1 publish")
	}
	if n := len(ts.entries(theirs)); n != 0 {
		t.Fatalf("%d entries stored for an unauthorized publish", n)
	}
	if got := ts.srv.Stats().Rejected["not_authorized"]; got != 2 {
		t.Fatalf("rejected not_authorized = %d, want 2", got)
	}
}

func TestEntryIDsIncreaseAndSurviveRestart(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	c := mustConnect(t, ts.addr, dev)
	for i := 1; i <= 5; i++ {
		if err := c.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, fmt.Sprintf("field1=%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.Disconnect(0)
	ts.restart()
	c = mustConnect(t, ts.addr, dev)
	c.subscribe(t, fmt.Sprintf("channels/%d/subscribe", ch))
	if err := c.publish(t, fmt.Sprintf("channels/%d/publish", ch), 1, "field1=6"); err != nil {
		t.Fatal(err)
	}
	if m := c.expect(t); !regexp.MustCompile(`"entry_id":6,"field1":"6"`).MatchString(m.payload) {
		t.Fatalf("after restart: %s", m.payload)
	}
	es := ts.entries(ch)
	if len(es) != 6 {
		t.Fatalf("%d entries after restart, want 6", len(es))
	}
	for i, e := range es {
		if !regexp.MustCompile(fmt.Sprintf(`"entry_id":%d,"field1":"%d"`, i+1, i+1)).MatchString(e) {
			t.Fatalf("entry %d: %s", i+1, e)
		}
	}
}

// TestPublishDropsDisabledFields checks that a publish carrying fields the
// channel has not enabled stores and fans out the enabled ones (as
// ThingSpeak does), counts the dropped values, and that a publish of only
// disabled fields is refused.
func TestPublishDropsDisabledFields(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false, "Temp", "Humidity")
	dev := ts.device(pubsub(ch))
	sub := mustConnect(t, ts.addr, ts.device(auth.Grant{ChannelID: ch, Subscribe: true}))
	if code := sub.subscribe(t, fmt.Sprintf("channels/%d/subscribe", ch)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	pub := mustConnect(t, ts.addr, dev)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	if err := pub.publish(t, topic, 1, "field1=21.5&field2=40&field3=3&field4=4&field5=5&field6=6&field7=7&field8=8&created_at=2026-11-22T10:00:00Z"); err != nil {
		t.Fatal(err)
	}
	m := sub.expect(t)
	want := fmt.Sprintf(`{"channel_id":%d,"created_at":"2026-11-22T10:00:00Z","entry_id":1,`+
		`"field1":"21.5","field2":"40","field3":null,"field4":null,"field5":null,"field6":null,`+
		`"field7":null,"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":null}`, ch)
	if m.payload != want {
		t.Fatalf("got %s\nwant %s", m.payload, want)
	}
	if got := ts.srv.Stats().FieldsDropped; got != 6 {
		t.Errorf("FieldsDropped = %d, want 6", got)
	}
	// Only disabled fields: refused as a bad payload, nothing stored.
	before := ts.srv.Stats().Rejected["bad_payload"]
	// Whatever the acknowledgement, the refusal shows in the counters and
	// the store.
	_ = pub.publish(t, topic, 1, "field5=1")
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.Stats().Rejected["bad_payload"] == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := ts.srv.Stats().Rejected["bad_payload"]; got != before+1 {
		t.Errorf("bad_payload rejections = %d, want %d", got, before+1)
	}
	if got := len(ts.entries(ch)); got != 1 {
		t.Errorf("stored %d entries, want 1", got)
	}
}

// TestFeedQoS1AckedOnce: the broker answers a stored QoS 1 feed publish
// itself; mochi must not acknowledge it a second time (the next packet
// after the PUBACK is the PINGRESP asked for after it), in either
// protocol version.
func TestFeedQoS1AckedOnce(t *testing.T) {
	ts := startServer(t, broker.Options{})
	for _, version := range []byte{4, 5} {
		ch := ts.channel(false)
		dev := ts.device(pubsub(ch))
		c, err := mqtttest.Dial(ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
			Password: dev.Password, Clean: true, Keepalive: 60, Version: version})
		if err != nil || code != 0 {
			t.Fatalf("v%d: connect: %d %v", version, code, err)
		}
		topic := fmt.Sprintf("channels/%d/publish", ch)
		for id := uint16(1); id <= 3; id++ {
			if err := c.Publish(topic, 1, id, []byte("field1=1")); err != nil {
				t.Fatal(err)
			}
			got, rc, err := c.ReadPuback()
			if err != nil || got != id || rc != 0 {
				t.Fatalf("v%d: PUBACK %d code %#x %v, want %d", version, got, rc, err, id)
			}
		}
		if _, err := c.Write(mqtttest.Packet(mqtttest.PINGREQ<<4, nil)); err != nil {
			t.Fatal(err)
		}
		if typ, _, err := c.ReadPacket(); err != nil || typ != mqtttest.PINGRESP {
			t.Fatalf("v%d: after the PUBACKs got packet type %d %v, want PINGRESP", version, typ, err)
		}
		if got := len(ts.entries(ch)); got != 3 {
			t.Fatalf("v%d: stored %d entries, want 3", version, got)
		}
	}
}
