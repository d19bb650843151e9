package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
)

// Bindings made with the CLI, offline and through a running server's
// socket, turn mosquitto_pub publishes of Zigbee2MQTT and Tasmota
// payloads into entries of their channels, which the REST API reads and a
// channel subscriber receives; they are stored, so a restarted server
// applies them again.
func TestBindingsWithRealClients(t *testing.T) {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	data := t.TempDir()
	var living, plug struct {
		ID      uint64 `json:"id"`
		ReadKey string `json:"read_api_key"`
	}
	cli(t, data, &living, "channel", "create", "--name", "Living room", "--field", "1=Temperature", "--field", "2=Humidity", "--json")
	cli(t, data, &plug, "channel", "create", "--name", "Plug", "--field", "1=Power", "--field", "2=Voltage", "--json")
	var bridge, reader auth.DeviceJSON
	cli(t, data, &bridge, "device", "create", "--name", "zigbee2mqtt", "--json")
	cli(t, data, &reader, "device", "create", "--name", "dashboard", "--channel", fmt.Sprintf("%d:sub", living.ID), "--json")
	cli(t, data, nil, "device", "allow", fmt.Sprint(bridge.ID), "--topic", "zigbee2mqtt/#", "--write", "--json")
	cli(t, data, nil, "device", "allow", fmt.Sprint(bridge.ID), "--topic", "tele/+/SENSOR", "--write", "--json")
	// Offline, before serve starts.
	cli(t, data, nil, "channel", "bind", fmt.Sprint(living.ID), "--topic", "zigbee2mqtt/living_room",
		"--field", "1=$.temperature", "--field", "2=$.humidity", "--status", "$.battery", "--json")

	start := func() *server {
		return startServeWith(t, raceBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "warn")
	}
	srv := start()
	// Through the socket of the running server.
	cli(t, data, nil, "channel", "bind", fmt.Sprint(plug.ID), "--topic", "tele/+/SENSOR",
		"--field", "1=$.ENERGY.Power", "--field", "2=$.ENERGY.Voltage", "--json")

	_, port, _ := net.SplitHostPort(srv.addr)
	creds := func(d auth.DeviceJSON) []string {
		return []string{"-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-i", d.ClientID, "-u", d.Username, "-P", d.Password}
	}
	pub := func(topic, payload string) {
		t.Helper()
		if out, err := exec.Command("mosquitto_pub", append(creds(bridge), "-q", "1", "-t", topic, "-m", payload)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	feed := func(srv *server, ch uint64, key string) []map[string]any {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://%s/channels/%d/feeds.json?api_key=%s", srv.addrs["http"], ch, key))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var f struct {
			Feeds []map[string]any `json:"feeds"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &f) != nil {
			t.Fatalf("feed read: %d %s", resp.StatusCode, body)
		}
		return f.Feeds
	}

	sub := exec.Command("mosquitto_sub", append(creds(reader), "-t", fmt.Sprintf("channels/%d/subscribe", living.ID), "-q", "1")...)
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// mosquitto_sub has subscribed once an entry reaches it: publish until
	// one does (each publish is its own entry, numbered from 1).
	deadline := time.Now().Add(20 * time.Second)
	var first map[string]any
	for first == nil {
		if time.Now().After(deadline) {
			t.Fatal("the channel subscriber got nothing")
		}
		pub("zigbee2mqtt/living_room", `{"battery":97,"humidity":48.91,"linkquality":134,"temperature":21.37}`)
		select {
		case l := <-lines:
			if err := json.Unmarshal([]byte(l), &first); err != nil {
				t.Fatalf("subscriber got %q", l)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	if first["field1"] != "21.37" || first["field2"] != "48.91" || first["status"] != "97" {
		t.Fatalf("subscriber got %v", first)
	}
	es := feed(srv, living.ID, living.ReadKey)
	if len(es) == 0 || es[0]["field1"] != "21.37" || es[0]["field2"] != "48.91" {
		t.Fatalf("living room feed %v", es)
	}
	pub("tele/plug1/SENSOR", `{"Time":"2026-12-06T10:15:00","ENERGY":{"Total":12.345,"Power":43,"Voltage":231}}`)
	pub("tele/plug1/STATE", `{"Time":"2026-12-06T10:15:00","POWER":"ON"}`)
	if es := feed(srv, plug.ID, plug.ReadKey); len(es) != 1 || es[0]["field1"] != "43" || es[0]["field2"] != "231" {
		t.Fatalf("plug feed %v", es)
	}

	var listed []struct {
		ID    uint64 `json:"id"`
		Topic string `json:"topic"`
	}
	cli(t, data, &listed, "channel", "bindings", "--json")
	if len(listed) != 2 || listed[1].Topic != "tele/+/SENSOR" {
		t.Fatalf("bindings %+v", listed)
	}

	// After a restart both bindings apply again.
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srv.logs.String())
	}
	srv = start()
	_, port, _ = net.SplitHostPort(srv.addr)
	before := len(feed(srv, living.ID, living.ReadKey))
	pub("zigbee2mqtt/living_room", `{"temperature":22.5}`)
	pub("tele/plug2/SENSOR", `{"ENERGY":{"Power":7}}`)
	es = feed(srv, living.ID, living.ReadKey)
	if len(es) != before+1 || es[len(es)-1]["field1"] != "22.5" || es[len(es)-1]["field2"] != nil {
		t.Fatalf("living room after restart: %v", es)
	}
	if es := feed(srv, plug.ID, plug.ReadKey); len(es) != 2 || es[1]["field1"] != "7" {
		t.Fatalf("plug after restart: %v", es)
	}
	// Unbinding through the socket stops it at once.
	cli(t, data, nil, "channel", "unbind", fmt.Sprint(listed[0].ID), "--json")
	pub("zigbee2mqtt/living_room", `{"temperature":30}`)
	if es := feed(srv, living.ID, living.ReadKey); len(es) != before+1 {
		t.Fatalf("unbound topic still feeds: %v", es)
	}
	if strings.Contains(srv.logs.String(), bridge.Password) {
		t.Fatal("a password in the server log")
	}
}
