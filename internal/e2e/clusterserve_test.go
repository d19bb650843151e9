package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/internal/natstest"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// smokeNATS starts one NATS server in this process on a loopback port.
func smokeNATS(t *testing.T) string {
	t.Helper()
	return natstest.Start(t, natsserver.Options{}).ClientURL()
}

// smokeConfig writes node name's configuration file in its own data
// directory and returns the directory and the file.
func smokeConfig(t *testing.T, db, nats, name string) (dir, conf string) {
	t.Helper()
	dir = t.TempDir()
	conf = filepath.Join(dir, "feedmq.yaml")
	body := fmt.Sprintf("data_dir: %q\nstorage: %q\ncluster: %q\ncluster_name: smoke\nnode_name: %s\n", dir, db, nats, name)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, conf
}

// smokeServe starts a node with MQTT and HTTP on loopback ports.
func smokeServe(t *testing.T, dir, conf string) *server {
	t.Helper()
	return startServeWith(t, raceBuild, dir, "--config", conf, "--mqtt", "127.0.0.1:0", "--ws", "off",
		"--http", "127.0.0.1:0", "--log-level", "info")
}

// smokeGet returns the status and body of GET url.
func smokeGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// smokeWait polls cond until it holds or the deadline passes.
func smokeWait(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, within, last)
		}
	}
}

