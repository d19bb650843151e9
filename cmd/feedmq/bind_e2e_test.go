package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// A device whose access rules let it write zigbee2mqtt/# publishes what
// Zigbee2MQTT publishes, with mosquitto_pub; the bound channel (no grant
// for that device) gets an entry with the right fields, readable over
// REST, and a subscriber of channels/<id>/subscribe receives it. A device
// without the rule stores nothing, and a payload the binding cannot read
// is counted.
func TestServeBindingZigbee2MQTT(t *testing.T) {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx := t.Context()
	s, err := openServer(ctx, httpConfig(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	base := "http://" + s.addr("http").String()
	_, port, _ := net.SplitHostPort(s.addr("mqtt").String())

	ch, err := s.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "Living room", Fields: [8]string{"Temperature", "Humidity", "Occupancy"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "zigbee2mqtt/living_room",
		Fields: [8]string{"$.temperature", "$.humidity", "$.occupancy"}, Status: "$.battery"}); err != nil {
		t.Fatal(err)
	}
	// The bridge: may write zigbee2mqtt/#, no grant on any channel.
	bridge, err := s.svc.CreateDevice(ctx, auth.DeviceSpec{Name: "zigbee2mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.AllowRules(ctx, auth.DeviceRules(bridge.Device.ID), []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "zigbee2mqtt/#"}}); err != nil {
		t.Fatal(err)
	}
	// Another device without that rule.
	other, err := s.svc.CreateDevice(ctx, auth.DeviceSpec{Name: "stranger"})
	if err != nil {
		t.Fatal(err)
	}
	// A dashboard that reads the channel.
	reader, err := s.svc.CreateDevice(ctx, auth.DeviceSpec{Name: "reader", Grants: []auth.Grant{{ChannelID: ch.ID, Subscribe: true}}})
	if err != nil {
		t.Fatal(err)
	}
	creds := func(c *auth.Credentials) []string {
		return []string{"-h", "127.0.0.1", "-p", port, "-i", c.Device.ClientID, "-u", c.Device.Username, "-P", c.Password}
	}

	sub := exec.Command("mosquitto_sub", append(creds(reader), "-t", channels.FeedTopic(ch.ID), "-q", "1")...)
	subOut, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(subOut)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor(t, func() bool { return s.broker.Subscriptions() >= 1 })

	pub := func(c *auth.Credentials, payload string) {
		t.Helper()
		cmd := exec.Command("mosquitto_pub", append(creds(c), "-q", "1", "-t", "zigbee2mqtt/living_room", "-m", payload)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	// Refused ones first: nothing may come of them.
	pub(other, `{"temperature":99}`)
	pub(bridge, `{"temperature":"warm","humidity":40}`)
	pub(bridge, `{"battery":97,"humidity":48.91,"linkquality":134,"occupancy":true,"temperature":21.37,"voltage":2985}`)

	// QoS 1: the entry is stored before the PUBACK, so it is there now.
	code, body := httpDo(t, "GET", base+"/channels/"+strconv.FormatUint(ch.ID, 10)+"/feeds.json?api_key="+ch.ReadKey, "", "")
	if code != 200 {
		t.Fatalf("feed read: %d %s", code, body)
	}
	var feed struct {
		Feeds []map[string]any `json:"feeds"`
	}
	if err := json.Unmarshal([]byte(body), &feed); err != nil {
		t.Fatal(err)
	}
	if len(feed.Feeds) != 1 {
		t.Fatalf("feed has %d entries: %s", len(feed.Feeds), body)
	}
	e := feed.Feeds[0]
	if e["entry_id"] != 1.0 || e["field1"] != "21.37" || e["field2"] != "48.91" || e["field3"] != "1" {
		t.Fatalf("entry %v", e)
	}

	select {
	case line := <-lines:
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil || got["entry_id"] != 1.0 || got["field1"] != "21.37" || got["status"] != "97" {
			t.Fatalf("subscriber got %q (%v)", line, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber got nothing")
	}
	select {
	case line := <-lines:
		t.Fatalf("the subscriber got a second message %q", line)
	default:
	}
	st := s.broker.BindingStats()
	if st.Entries != 1 || st.Failures["bad_payload"] != 1 {
		t.Fatalf("binding stats %+v", st)
	}
	if v, _ := metricValue(scrape(t, base), "feedmq_binding_failures_total", "reason", "bad_payload"); v != 1 {
		t.Fatalf("feedmq_binding_failures_total{reason=bad_payload} = %v", v)
	}
	if strings.Contains(body, "99") {
		t.Fatalf("the stranger's publish was stored: %s", body)
	}
}
