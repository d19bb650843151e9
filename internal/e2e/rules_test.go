package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// accessList is `feedmq access list --json`.
type accessList struct {
	Anonymous []string `json:"anonymous"`
	Everyone  []string `json:"everyone"`
	Devices   []struct {
		ID    uint64   `json:"id"`
		Name  string   `json:"name"`
		Rules []string `json:"rules"`
	} `json:"devices"`
}

// Access rules changed through a running server's socket (allow, import)
// are stored: a restarted server and an offline command read them back.
func TestAccessRulesAcrossRestarts(t *testing.T) {
	data := t.TempDir()
	cli(t, data, nil, "device", "create", "--name", "homeassistant", "--json")
	cli(t, data, nil, "device", "create", "--name", "zigbee2mqtt", "--json")
	srv := startServe(t, data)

	cli(t, data, nil, "device", "allow", "1", "--topic", "homeassistant/#", "--read", "--write", "--json")
	cli(t, data, nil, "device", "allow", "everyone", "--topic", "tele/%c/#", "--write", "--json")
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("topic read public/#\nuser zigbee2mqtt\ntopic readwrite zigbee2mqtt/#\ntopic deny zigbee2mqtt/bridge/config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var dry struct {
		DryRun bool `json:"dry_run"`
	}
	cli(t, data, &dry, "access", "import", acl, "--dry-run", "--json")
	if !dry.DryRun {
		t.Fatal("not a dry run")
	}
	var before accessList
	cli(t, data, &before, "access", "list", "--json")
	if len(before.Anonymous) != 0 || len(before.Devices) != 1 {
		t.Fatalf("the dry run changed rules: %+v", before)
	}
	cli(t, data, nil, "access", "import", acl, "--json")
	cli(t, data, &before, "access", "list", "--json")
	want := accessList{Anonymous: []string{"read public/#"}, Everyone: []string{"write tele/%c/#"}}
	if !reflect.DeepEqual(before.Anonymous, want.Anonymous) || !reflect.DeepEqual(before.Everyone, want.Everyone) || len(before.Devices) != 2 ||
		!reflect.DeepEqual(before.Devices[1].Rules, []string{"readwrite zigbee2mqtt/#", "deny zigbee2mqtt/bridge/config"}) {
		t.Fatalf("through the socket: %+v", before)
	}

	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srv.logs.String())
	}
	var offline accessList
	cli(t, data, &offline, "access", "list", "--json")
	if !reflect.DeepEqual(offline, before) {
		t.Fatalf("offline after stop:\n%+v\nwant\n%+v", offline, before)
	}
	cli(t, data, nil, "device", "disallow", "everyone", "--topic", "tele/%c/#", "--json")
	startServe(t, data)
	var again accessList
	cli(t, data, &again, "access", "list", "--json")
	before.Everyone = []string{}
	if !reflect.DeepEqual(again, before) {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", again, before)
	}
}

// Rule changes made with the CLI through a running server's socket apply
// to live connections at once: mosquitto_sub, connected before the
// change, stops receiving a topic whose rule is removed or that
// everyone's deny covers, and mosquitto_pub is refused or let through as
// the rules say.
func TestAccessRulesApplyToLiveConnections(t *testing.T) {
	for _, c := range []string{"mosquitto_pub", "mosquitto_sub", "stdbuf"} {
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
	srv := startServe(t, data)
	mqttPort := port(srv.addr)
	args := func(d deviceJSON) []string {
		return []string{"-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv311", "-i", d.ClientID, "-u", d.Username, "-P", d.Password}
	}
	publish := func(topic, payload string) {
		t.Helper()
		if out, err := exec.Command("mosquitto_pub", append(args(pub), "-t", topic, "-m", payload)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %s: %v\n%s", topic, err, out)
		}
	}
	cli(t, data, nil, "device", "allow", "1", "--topic", "home/#", "--topic", "marker", "--read", "--json")
	cli(t, data, nil, "device", "allow", "2", "--topic", "home/#", "--topic", "marker", "--write", "--json")

	// stdbuf: mosquitto_sub's lines reach a pipe at once.
	cmd := exec.Command("stdbuf", append([]string{"-oL", "mosquitto_sub"}, append(args(sub), "-d", "-v", "-t", "home/#", "-t", "marker")...)...)
	out := new(lockedBuffer)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
		}
	}()
	if !out.waitFor("received SUBACK", 10*time.Second) {
		t.Fatalf("mosquitto_sub did not subscribe:\n%s", out.String())
	}
	// SUBACK granted both filters (0x80, 128, would mean refused).
	if !out.waitFor("): 0, 0", 5*time.Second) {
		t.Fatalf("a filter was refused:\n%s", out.String())
	}
	publish("home/kitchen", "21.5")
	if !out.waitFor("home/kitchen 21.5", 10*time.Second) {
		t.Fatalf("the allowed topic was not delivered:\n%s", out.String())
	}

	// Everyone's deny covers home/secret at once, for the live
	// subscription and the publisher.
	cli(t, data, nil, "device", "allow", "everyone", "--topic", "home/secret/#", "--deny", "--json")
	_ = exec.Command("mosquitto_pub", append(args(pub), "-t", "home/secret/code", "-m", "1234")...).Run()
	publish("marker", "m1")
	if !out.waitFor("marker m1", 10*time.Second) {
		t.Fatalf("the marker was not delivered:\n%s", out.String())
	}
	if strings.Contains(out.String(), "home/secret") {
		t.Fatalf("a denied topic was delivered:\n%s", out.String())
	}

	// Removing the listener's rule stops its live subscription.
	cli(t, data, nil, "device", "disallow", "1", "--topic", "home/#", "--json")
	publish("home/kitchen", "22.5")
	publish("marker", "m2")
	if !out.waitFor("marker m2", 10*time.Second) {
		t.Fatalf("the marker was not delivered:\n%s", out.String())
	}
	if strings.Contains(out.String(), "home/kitchen 22.5") {
		t.Fatalf("a topic whose rule was removed was delivered:\n%s", out.String())
	}
	// And allowing it again lets it through again, on the same
	// connection.
	cli(t, data, nil, "device", "allow", "1", "--topic", "home/#", "--read", "--json")
	publish("home/kitchen", "23.5")
	if !out.waitFor("home/kitchen 23.5", 10*time.Second) {
		t.Fatalf("the topic allowed again was not delivered:\n%s", out.String())
	}
}
