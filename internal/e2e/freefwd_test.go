package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// Two feedmq serve nodes on one PostgreSQL database and one NATS server
// carry live free-topic messages between them: what mosquitto_pub
// publishes on node 1 reaches a mosquitto_sub on node 2, at the
// subscription's QoS and, for a retained publish, with retain 0 (a live
// delivery); a bound topic makes one entry, not one per node; node 2
// sends nothing back (its forwarded counter stays 0).
func TestServeFreeTopicsAcrossNodes(t *testing.T) {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	db, nats := pgtest.New(t), smokeNATS(t)
	var dirs, confs [2]string
	var nodes [2]*server
	for i := range 2 {
		dirs[i], confs[i] = smokeConfig(t, db, nats, fmt.Sprintf("n%d", i+1))
		nodes[i] = smokeServe(t, dirs[i], confs[i])
	}
	defer func() {
		for _, n := range nodes {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
			if err := n.wait(); err != nil {
				t.Errorf("serve: %v\n%s", err, n.logs.String())
			}
		}
	}()
	var lamp struct {
		ID      uint64 `json:"id"`
		ReadKey string `json:"read_api_key"`
	}
	cli(t, dirs[0], &lamp, "channel", "create", "--name", "Lamp", "--field", "1=Temperature", "--json")
	cli(t, dirs[0], nil, "channel", "bind", fmt.Sprint(lamp.ID), "--topic", "zigbee2mqtt/lamp", "--field", "1=$.temperature", "--json")
	// Home Assistant on node 1, Zigbee2MQTT on node 2.
	var ha, z2m auth.DeviceJSON
	cli(t, dirs[0], &ha, "device", "create", "--name", "homeassistant", "--json")
	cli(t, dirs[0], &z2m, "device", "create", "--name", "zigbee2mqtt", "--json")
	cli(t, dirs[0], nil, "device", "allow", fmt.Sprint(ha.ID), "--topic", "zigbee2mqtt/#", "--read", "--write", "--json")
	cli(t, dirs[0], nil, "device", "allow", fmt.Sprint(z2m.ID), "--topic", "zigbee2mqtt/#", "--read", "--write", "--json")

	creds := func(srv *server, d auth.DeviceJSON) []string {
		_, port, _ := net.SplitHostPort(srv.addr)
		return []string{"-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-i", d.ClientID, "-u", d.Username, "-P", d.Password}
	}
	// retain flag, QoS, topic, payload of each message node 2 delivers.
	sub := exec.Command("mosquitto_sub", append(creds(nodes[1], z2m), "-t", "zigbee2mqtt/#", "-q", "1", "-F", "%r %q %t %p")...)
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	pub := func(args ...string) error {
		out, err := exec.Command("mosquitto_pub", append(creds(nodes[0], ha), args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mosquitto_pub: %v %s", err, out)
		}
		return nil
	}
	// mosquitto_sub has subscribed (node 2 knows the device) once a
	// message reaches it: publish until one does. Delivery across nodes
	// is at most once, so the pings before are simply not seen.
	deadline := time.Now().Add(30 * time.Second)
	for ready := false; !ready; {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub on node 2 got nothing\nnode 1:\n%s\nnode 2:\n%s", nodes[0].logs.String(), nodes[1].logs.String())
		}
		_ = pub("-q", "0", "-t", "zigbee2mqtt/ping", "-m", "ping") // the device may not be known on node 1 yet
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("mosquitto_sub ended")
			}
			if l != "0 0 zigbee2mqtt/ping ping" {
				t.Fatalf("node 2 delivered %q", l)
			}
			ready = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := pub("-q", "1", "-r", "-t", "zigbee2mqtt/lamp", "-m", `{"temperature":22.5}`); err != nil {
		t.Fatal(err)
	}
	want := `0 1 zigbee2mqtt/lamp {"temperature":22.5}`
	for got := ""; got != want; {
		select {
		case l := <-lines:
			if l != "0 0 zigbee2mqtt/ping ping" { // late pings may follow
				if l != want {
					t.Fatalf("node 2 delivered %q, want %q", l, want)
				}
				got = l
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the lamp's state did not reach node 2")
		}
	}

	// One entry: node 1 stored it before its PUBACK; node 2 would have
	// stored a second before delivering.
	resp, err := http.Get(fmt.Sprintf("http://%s/channels/%d/feeds.json?api_key=%s", nodes[1].addrs["http"], lamp.ID, lamp.ReadKey))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var feed struct {
		Feeds []map[string]any `json:"feeds"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &feed) != nil || len(feed.Feeds) != 1 || feed.Feeds[0]["field1"] != "22.5" {
		t.Fatalf("lamp feed: %d %s", resp.StatusCode, body)
	}

	counter := func(i int, name string) uint64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + name + ` (\d+)$`).FindStringSubmatch(smokeMetric(t, "http://"+nodes[i].addrs["http"]))
		if m == nil {
			t.Fatalf("node %d has no %s", i+1, name)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	if n := counter(0, "feedmq_cluster_free_forwarded_total"); n < 2 {
		t.Errorf("node 1 forwarded %d messages, want 2 at least", n)
	}
	if n := counter(1, "feedmq_cluster_free_received_total"); n < 2 {
		t.Errorf("node 2 received %d messages, want 2 at least", n)
	}
	if n := counter(1, "feedmq_cluster_free_forwarded_total"); n != 0 {
		t.Errorf("node 2 forwarded %d messages: it published none", n)
	}
	if n := counter(1, "feedmq_cluster_free_malformed_total"); n != 0 {
		t.Errorf("node 2 dropped %d messages as malformed", n)
	}
}
