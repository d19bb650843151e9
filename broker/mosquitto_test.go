package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
)

// requireTool returns the path of a client program. `make test` installs
// them and sets FEEDMQ_REQUIRE_CLIENTS, so there a missing one fails the
// test instead of skipping it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("FEEDMQ_REQUIRE_CLIENTS") != "" {
			t.Fatalf("%s not found: run `make test-deps`", name)
		}
		t.Skipf("%s not installed (make test-deps installs it)", name)
	}
	return p
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func credArgs(cr *auth.Credentials) []string {
	return []string{"-i", cr.Device.ClientID, "-u", cr.Device.Username, "-P", cr.Password}
}

// TestMosquittoClients drives the broker with Debian's mosquitto_pub and
// mosquitto_sub, as the README walkthrough does.
func TestMosquittoClients(t *testing.T) {
	pub, sub := requireTool(t, "mosquitto_pub"), requireTool(t, "mosquitto_sub")
	ts := startServer(t, broker.Options{Anonymous: true})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	host, port := hostPort(t, ts.addr)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// -C 3: the feed JSON plus the two field values through fields/+.
	subCmd := exec.CommandContext(ctx, sub, append([]string{"-h", host, "-p", port, "-V", "mqttv311", "-v", "-C", "3",
		"-t", fmt.Sprintf("channels/%d/subscribe", ch), "-t", fmt.Sprintf("channels/%d/subscribe/fields/+", ch)},
		credArgs(dev)...)...)
	var out bytes.Buffer
	subCmd.Stdout, subCmd.Stderr = &out, &out
	if err := subCmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, ts, 2)

	// A second device only publishes; mosquitto_sub may not share its ID.
	pubDev := ts.device(auth.Grant{ChannelID: ch, Publish: true})
	run(t, pub, append([]string{"-h", host, "-p", port, "-q", "1",
		"-t", fmt.Sprintf("channels/%d/publish", ch), "-m", "field1=23.5&field2=40&created_at=2026-11-22 10:00:00"},
		credArgs(pubDev)...)...)
	if err := subCmd.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out.String())
	}
	want := fmt.Sprintf(`channels/%d/subscribe {"channel_id":%d,"created_at":"2026-11-22T10:00:00Z","entry_id":1,`+
		`"field1":"23.5","field2":"40","field3":null,"field4":null,"field5":null,"field6":null,"field7":null,`+
		`"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":null}`, ch, ch)
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != 3 || !slices.Contains(got, want) ||
		!slices.Contains(got, fmt.Sprintf("channels/%d/subscribe/fields/field1 23.5", ch)) ||
		!slices.Contains(got, fmt.Sprintf("channels/%d/subscribe/fields/field2 40", ch)) {
		t.Fatalf("mosquitto_sub printed:\n%s\nwant among them:\n%s", out.String(), want)
	}

	// A wrong password is refused with CONNACK 0x04, which mosquitto_pub
	// reports as a bad username or password.
	cmd := exec.Command(pub, "-h", host, "-p", port, "-t", fmt.Sprintf("channels/%d/publish", ch), "-m", "field1=1",
		"-i", dev.Device.ClientID, "-u", dev.Device.Username, "-P", "not-the-password")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(b)), "bad user name or password") {
		t.Fatalf("wrong password: err %v, output %q", err, b)
	}

	// The classic tutorial: anonymous, write key in the topic.
	c, err := ts.svc.Channel(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	run(t, pub, "-h", host, "-p", port, "-i", "umqtt_client",
		"-t", fmt.Sprintf("channels/%d/publish/%s", ch, c.WriteKey), "-m", "field1=7")
	// QoS 0 has no ack: wait for the commit.
	waitEntries(t, ts, ch, 2)
}

func waitEntries(t *testing.T, ts *testServer, ch uint64, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.entries(ch)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries, want %d", len(ts.entries(ch)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// waitSubscribed waits until the broker holds n subscriptions.
func waitSubscribed(t *testing.T, ts *testServer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ts.srv.Subscriptions() < n {
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions: %d, want %d", ts.srv.Subscriptions(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
