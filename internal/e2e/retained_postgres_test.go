package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// Two feedmq serve processes on one PostgreSQL database share retained
// messages: retained through one with mosquitto_pub, a mosquitto_sub on
// the other gets it; an empty retained publish on the other clears it
// everywhere; a node restarted gets what was retained while it was down.
func TestServeRetainedSharedOnPostgres(t *testing.T) {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dbURL := pgtest.New(t)
	conf := filepath.Join(t.TempDir(), "feedmq.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("storage: %q\n", dbURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	data := []string{t.TempDir(), t.TempDir()}
	var writer, reader auth.DeviceJSON
	cli(t, data[0], &writer, "--config", conf, "device", "create", "--name", "homeassistant", "--json")
	cli(t, data[0], &reader, "--config", conf, "device", "create", "--name", "dashboard", "--json")
	cli(t, data[0], nil, "--config", conf, "device", "allow", fmt.Sprint(writer.ID), "--topic", "home/#", "--read", "--write", "--json")
	cli(t, data[0], nil, "--config", conf, "device", "allow", fmt.Sprint(reader.ID), "--topic", "home/#", "--read", "--json")

	start := func(i int) *server {
		return startServeWith(t, raceBuild, data[i], "--config", conf, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off")
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
		if out, err := exec.Command("mosquitto_pub", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s\n%s", err, out, srv.logs.String())
		}
	}
	// retained returns what a new subscriber to home/# is sent at once:
	// the retained messages, one per line.
	retained := func(srv *server) string {
		t.Helper()
		out, err := exec.Command("mosquitto_sub", append(creds(srv, reader), "-t", "home/#", "-v", "--retained-only", "-W", "1")...).Output()
		if err != nil && !strings.Contains(err.Error(), "exit status 27") { // 27: timed out
			t.Fatalf("mosquitto_sub: %v %s\n%s", err, out, srv.logs.String())
		}
		return strings.TrimSpace(string(out))
	}
	waitFor := func(srv *server, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := retained(srv)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("retained %q, want %q\n%s", got, want, srv.logs.String())
			}
		}
	}

	retain(nodes[0], "home/status", "online")
	waitFor(nodes[1], "home/status online")
	retain(nodes[1], "home/status", "")
	waitFor(nodes[0], "")

	stop(nodes[1])
	retain(nodes[0], "home/light", "on")
	nodes[1] = start(1)
	if got := retained(nodes[1]); got != "home/light on" {
		t.Fatalf("restarted node sent %q\n%s", got, nodes[1].logs.String())
	}
}
