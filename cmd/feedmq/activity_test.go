package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// listedDevice is one device of `device list --json`, activity kept raw
// enough to tell [] from null.
type listedDevice struct {
	ID            uint64            `json:"id"`
	Connections   []auth.Connection `json:"connections"`
	LastPublishAt *time.Time        `json:"last_publish_at"`
	raw           map[string]json.RawMessage
}

// listDevice runs `device list --json` on dir (through the socket of the
// server running there) and returns the device with id.
func listDevice(t *testing.T, dir string, id uint64) listedDevice {
	t.Helper()
	out := mustRun(t, dir, "device", "list", "--json")
	var raws []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raws); err != nil {
		t.Fatalf("device list --json: %v\n%s", err, out)
	}
	for _, r := range raws {
		var d listedDevice
		b, _ := json.Marshal(r)
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		if d.ID == id {
			d.raw = r
			return d
		}
	}
	t.Fatalf("device %d not listed:\n%s", id, out)
	return listedDevice{}
}

// waitDevice polls `device list --json` until ok accepts the device.
func waitDevice(t *testing.T, dir string, id uint64, what string, ok func(listedDevice) bool) listedDevice {
	t.Helper()
	var d listedDevice
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if d = listDevice(t, dir, id); ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %d: %s; listed connections %+v, last_publish_at %v", id, what, d.Connections, d.LastPublishAt)
		}
	}
}

