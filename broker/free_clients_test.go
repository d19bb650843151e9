package broker_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
)

// runSession runs testdata/clients/paho_session.py for a device and
// returns its output lines, sorted after the first ("present=N").
func runSession(t *testing.T, python, addr string, cr *auth.Credentials, args ...string) []string {
	t.Helper()
	_, port := hostPort(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"../testdata/clients/paho_session.py", "--port", port, "--client-id", cr.Device.ClientID,
		"--username", cr.Device.Username, "--password=" + cr.Password}, args...)
	out, err := exec.CommandContext(ctx, python, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("paho_session.py %v: %v\n%s", args, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(lines[1:])
	return lines
}

// TestPahoPersistentSession: Eclipse Paho for Python, MQTT 3.1.1
// (CleanSession=0) and MQTT 5 (Clean Start=0, session expiry), gets the
// QoS 1 and 2 messages published while it was away when it comes back,
// also after a restart, and its subscription itself; QoS 0 ones are not
// queued.
func TestPahoPersistentSession(t *testing.T) {
	python := requirePahoPython(t)
	for _, version := range []string{"3.1.1", "5"} {
		t.Run(version, func(t *testing.T) {
			ts := startServer(t, broker.Options{})
			sub, pub := ts.device(), ts.device()
			rules := func() {
				ts.allow(sub, "read ha/#")
				ts.allow(pub, "write ha/#")
			}
			rules()
			var flags []string
			if version == "3.1.1" {
				flags = []string{"--v311"}
			}
			session := func(args ...string) []string { return runSession(t, python, ts.addr, sub, append(flags, args...)...) }
			if got := session("--sub", "ha/#", "--qos", "2"); got[0] != "present=0" {
				t.Fatalf("first connection: %v", got)
			}
			for round, restart := range []bool{false, true} {
				p := mustConnect(t, ts.addr, pub)
				for qos := range byte(3) {
					if err := p.publish(t, fmt.Sprintf("ha/r%d/q%d", round, qos), qos, fmt.Sprint(qos)); err != nil {
						t.Fatal(err)
					}
				}
				waitStats(t, ts, "2 queued", func(st broker.Stats) bool { return st.Queued == 2 })
				p.Disconnect(100)
				if restart {
					ts.restart()
				}
				got := session("--count", "2")
				want := []string{"present=1", fmt.Sprintf("ha/r%d/q1 1 qos=1 retain=0", round),
					fmt.Sprintf("ha/r%d/q2 2 qos=2 retain=0", round)}
				if !slices.Equal(got, want) {
					t.Fatalf("round %d (restart %v): got %q, want %q", round, restart, got, want)
				}
			}
			if st := ts.srv.Stats(); st.Queued != 0 || st.Sessions != 1 {
				t.Fatalf("queued %d, sessions %d after delivery; want 0 and 1", st.Queued, st.Sessions)
			}
		})
	}
}

// TestPahoRetainedAndRules: paho for Python publishes retained messages
// at QoS 2 (Home Assistant's discovery configs), a new subscriber gets
// them with the retain flag, also after a restart; a device without a
// rule gets no delivery and its publish is not retained.
func TestPahoRetainedAndRules(t *testing.T) {
	python := requirePahoPython(t)
	ts := startServer(t, broker.Options{})
	ha, reader, stranger := ts.device(), ts.device(), ts.device()
	rules := func() {
		ts.allow(ha, "readwrite homeassistant/#")
		ts.allow(reader, "read homeassistant/#")
	}
	rules()
	runSession(t, python, ts.addr, ha, "--v311", "--qos", "2", "--retain",
		"--pub", "homeassistant/sensor/t1/config={\"name\":\"t1\"}", "--pub", "homeassistant/status=online")
	runSession(t, python, ts.addr, stranger, "--v311", "--qos", "1", "--retain", "--pub", "homeassistant/status=offline")
	for _, restart := range []bool{false, true} {
		if restart {
			ts.restart()
		}
		got := runSession(t, python, ts.addr, reader, "--qos", "1", "--expiry", "0", "--sub", "homeassistant/#", "--count", "2")
		want := []string{"present=0", `homeassistant/sensor/t1/config {"name":"t1"} qos=1 retain=1`,
			"homeassistant/status online qos=1 retain=1"}
		if !slices.Equal(got, want) {
			t.Fatalf("restart %v: got %q, want %q", restart, got, want)
		}
	}
	// Without a rule: SUBACK 0x80 (3.1.1 has no other refusal), so paho
	// sees nothing at all.
	got := runSession(t, python, ts.addr, stranger, "--v311", "--qos", "1", "--sub", "homeassistant/#", "--linger", "0.3")
	if len(got) != 1 {
		t.Fatalf("a device without a rule got %q", got)
	}
}

// TestMosquittoFreeTopics drives free topics with Debian's mosquitto_pub
// and mosquitto_sub: a retained message, a will sent when the client is
// killed, and a publish without a rule dropped.
func TestMosquittoFreeTopics(t *testing.T) {
	pub, sub := requireTool(t, "mosquitto_pub"), requireTool(t, "mosquitto_sub")
	ts := startServer(t, broker.Options{})
	dev, watcher, reader, stranger := ts.device(), ts.device(), ts.device(), ts.device()
	ts.allow(dev, "readwrite tele/#")
	ts.allow(watcher, "read #")
	ts.allow(reader, "read #")
	host, port := hostPort(t, ts.addr)
	base := []string{"-h", host, "-p", port, "-V", "mqttv311"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	w := mustConnect(t, ts.addr, watcher)
	if code := w.subscribe(t, "tele/#"); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	if out, err := exec.CommandContext(ctx, pub, append(append(base, credArgs(dev)...),
		"-q", "1", "-r", "-t", "tele/plug/LWT", "-m", "Online")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	expectMsg(t, w, "tele/plug/LWT", "Online")
	// A publish without a rule: acknowledged (exit 0), not delivered.
	if out, err := exec.CommandContext(ctx, pub, append(append(base, credArgs(stranger)...),
		"-q", "1", "-t", "tele/plug/LWT", "-m", "spoofed")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub without a rule: %v\n%s", err, out)
	}
	w.expectNothing(t)

	out, err := exec.CommandContext(ctx, sub, append(append(base, credArgs(reader)...),
		"-v", "-C", "1", "-t", "tele/#")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "tele/plug/LWT Online" {
		t.Fatalf("mosquitto_sub retained: %v %q", err, out)
	}

	// A will, sent when the client dies without DISCONNECT.
	cmd := exec.CommandContext(ctx, sub, append(append(base, credArgs(dev)...), "-t", "tele/plug/cmd",
		"--will-topic", "tele/plug/LWT", "--will-payload", "Offline", "--will-qos", "1", "--will-retain")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.srv.DeviceActivity()[dev.Device.ID].Connections) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("mosquitto_sub never connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	expectMsg(t, w, "tele/plug/LWT", "Offline")
	out, err = exec.CommandContext(ctx, sub, append(append(base, credArgs(reader)...),
		"-v", "-C", "1", "-t", "tele/plug/LWT")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "tele/plug/LWT Offline" {
		t.Fatalf("the retained will: %v %q", err, out)
	}
}
