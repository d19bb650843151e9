package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// `feedmq serve` keeps retained messages and a persistent session's
// queued messages in <data_dir>/mqtt-sessions.db across a restart:
// mosquitto_sub with a persistent session (-c) gets, after the server was
// stopped and started again, the QoS 1 message published while it was
// away and the retained one.
func TestRetainedAndSessionsAcrossRestart(t *testing.T) {
	for _, c := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(c); err != nil {
			if os.Getenv("FEEDMQ_REQUIRE_CLIENTS") != "" {
				t.Fatalf("%s not found", c)
			}
			t.Skipf("%s not installed", c)
		}
	}
	data := t.TempDir()
	var sub, pub deviceJSON
	cli(t, data, &sub, "device", "create", "--name", "listener", "--json")
	cli(t, data, &pub, "device", "create", "--name", "sender", "--json")
	cli(t, data, nil, "device", "allow", "1", "--topic", "home/#", "--read", "--json")
	cli(t, data, nil, "device", "allow", "2", "--topic", "home/#", "--write", "--json")
	srv := startServe(t, data)
	args := func(d deviceJSON) []string {
		return []string{"-h", "127.0.0.1", "-p", port(srv.addr), "-V", "mqttv311", "-i", d.ClientID, "-u", d.Username, "-P", d.Password}
	}
	run := func(name string, a ...string) string {
		t.Helper()
		out, err := exec.Command(name, a...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, a, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// A persistent session (-c) subscribes at QoS 1 and leaves at once
	// (-E: exit after subscribing).
	run("mosquitto_sub", append(args(sub), "-c", "-q", "1", "-t", "home/#", "-E")...)
	run("mosquitto_pub", append(args(pub), "-q", "1", "-r", "-t", "home/status", "-m", "online")...)
	run("mosquitto_pub", append(args(pub), "-q", "1", "-t", "home/event", "-m", "door")...)

	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srv.logs.String())
	}
	if _, err := os.Stat(filepath.Join(data, "mqtt-sessions.db")); err != nil {
		t.Fatalf("no sessions file: %v", err)
	}
	srv = startServe(t, data)
	got := run("mosquitto_sub", append(args(sub), "-c", "-q", "1", "-t", "home/#", "-v", "-C", "2", "-W", "10")...)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || !strings.Contains(got, "home/event door") || !strings.Contains(got, "home/status online") {
		t.Fatalf("the session after a restart got %q", got)
	}
}