// smokeConnect connects a device to addr, retrying while the node has not
// heard of it yet.
func smokeConnect(t *testing.T, addr string, d deviceJSON) *mqtttest.Conn {
	t.Helper()
	var c *mqtttest.Conn
	smokeWait(t, "CONNECT of "+d.Username+" on "+addr, 10*time.Second, func() (bool, string) {
		conn, err := mqtttest.Dial(addr)
		if err != nil {
			return false, err.Error()
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		code, err := conn.Connect(mqtttest.Connect{ClientID: d.ClientID, Username: d.Username, Password: d.Password, Clean: true})
		if err != nil || code != 0 {
			conn.Close()
			return false, fmt.Sprintf("code %d, %v", code, err)
		}
		_ = conn.SetDeadline(time.Time{})
		c = conn
		return true, ""
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// smokeSubscribe connects a device to addr and subscribes it to channel
// ch's entries.
func smokeSubscribe(t *testing.T, addr string, d deviceJSON, ch uint64) *mqtttest.Conn {
	t.Helper()
	c := smokeConnect(t, addr, d)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if code, err := c.Subscribe(1, fmt.Sprintf("channels/%d/subscribe", ch)); err != nil || code != 0 {
		t.Fatalf("SUBACK %d, %v", code, err)
	}
	return c
}

// smokePublish publishes field1=v to channel ch at QoS 1 on c and waits
// for its PUBACK.
func smokePublish(t *testing.T, c *mqtttest.Conn, ch uint64, v string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Publish(fmt.Sprintf("channels/%d/publish", ch), 1, 1, []byte("field1="+v)); err != nil {
		t.Fatal(err)
	}
	if _, code, err := c.ReadPuback(); err != nil || code != 0 {
		t.Fatalf("PUBACK code %d, %v", code, err)
	}
}

// Two real `feedmq serve` nodes on one PostgreSQL database and one NATS
// server: what is published on node 1 reaches a subscriber on node 2; a
// password reset through node 2's admin socket closes the device's
// connection on node 1 within a second; /healthz and /metrics of each
// show both nodes; a third process given a live node's name, or NATS
// that does not answer, is refused at start with a clear error; a node
// stopped cleanly restarts at once under its name.
func TestClusterServeTwoNodes(t *testing.T) {
	db, nats := pgtest.New(t), smokeNATS(t)
	dir1, conf1 := smokeConfig(t, db, nats, "n1")
	dir2, conf2 := smokeConfig(t, db, nats, "n2")
	n1 := smokeServe(t, dir1, conf1)
	n2 := smokeServe(t, dir2, conf2)

	var ch struct {
		ID uint64 `json:"id"`
	}
	cli(t, dir2, &ch, "channel", "create", "--name", "smoke", "--field", "1=T", "--json")
	var pub, sub deviceJSON
	cli(t, dir2, &pub, "device", "create", "--name", "pub", "--channel", fmt.Sprint(ch.ID), "--json")
	cli(t, dir1, &sub, "device", "create", "--name", "sub", "--channel", fmt.Sprint(ch.ID), "--json")

	// Cross-node delivery: subscribe on node 2, publish on node 1.
	sc := smokeSubscribe(t, n2.addr, sub, ch.ID)
	pc := smokeConnect(t, n1.addr, pub)
	smokePublish(t, pc, ch.ID, "42")
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, payload, err := sc.ReadPublish(); err != nil || !strings.Contains(string(payload), `"entry_id":1`) || !strings.Contains(string(payload), `"field1":"42"`) {
		t.Fatalf("node 2's subscriber got %q, %v", payload, err)
	}

	// Revocation through node 2 closes node 1's connection.
	_ = pc.SetDeadline(time.Time{})
	closed := make(chan time.Time, 1)
	go func() {
		for {
			if _, _, err := pc.ReadPacket(); err != nil {
				closed <- time.Now()
				return
			}
		}
	}()
	var reset deviceJSON
	cli(t, dir2, &reset, "device", "reset-password", "1", "--json")
	done := time.Now()
	select {
	case at := <-closed:
		if d := at.Sub(done); d > time.Second {
			t.Fatalf("node 1 closed the revoked connection %v after the reset", d)
		}
	case <-time.After(time.Second):
		t.Fatal("node 1 kept the revoked device's connection for more than 1 s")
	}
	// The old password is refused on node 1, the new one taken.
	if c, err := mqtttest.Dial(n1.addr); err == nil {
		code, _ := c.Connect(mqtttest.Connect{ClientID: pub.ClientID, Username: pub.Username, Password: pub.Password, Clean: true})
		c.Close()
		if code == 0 {
			t.Fatal("node 1 accepted the old password after the reset")
		}
	}
	if reset.Password == "" || reset.Password == pub.Password {
		t.Fatalf("reset gave password %q", reset.Password)
	}
	smokeConnect(t, n1.addr, deviceJSON{ClientID: pub.ClientID, Username: pub.Username, Password: reset.Password})

	// Both nodes see both (a node's list is as of its last beat, every 5 s).
	for i, n := range []*server{n1, n2} {
		base := "http://" + n.addrs["http"]
		smokeWait(t, fmt.Sprintf("node %d's /healthz listing both nodes", i+1), 20*time.Second, func() (bool, string) {
			code, body := smokeGet(t, base+"/healthz")
			return code == 200 && strings.HasPrefix(body, "ok\n") && strings.Contains(body, "nodes: n1 ok, n2 ok\n") &&
				strings.Contains(body, "nats: connected\n") && strings.Contains(body, "database: reachable\n") &&
				strings.Contains(body, "fail_closed: false\n"), fmt.Sprintf("%d %q", code, body)
		})
		code, body := smokeGet(t, base+"/metrics")
		for _, want := range []string{
			"feedmq_cluster_nodes_live 2\n",
			`feedmq_cluster_nodes{node="n1",status="ok"} 1`,
			`feedmq_cluster_nodes{node="n2",status="ok"} 1`,
			"feedmq_cluster_nats_connected 1\n",
			"feedmq_cluster_database_reachable 1\n",
			"feedmq_cluster_fail_closed 0\n",
			"feedmq_cluster_gap_fills_total ",
			"feedmq_cluster_sequencer_waits_total ",
		} {
			if code != 200 || !strings.Contains(body, want) {
				t.Errorf("node %d's /metrics (%d) lacks %q", i+1, code, want)
			}
		}
	}
	if !strings.Contains(smokeMetric(t, "http://"+n1.addrs["http"]), "feedmq_cluster_entries_published_total 1\n") {
		t.Error("node 1 did not count its entry as published on NATS")
	}
	if !strings.Contains(smokeMetric(t, "http://"+n2.addrs["http"]), "feedmq_cluster_entries_received_total 1\n") {
		t.Error("node 2 did not count the entry as received from NATS")
	}

	// A second process under a live node's name is refused.
	dir3, _ := smokeConfig(t, db, nats, "n1")
	out, err := exec.Command(feedmqBinary(t), "serve", "--config", filepath.Join(dir3, "feedmq.yaml"),
		"--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `node name "n1" is held by another running feedmq`) {
		t.Fatalf("a duplicate node name started: %v\n%s", err, out)
	}
	// NATS that does not answer: a clear error, not a node without peers.
	dir4, conf4 := smokeConfig(t, db, "nats://127.0.0.1:1", "n4")
	out, err = exec.Command(feedmqBinary(t), "serve", "--config", conf4, "--data", dir4,
		"--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cluster: connect to NATS") {
		t.Fatalf("serve without a reachable NATS: %v\n%s", err, out)
	}

	// A clean stop leaves the table; the node restarts under its name at once.
	_ = n2.cmd.Process.Signal(syscall.SIGTERM)
	if err := n2.wait(); err != nil {
		t.Fatalf("node 2 did not stop cleanly: %v\n%s", err, n2.logs.String())
	}
	smokeServe(t, dir2, conf2)

	for i, n := range []*server{n1, n2} {
		for _, secret := range []string{pub.Password, reset.Password, sub.Password} {
			if strings.Contains(n.logs.String(), secret) {
				t.Errorf("node %d logged a device password", i+1)
			}
		}
	}
}

func smokeMetric(t *testing.T, base string) string {
	t.Helper()
	_, body := smokeGet(t, base+"/metrics")
	return body
}