func isLoopback(t *testing.T, addr string) bool {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// TestServeDeviceActivity runs serve and real MQTT clients: `device list`
// and `device show` through the admin socket show a device's live
// connection with its listener and loopback address, its last accepted
// publish, and no connection once it disconnects, is taken over or is
// refused.
func TestServeDeviceActivity(t *testing.T) {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: "127.0.0.1:0", HTTP: off}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, out, slog.New(slog.NewTextHandler(&syncBuffer{}, nil))) }()
	linesRE := regexp.MustCompile(`^mqtt listening on (127\.0\.0\.1:(\d+))\nws listening on (127\.0\.0\.1:\d+)\n$`)
	waitFor(t, func() bool { return linesRE.MatchString(out.String()) })
	m := linesRE.FindStringSubmatch(out.String())
	mqttAddr, mqttPort, wsAddr := m[1], m[2], m[3]

	mustRun(t, dir, "channel", "create", "--name", "garden")
	var dev auth.DeviceJSON
	mustJSON(t, dir, &dev, "device", "create", "--name", "esp32", "--channel", "1", "--json")
	creds := []string{"-h", "127.0.0.1", "-p", mqttPort, "-i", dev.ClientID, "-u", dev.Username, "-P", dev.Password}

	d := listDevice(t, dir, dev.ID)
	if string(d.raw["connections"]) != "[]" || string(d.raw["last_publish_at"]) != "null" {
		t.Fatalf("before any connection: connections %s, last_publish_at %s", d.raw["connections"], d.raw["last_publish_at"])
	}

	// A subscriber with the device's credentials.
	sub := exec.Command("mosquitto_sub", append(creds, "-t", "channels/1/subscribe")...)
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	defer sub.Process.Kill()
	start := time.Now().UTC().Truncate(time.Second)
	d = waitDevice(t, dir, dev.ID, "mosquitto_sub's connection", func(d listedDevice) bool { return len(d.Connections) == 1 })
	c := d.Connections[0]
	if c.ClientID != dev.ClientID || c.Listener != "mqtt" || !isLoopback(t, c.RemoteAddr) ||
		c.Since.Before(start) || c.Since.After(time.Now()) {
		t.Fatalf("connection %+v, want client %s on mqtt from a loopback address since %v", c, dev.ClientID, start)
	}
	if d.LastPublishAt != nil {
		t.Fatalf("last_publish_at %v before any publish", d.LastPublishAt)
	}
	table := mustRun(t, dir, "device", "list")
	row := regexp.MustCompile(`\n1 +esp32 +\S+ +1:pubsub +\S+ \S+ UTC +yes +\S+ \S+ UTC +` + regexp.QuoteMeta(c.RemoteAddr) + ` +mqtt +-\n`)
	if !row.MatchString(table) {
		t.Fatalf("device list does not show the connection:\n%s", table)
	}
	shown := mustRun(t, dir, "device", "show", "1")
	if !strings.Contains(shown, "from "+c.RemoteAddr+" on mqtt") {
		t.Fatalf("device show does not show the connection:\n%s", shown)
	}
	var showJSON map[string]json.RawMessage
	mustJSON(t, dir, &showJSON, "device", "show", "1", "--json")
	if !strings.Contains(string(showJSON["connections"]), c.RemoteAddr) || string(showJSON["last_publish_at"]) != "null" {
		t.Fatalf("device show --json: %s %s", showJSON["connections"], showJSON["last_publish_at"])
	}

	// A clean disconnect.
	if err := sub.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-subDone
	waitDevice(t, dir, dev.ID, "no connection after mosquitto_sub quit", func(d listedDevice) bool {
		return len(d.Connections) == 0 && string(d.raw["connections"]) == "[]"
	})

	// An accepted publish; a refused one (a channel the device may not
	// use) does not count.
	pub := func(args ...string) error {
		return exec.Command("mosquitto_pub", append(creds, args...)...).Run()
	}
	before := time.Now().UTC().Truncate(time.Second)
	if err := pub("-q", "1", "-t", "channels/1/publish", "-m", "field1=21.5"); err != nil {
		t.Fatalf("mosquitto_pub: %v", err)
	}
	d = waitDevice(t, dir, dev.ID, "last_publish_at and no connection after mosquitto_pub", func(d listedDevice) bool {
		return d.LastPublishAt != nil && len(d.Connections) == 0
	})
	if d.LastPublishAt.Before(before) || d.LastPublishAt.After(time.Now()) {
		t.Fatalf("last_publish_at %v, want from %v to now", d.LastPublishAt, before)
	}
	published := *d.LastPublishAt
	table = mustRun(t, dir, "device", "list")
	if !strings.Contains(table, " no ") || !strings.Contains(table, published.Format("2006-01-02 15:04:05 UTC")) {
		t.Fatalf("device list after the publish:\n%s", table)
	}

	// A refused CONNECT (wrong password) leaves nothing behind.
	bad := []string{"-h", "127.0.0.1", "-p", mqttPort, "-i", dev.ClientID, "-u", dev.Username, "-P", "wrong" + dev.Password,
		"-t", "channels/1/publish", "-m", "field1=1"}
	if err := exec.Command("mosquitto_pub", bad...).Run(); err == nil {
		t.Fatal("mosquitto_pub with a wrong password succeeded")
	}
	if d := listDevice(t, dir, dev.ID); len(d.Connections) != 0 || !d.LastPublishAt.Equal(published) {
		t.Fatalf("after a refused CONNECT: %+v", d)
	}

	// A takeover: the first connection (WebSocket) is replaced by the
	// second (TCP); only the second is listed.
	first := connectWS(t, wsAddr, dev)
	d = waitDevice(t, dir, dev.ID, "the WebSocket connection", func(d listedDevice) bool {
		return len(d.Connections) == 1 && d.Connections[0].Listener == "ws"
	})
	if !isLoopback(t, d.Connections[0].RemoteAddr) {
		t.Fatalf("ws connection from %q", d.Connections[0].RemoteAddr)
	}
	second, err := mqtttest.Dial(mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if code, err := second.Connect(mqtttest.Connect{ClientID: dev.ClientID, Username: dev.Username, Password: dev.Password,
		Clean: true, Keepalive: 60}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	waitFor(t, func() bool { return !first.IsConnected() })
	waitDevice(t, dir, dev.ID, "only the TCP connection after the takeover", func(d listedDevice) bool {
		return len(d.Connections) == 1 && d.Connections[0].Listener == "mqtt" &&
			d.Connections[0].RemoteAddr == second.LocalAddr().String()
	})

	// Deleting the device closes it; nothing is left of it.
	mustRun(t, dir, "device", "delete", "1")
	var list []map[string]any
	mustJSON(t, dir, &list, "device", "list", "--json")
	if len(list) != 0 {
		t.Fatalf("after delete: %v", list)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// connectWS connects a paho client as dev over the WebSocket listener.
func connectWS(t *testing.T, addr string, dev auth.DeviceJSON) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(fmt.Sprintf("ws://%s/mqtt", addr)).SetClientID(dev.ClientID).
		SetUsername(dev.Username).SetPassword(dev.Password).SetAutoReconnect(false).SetConnectRetry(false).
		SetCleanSession(true).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("ws connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}
