package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/loadgen"
)

// Each scenario runs briefly against an in-process feedmq; the counts
// agree, and bench deletes the channels and devices it created.
func TestBench(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: "127.0.0.1:0", MQTTS: off, WSS: off, HTTP: off}
	s, err := openServer(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.addr("mqtt").String()
	wsAddr := "ws://" + s.addr("ws").String() + "/mqtt"
	// A channel of the user's, public, that bench must not count.
	mustRun(t, cfg.DataDir, "channel", "create", "--name", "mine", "--public")

	bench := func(t *testing.T, args ...string) loadgen.Result {
		t.Helper()
		args = append([]string{"bench"}, args...)
		if !strings.Contains(strings.Join(args, " "), "--addr") {
			args = append(args, "--addr", addr)
		}
		args = append(args, "--duration", "10s", "--pid", strconv.Itoa(os.Getpid()), "--json")
		var r loadgen.Result
		mustJSON(t, cfg.DataDir, &r, args...)
		if r.Errors != 0 || r.Broker != "feedmq" || r.Scenario != args[1] || r.CPUSeconds == nil {
			t.Fatalf("%+v", r)
		}
		return r
	}
	t.Run("FaninQoS1", func(t *testing.T) {
		r := bench(t, "fanin", "--clients", "3", "--qos", "1", "--messages", "150")
		if r.Sent != 150 || r.Acked != 150 || r.Delivered != 150 || r.Expected != 150 || r.Latency == nil {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("FaninQoS0", func(t *testing.T) {
		r := bench(t, "fanin", "--clients", "3", "--messages", "150", "--rate", "500")
		if r.Sent != 150 || r.Acked != 0 || r.Delivered == 0 || r.Delivered > r.Sent {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("FanoutQoS1", func(t *testing.T) {
		r := bench(t, "fanout", "--clients", "3", "--qos", "1", "--messages", "100")
		if r.Sent != 100 || r.Acked != 100 || r.Expected != 300 || r.Delivered != 300 {
			t.Fatalf("%+v", r)
		}
	})
	// Free topics: devices allowed to write bench/#, anonymous subscribers
	// allowed to read it for the run only.
	t.Run("FreeFaninQoS1", func(t *testing.T) {
		r := bench(t, "fanin", "--free", "--clients", "3", "--qos", "1", "--messages", "150")
		if !r.Free || r.Sent != 150 || r.Acked != 150 || r.Delivered != 150 || r.Expected != 150 || r.Latency == nil {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("FreeFanoutQoS1", func(t *testing.T) {
		r := bench(t, "fanout", "--free", "--clients", "3", "--qos", "1", "--messages", "100")
		if !r.Free || r.Sent != 100 || r.Acked != 100 || r.Expected != 300 || r.Delivered != 300 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("FreeKeepsAnonymousRules", func(t *testing.T) {
		// A rule of the user's on bench/# that allows reading is left
		// as it is; one that does not is put back afterwards.
		for _, access := range []string{"--read", "--write"} {
			mustRun(t, cfg.DataDir, "device", "allow", "anonymous", "--topic", "bench/#", access)
			bench(t, "latency", "--free", "--rate", "200", "--messages", "20", "--qos", "1")
			var rules struct{ Anonymous []string }
			mustJSON(t, cfg.DataDir, &rules, "access", "list", "--json")
			want := map[string]string{"--read": "read bench/#", "--write": "write bench/#"}[access]
			if len(rules.Anonymous) != 1 || rules.Anonymous[0] != want {
				t.Fatalf("anonymous rules after the run: %q, want [%s]", rules.Anonymous, want)
			}
			mustRun(t, cfg.DataDir, "device", "disallow", "anonymous", "--topic", "bench/#")
		}
	})
	t.Run("Latency", func(t *testing.T) {
		r := bench(t, "latency", "--rate", "200", "--messages", "50", "--qos", "1")
		if r.Sent != 50 || r.Delivered != 50 || r.Latency == nil || r.Latency.Samples != 50 || r.Clients != 1 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("Connect", func(t *testing.T) {
		r := bench(t, "connect", "--clients", "2", "--messages", "40")
		if r.Sent != 40 || r.Acked != 40 || r.CPUPerMillion == nil {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("Idle", func(t *testing.T) {
		r := bench(t, "idle", "--clients", "10", "--duration", "1s")
		if r.Sent != 10 || r.Acked != 10 {
			t.Fatalf("%+v", r)
		}
	})
	// Over WebSocket: every connection of the run.
	t.Run("WebSocket", func(t *testing.T) {
		r := bench(t, "fanin", "--addr", wsAddr, "--clients", "3", "--qos", "1", "--messages", "150")
		if r.Addr != wsAddr || r.Sent != 150 || r.Acked != 150 || r.Delivered != 150 {
			t.Fatalf("%+v", r)
		}
		r = bench(t, "idle", "--addr", wsAddr, "--clients", "10", "--duration", "1s")
		if r.Sent != 10 || r.Acked != 10 {
			t.Fatalf("%+v", r)
		}
		r = bench(t, "connect", "--addr", wsAddr, "--clients", "2", "--messages", "20")
		if r.Sent != 20 || r.Acked != 20 {
			t.Fatalf("%+v", r)
		}
		for bad, says := range map[string]string{"wss://" + s.addr("ws").String() + "/mqtt": "not wss",
			"ws:///mqtt": "not a WebSocket URL", "http://" + s.addr("ws").String(): "is not HOST:PORT"} {
			if msg := mustFail(t, cfg.DataDir, "bench", "idle", "--addr", bad, "--clients", "1"); !strings.Contains(msg, says) {
				t.Errorf("--addr %s: %s", bad, msg)
			}
		}
		if msg := mustFail(t, cfg.DataDir, "bench", "failover", "--addr", wsAddr, "--clients", "1"); !strings.Contains(msg, "over TCP") {
			t.Errorf("failover over WebSocket: %s", msg)
		}
	})
	// Two addresses of the one server stand for two nodes: every
	// subscriber is on the second, the publisher on the first.
	t.Run("TwoNodes", func(t *testing.T) {
		_, port, _ := strings.Cut(addr, ":")
		pid := strconv.Itoa(os.Getpid())
		var r loadgen.Result
		mustJSON(t, cfg.DataDir, &r, "bench", "fanout", "--addr", addr+",localhost:"+port, "--pid", pid+","+pid,
			"--clients", "3", "--qos", "1", "--messages", "60", "--duration", "10s", "--json")
		if r.Nodes != 2 || r.Addr != addr+",localhost:"+port || r.Sent != 60 || r.Acked != 60 || r.Delivered != 180 || r.CPUSeconds == nil {
			t.Fatalf("%+v", r)
		}
		out := mustRun(t, cfg.DataDir, "bench", "fanin", "--addr", addr+",localhost:"+port, "--clients", "2", "--qos", "1", "--messages", "20")
		if !strings.Contains(out, "(2 nodes)") || !strings.Contains(out, "20 of 20 expected") {
			t.Errorf("table:\n%s", out)
		}
	})
	// A database restart that takes 200 ms (here a sleep): every device
	// publishes again afterwards; bench provisioned and removes them.
	t.Run("FailoverRestart", func(t *testing.T) {
		var r loadgen.Result
		mustJSON(t, cfg.DataDir, &r, "bench", "failover", "--addr", addr, "--clients", "3", "--restart-db", "sleep 0.2",
			"--duration", "20s", "--json")
		f := r.Failover
		if f == nil || f.Kill != nil || f.DB == nil || f.Devices != 3 || f.RatePerDevice != 20 || r.Acked == 0 {
			t.Fatalf("%+v", r)
		}
		if f.DB.Resumed != 3 || f.DB.Restart < 200 || f.DB.GapMax <= 0 {
			t.Fatalf("%+v", *f.DB)
		}
		out := mustRun(t, cfg.DataDir, "bench", "failover", "--addr", addr, "--clients", "2", "--restart-db", "true", "--duration", "20s")
		for _, want := range []string{"failover (QoS 1 through a round-robin balancer)", "database restart", "2 of 2 devices"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("Table", func(t *testing.T) {
		out := mustRun(t, cfg.DataDir, "bench", "fanin", "--addr", addr, "--clients", "2", "--qos", "1", "--messages", "20")
		for _, want := range []string{"scenario", "fanin (QoS 1)", "delivered", "20 of 20 expected", "latency"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
		out = mustRun(t, cfg.DataDir, "bench", "fanout", "--free", "--addr", addr, "--clients", "2", "--qos", "1", "--messages", "20")
		for _, want := range []string{"fanout (QoS 1, free topics)", "40 of 40 expected"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})

	// Only the user's channel is left, and no device or rule.
	var chans []map[string]any
	mustJSON(t, cfg.DataDir, &chans, "channel", "list", "--json")
	var devs []map[string]any
	mustJSON(t, cfg.DataDir, &devs, "device", "list", "--json")
	var rules struct{ Anonymous, Everyone []string }
	mustJSON(t, cfg.DataDir, &rules, "access", "list", "--json")
	if len(chans) != 1 || chans[0]["name"] != "mine" || len(devs) != 0 || len(rules.Anonymous)+len(rules.Everyone) != 0 {
		b, _ := json.Marshal(map[string]any{"channels": chans, "devices": devs, "rules": rules})
		t.Fatalf("left behind: %s", b)
	}
}

func TestBenchErrors(t *testing.T) {
	dir := t.TempDir()
	for args, want := range map[string]string{
		"bench":                                      "takes one scenario: fanin, fanout, latency, connect, idle",
		"bench bogus":                                "takes one scenario",
		"bench fanin --qos 2":                        "--qos must be 0 or 1",
		"bench fanin --addr 127.0.0.1:1":             "no feedmq serve answers on",
		"bench fanin --pid 999999999":                "--pid 999999999",
		"bench fanin --pid 1,-5":                     "--pid -5",
		"bench fanin --addr 127.0.0.1:1,":            "empty address between commas",
		"bench fanin --addr 127.0.0.1:1,127.0.0.1:1": "127.0.0.1:1 is given twice",
		"bench fanin --addr 127.0.0.1":               `"127.0.0.1" is not HOST:PORT`,
		"bench fanin --plain --clients -1":           "--clients must be at least 1",
		"bench connect --plain --free":               "--free applies to fanin, fanout and latency",
		"bench fanin --plain --kill 1":               "--kill and --restart-db apply to failover only",
		"bench failover --plain":                     "failover needs a node to kill (--kill N) or a database restart",
		"bench failover --plain --kill 1 --addr 127.0.0.1:1,127.0.0.1:2":           "--kill needs the process ID of every node",
		"bench failover --plain --kill 3 --addr 127.0.0.1:1,127.0.0.1:2 --pid 1,1": "--kill 3: there are 2 nodes",
	} {
		if got := mustFail(t, dir, strings.Fields(args)...); !strings.Contains(got, want) {
			t.Errorf("%s: got %q, want %q", args, got, want)
		}
	}
	if got := mustFail(t, dir, "bench", "failover", "--plain", "--restart-db", " "); !strings.Contains(got, "--restart-db is empty") {
		t.Errorf("blank --restart-db: got %q", got)
	}
}

// startServeProcess runs `feedmq serve` on dir as a process of its own
// (this test binary re-executed) and returns its MQTT address, the
// process, which the test ends, and a channel closed once it has ended.
func startServeProcess(t *testing.T, dir string) (string, *exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--data", dir, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "mqtt listening on "); ok {
				addr <- a
			}
		}
		cmd.Wait()
		close(exited)
	}()
	select {
	case a := <-addr:
		return a, cmd, exited
	case <-exited:
		t.Fatal("serve ended at start")
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start within 30s")
	}
	return "", nil, nil
}

// failover --kill 2 kills the second of two real serve processes with
// SIGKILL; the devices that were on it publish on the first again.
func TestBenchFailoverKill(t *testing.T) {
	var addrs, pids []string
	var procs []*exec.Cmd
	var exits []<-chan struct{}
	for range 2 {
		dir := t.TempDir()
		a, p, exited := startServeProcess(t, dir)
		// --plain devices are anonymous and publish on bench/failover/<n>.
		mustRun(t, dir, "device", "allow", "anonymous", "--topic", "bench/#", "--write")
		addrs, pids = append(addrs, a), append(pids, strconv.Itoa(p.Process.Pid))
		procs, exits = append(procs, p), append(exits, exited)
	}
	var r loadgen.Result
	mustJSON(t, t.TempDir(), &r, "bench", "failover", "--plain", "--addr", strings.Join(addrs, ","), "--pid", strings.Join(pids, ","),
		"--kill", "2", "--clients", "4", "--duration", "30s", "--json")
	f := r.Failover
	if f == nil || f.Kill == nil || f.DB != nil {
		t.Fatalf("%+v", r)
	}
	if k := f.Kill; k.Node != 2 || k.Addr != addrs[1] || k.Devices != 2 || k.Recovered != 2 || k.RecoverMax < k.ReconnectMax {
		t.Fatalf("%+v", *k)
	}
	// The second process ended by SIGKILL; the first runs on.
	select {
	case <-exits[1]:
	case <-time.After(30 * time.Second):
		t.Fatal("node 2 still runs")
	}
	if ws, ok := procs[1].ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("node 2 ended with %v, want SIGKILL", procs[1].ProcessState)
	}
	select {
	case <-exits[0]:
		t.Fatalf("node 1 ended: %v", procs[0].ProcessState)
	default:
	}
}
