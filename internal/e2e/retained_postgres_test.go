package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// Two feedmq serve nodes on one PostgreSQL database (and one NATS server)
// share retained messages and access rules: retained through one with
// mosquitto_pub, a mosquitto_sub on the other gets it; an empty retained
// publish on the other clears it everywhere; a read rule taken away
// through one node's admin socket stops the other node sending, and given
// back starts it again; a node restarted gets what was retained while it
// was down.
func TestServeRetainedSharedOnPostgres(t *testing.T) {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	db, nats := pgtest.New(t), smokeNATS(t)
	var dirs, confs [2]string
	for i := range 2 {
		dirs[i], confs[i] = smokeConfig(t, db, nats, fmt.Sprintf("n%d", i+1))
	}
	start := func(i int) *server {
		return startServeWith(t, raceBuild, dirs[i], "--config", confs[i], "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off")
	}
	stop := func(srv *server) {
		t.Helper()
		_ = srv.cmd.Process.Signal(syscall.SIGTERM)
		if err := srv.wait(); err != nil {
			t.Fatalf("serve: %v\n%s", err, srv.logs.String())
		}
	}
	nodes := []*server{start(0), start(1)}
	defer func() {
		for _, n := range nodes {
			stop(n)
		}
	}()
	// Made through node 1's socket; node 2 hears of them from the database.
	var writer, reader auth.DeviceJSON
	cli(t, dirs[0], &writer, "device", "create", "--name", "homeassistant", "--json")
	cli(t, dirs[0], &reader, "device", "create", "--name", "dashboard", "--json")
	cli(t, dirs[0], nil, "device", "allow", fmt.Sprint(writer.ID), "--topic", "home/#", "--read", "--write", "--json")
	cli(t, dirs[0], nil, "device", "allow", fmt.Sprint(reader.ID), "--topic", "home/#", "--read", "--json")

	creds := func(srv *server, d auth.DeviceJSON) []string {
		_, port, _ := net.SplitHostPort(srv.addr)
		return []string{"-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-i", d.ClientID, "-u", d.Username, "-P", d.Password}
	}
	retain := func(srv *server, topic, payload string) {
		t.Helper()
		args := append(creds(srv, writer), "-q", "1", "-r", "-t", topic)
		if payload == "" {
			args = append(args, "-n")
		} else {
			args = append(args, "-m", payload)
		}
		smokeWait(t, "mosquitto_pub -r "+topic, 20*time.Second, func() (bool, string) {
			out, err := exec.Command("mosquitto_pub", args...).CombinedOutput()
			return err == nil, fmt.Sprintf("%v %s", err, out) // the device may not be known on this node yet
		})
	}
	// retained is what a new subscriber to home/# is sent at once: the
	// retained messages, one per line, or what mosquitto_sub says when the
	// subscription is refused.
	retained := func(srv *server) string {
		t.Helper()
		cmd := exec.Command("mosquitto_sub", append(creds(srv, reader), "-t", "home/#", "-v", "--retained-only", "-W", "1")...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil && cmd.ProcessState.ExitCode() != 27 { // 27: timed out, nothing more retained
			return fmt.Sprintf("%v %s %s", err, out, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	waitFor := func(i int, want string) {
		t.Helper()
		smokeWait(t, fmt.Sprintf("node %d to send %q", i+1, want), 20*time.Second, func() (bool, string) {
			got := retained(nodes[i])
			return got == want, got
		})
	}

	retain(nodes[0], "home/status", "online")
	waitFor(1, "home/status online")
	retain(nodes[1], "home/status", "")
	waitFor(0, "")
	retain(nodes[1], "home/status", "back")
	waitFor(0, "home/status back")
	waitFor(1, "home/status back")

	// Rules: taken away through node 1, node 2 sends nothing (the
	// subscription is refused).
	cli(t, dirs[0], nil, "device", "disallow", fmt.Sprint(reader.ID), "--topic", "home/#", "--json")
	waitFor(1, "")
	cli(t, dirs[0], nil, "device", "allow", fmt.Sprint(reader.ID), "--topic", "home/#", "--read", "--json")
	waitFor(1, "home/status back")

	stop(nodes[1])
	retain(nodes[0], "home/light", "on")
	nodes[1] = start(1)
	if got := retained(nodes[1]); got != "home/light on\nhome/status back" && got != "home/status back\nhome/light on" {
		t.Fatalf("restarted node sent %q\n%s", got, nodes[1].logs.String())
	}
}
