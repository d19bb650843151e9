package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// connectRaw sends a CONNECT and returns the CONNACK's session-present
// flag and reason code.
func connectRaw(t *testing.T, c *mqtttest.Conn, p mqtttest.Connect) (present bool, code byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	present, code, err := c.ConnectAck(p)
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return present, code
}

// TestSessionTakeoverRefused replays the takeover attack: a device
// subscribed with a read key, and an anonymous client reusing its client
// ID (mosquitto_sub -V 5 -c, then 3.1.1 and raw MQTT 5 with Clean
// Start=0). The attacker is refused (0x85; 3.1.1: 0x02), the device keeps
// its connection and its deliveries, and no session is ever resumed.
func TestSessionTakeoverRefused(t *testing.T) {
	sub := requireTool(t, "mosquitto_sub")
	logger, logs := captureLogs(t)
	ts := startServer(t, broker.Options{Anonymous: true, Logger: logger})
	public := ts.channel(true)
	private := ts.channel(false)
	c, err := ts.svc.Channel(context.Background(), private)
	if err != nil {
		t.Fatal(err)
	}
	dev := ts.device(pubsub(private))
	id := dev.Device.ClientID
	host, port := hostPort(t, ts.addr)
	keyTopic := fmt.Sprintf("channels/%d/subscribe/json/%s", private, c.ReadKey)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	devCmd := exec.CommandContext(ctx, sub, append([]string{"-h", host, "-p", port, "-V", "5", "-v", "-C", "1",
		"-t", keyTopic}, credArgs(dev)...)...)
	var devOut bytes.Buffer
	devCmd.Stdout, devCmd.Stderr = &devOut, &devOut
	if err := devCmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, ts, 1)

	// The attacker, as in the report: anonymous, the device's client ID,
	// Clean Start=0.
	out, err := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "5", "-i", id, "-c",
		"-t", fmt.Sprintf("channels/%d/subscribe/json", public), "-v", "-W", "5").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Client Identifier not valid") {
		t.Fatalf("anonymous mosquitto_sub with the device's client ID was served: err %v, output %q", err, out)
	}
	// The same over 3.1.1 (mosquitto_sub without -c) and raw MQTT 5.
	out, err = exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "311", "-i", id,
		"-t", fmt.Sprintf("channels/%d/subscribe/json", public), "-v", "-W", "5").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "identifier rejected") {
		t.Fatalf("anonymous 3.1.1 mosquitto_sub with the device's client ID was served: %q", out)
	}
	for _, tc := range []struct {
		version byte
		clean   bool
		want    byte
	}{{5, false, 0x85}, {5, true, 0x85}, {4, true, 0x02}} {
		raw := dial(t, ts.addr)
		if present, code := connectRaw(t, raw, mqtttest.Connect{ClientID: id, Version: tc.version, Clean: tc.clean}); code != tc.want || present {
			t.Errorf("anonymous v%d clean=%v with a device's client ID: CONNACK %#x present=%v, want %#x",
				tc.version, tc.clean, code, present, tc.want)
		}
		raw.Close()
	}
	// A device's client ID with another device's credentials does not
	// authenticate as the device that owns the ID: refused like any other
	// connection using it (0x85; 3.1.1: 0x02), taking nothing over.
	other := ts.device(pubsub(private))
	for _, tc := range []struct {
		version byte
		want    byte
	}{{5, 0x85}, {4, 0x02}} {
		raw := dial(t, ts.addr)
		if _, code := connectRaw(t, raw, mqtttest.Connect{ClientID: id, Username: other.Device.Username,
			Password: other.Password, Version: tc.version, Clean: true}); code != tc.want {
			t.Errorf("other device with the device's client ID, v%d: CONNACK %#x, want %#x", tc.version, code, tc.want)
		}
		raw.Close()
	}

	// The device still holds its connection and gets its entry.
	if err := ts.srv.Publish(ctx, entry(private, "42", "topsecret")); err != nil {
		t.Fatal(err)
	}
	if err := devCmd.Wait(); err != nil {
		t.Fatalf("device's mosquitto_sub: %v\n%s", err, devOut.String())
	}
	if !strings.Contains(devOut.String(), "topsecret") {
		t.Fatalf("device got %q", devOut.String())
	}
	// A refused filter carrying the read key, and a client ID carrying
	// the write key: neither key reaches the log.
	anon := dial(t, ts.addr)
	if code, err := anon.Connect(mqtttest.Connect{ClientID: "x" + c.WriteKey, Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	if code, err := anon.Subscribe(1, fmt.Sprintf("channels/%d/subscribe/%s", private, c.ReadKey)); err != nil || code != 0x80 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	anon.Close()
	logs.noKeys(t, c.WriteKey, c.ReadKey, dev.Password, other.Password)
}

// entry returns an entry of channel ch with fields 1, 2, ... set.
func entry(ch uint64, fields ...string) *channels.Entry {
	e := &channels.Entry{ChannelID: ch, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	for i, f := range fields {
		e.SetValue(i, f)
	}
	return e
}

// TestNoSessionResumed checks Clean Start=0 over MQTT 5: a second
// connection with the same client ID and the same identity (anonymous,
// or the device itself) gets none of the first one's subscriptions to
// the reserved trees, so a read key in a filter is never handed on.
func TestNoSessionResumed(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	private := ts.channel(false)
	c, err := ts.svc.Channel(context.Background(), private)
	if err != nil {
		t.Fatal(err)
	}
	dev := ts.device(pubsub(private))
	for _, who := range []mqtttest.Connect{
		{ClientID: "dashboard"},
		{ClientID: dev.Device.ClientID, Username: dev.Device.Username, Password: dev.Password},
	} {
		who.Version = 5
		first := dial(t, ts.addr)
		if _, code := connectRaw(t, first, who); code != 0 {
			t.Fatalf("%s: first CONNACK %#x", who.ClientID, code)
		}
		if code, err := first.Subscribe(1, fmt.Sprintf("channels/%d/subscribe/json/%s", private, c.ReadKey)); err != nil || code != 0 {
			t.Fatalf("SUBACK %#x, %v", code, err)
		}
		// The session is resumed (its free-topic filters would pass
		// on), but it hands on no filter of the reserved trees.
		second := dial(t, ts.addr)
		if present, code := connectRaw(t, second, who); code != 0 || !present {
			t.Fatalf("%s: Clean Start=0 CONNACK %#x, session present %v", who.ClientID, code, present)
		}
		expectClosed(t, first, 5*time.Second)
		if err := ts.srv.Publish(context.Background(), entry(private, "7")); err != nil {
			t.Fatal(err)
		}
		_ = second.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if typ, body, err := second.ReadPacket(); err == nil {
			t.Fatalf("%s: the new connection inherited a subscription: got type %d %q", who.ClientID, typ, body)
		}
		second.Close()
	}
}

// TestPahoPythonMQTT5Subscriber: Eclipse Paho for Python as an MQTT 5
// subscriber. Deliveries carry a Subscription Identifier only for the
// subscription that gave one (0 is a protocol error that made paho drop
// the connection on the first message).
func TestPahoPythonMQTT5Subscriber(t *testing.T) {
	python := requirePahoPython(t)
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	_, port := hostPort(t, ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	feed, field := fmt.Sprintf("channels/%d/subscribe", ch), fmt.Sprintf("channels/%d/subscribe/fields/field1", ch)
	out, err := exec.CommandContext(ctx, python, "../testdata/clients/paho_v5.py", "--port", port,
		"--client-id", dev.Device.ClientID, "--username", dev.Device.Username, "--password="+dev.Password,
		"--sub", feed, "--sub-id", field, "--pub", fmt.Sprintf("channels/%d/publish", ch), "--count", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("paho_v5.py: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := 1; i <= 3; i++ {
		if !slices.Contains(lines, fmt.Sprintf("%s %d ids=[7]", field, i)) {
			t.Errorf("no field1=%d with subscription identifier 7 in\n%s", i, out)
		}
	}
	feeds := 0
	for _, l := range lines {
		if strings.HasPrefix(l, feed+" ") {
			feeds++
			if !strings.HasSuffix(l, " ids=[]") {
				t.Errorf("feed delivery carries a subscription identifier: %s", l)
			}
		}
	}
	if feeds != 3 {
		t.Errorf("%d feed deliveries, want 3:\n%s", feeds, out)
	}
}

// TestNoSubscriptionIdentifierZero reads the raw MQTT 5 PUBLISH sent for a
// subscription without an identifier: its property section is empty.
func TestNoSubscriptionIdentifierZero(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	ch := ts.channel(true)
	c := dial(t, ts.addr)
	if code, err := c.Connect(mqtttest.Connect{ClientID: "raw5", Version: 5, Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x, %v", code, err)
	}
	topic := fmt.Sprintf("channels/%d/subscribe/fields/field1", ch)
	if code, err := c.Subscribe(1, topic); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x, %v", code, err)
	}
	if err := ts.srv.Publish(context.Background(), entry(ch, "5")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := c.ReadPacket()
	if err != nil || typ != mqtttest.PUBLISH {
		t.Fatalf("read: type %d, %v", typ, err)
	}
	// topic length, topic, property length 0, payload "5"
	want := append(append([]byte{0, byte(len(topic))}, topic...), 0, '5')
	if !bytes.Equal(body, want) {
		t.Fatalf("PUBLISH body %q, want %q", body, want)
	}
}

// TestWebSocketDNSRebinding dials the WebSocket listener as a page whose
// name was rebound to the broker would: Host and Origin both
// evil.example. It is refused; the same page under the broker's IP
// address or localhost is not.
func TestWebSocketDNSRebinding(t *testing.T) {
	ts := startServer(t, broker.Options{WSAddr: "127.0.0.1:0"})
	ws := ts.srv.Addr("ws").String()
	_, port := hostPort(t, ws)
	for _, tc := range []struct {
		host, origin string
		status       int
	}{
		{"evil.example", "http://evil.example", http.StatusForbidden},
		{"evil.example:" + port, "http://evil.example:" + port, http.StatusForbidden},
		{ws, "http://" + ws, http.StatusSwitchingProtocols},
		{"localhost:" + port, "http://localhost:" + port, http.StatusSwitchingProtocols},
	} {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"mqtt"}}
		c, resp, err := d.Dial("ws://"+ws+"/mqtt", http.Header{"Host": {tc.host}, "Origin": {tc.origin}})
		if resp == nil {
			t.Fatalf("Host %s: no response: %v", tc.host, err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("Host %s, Origin %s: %s, want %d", tc.host, tc.origin, resp.Status, tc.status)
		}
		if c != nil {
			c.Close()
		}
	}
}

// logCapture is a server log kept for inspection, and echoed to the test
// log.
type logCapture struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func captureLogs(t testing.TB) (*slog.Logger, *logCapture) {
	lc := &logCapture{t: t}
	return slog.New(slog.NewTextHandler(lc, &slog.HandlerOptions{Level: slog.LevelDebug})), lc
}

func (lc *logCapture) Write(p []byte) (int, error) {
	lc.mu.Lock()
	lc.buf.Write(p)
	lc.mu.Unlock()
	lc.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// noKeys fails if the log shows any of keys.
func (lc *logCapture) noKeys(t *testing.T, keys ...string) {
	t.Helper()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, k := range keys {
		if k != "" && strings.Contains(lc.buf.String(), k) {
			t.Errorf("the log shows key %s", k)
		}
	}
}

// TestPasswordAsUsernameNotLogged: a device configured with its username
// and password swapped is refused, and the refusal's log line must not
// show the password it sent as a username.
func TestPasswordAsUsernameNotLogged(t *testing.T) {
	log, logs := captureLogs(t)
	ts := startServer(t, broker.Options{Logger: log})
	dev := ts.device(pubsub(ts.channel(false)))
	c := dial(t, ts.addr)
	code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Password,
		Password: dev.Device.Username, Clean: true})
	if err != nil || code != 0x04 {
		t.Fatalf("CONNACK %#x %v, want 0x04", code, err)
	}
	expectClosed(t, c, 5*time.Second)
	logs.noKeys(t, dev.Password)
}
