package loadgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestNodeFor(t *testing.T) {
	for _, tc := range []struct {
		role, n int
		want    []int // nodes of connections 0, 1, 2, ...
	}{
		{rolePublisher, 1, []int{0, 0, 0}},
		{roleSubscriber, 1, []int{0, 0}},
		{roleFanoutPub, 1, []int{0}},
		{roleFanoutSub, 1, []int{0, 0, 0}},
		{rolePublisher, 3, []int{0, 1, 2, 0, 1, 2, 0}},
		{roleSubscriber, 3, []int{2, 2}},
		{roleFanoutPub, 3, []int{0, 0}},
		{roleFanoutSub, 3, []int{1, 2, 1, 2, 1}},
		{roleFanoutSub, 2, []int{1, 1, 1}},
		{rolePublisher, 2, []int{0, 1, 0, 1}},
		{roleSubscriber, 2, []int{1}},
	} {
		var got []int
		for i := range tc.want {
			got = append(got, nodeFor(tc.role, i, tc.n))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("role %d over %d nodes: %v, want %v", tc.role, tc.n, got, tc.want)
		}
	}
}

func TestParseAddrs(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:1883":                      "[127.0.0.1:1883]",
		"127.0.0.1:1883,127.0.0.1:1884":       "[127.0.0.1:1883 127.0.0.1:1884]",
		" 127.0.0.1:1883 , [::1]:1884 ":       "[127.0.0.1:1883 [::1]:1884]",
		"localhost:1,localhost:2,localhost:3": "[localhost:1 localhost:2 localhost:3]",
		"":                                    "error: --addr is empty",
		" ":                                   "error: --addr is empty",
		"127.0.0.1:1883,":                     "error: empty address between commas",
		",127.0.0.1:1883":                     "error: empty address between commas",
		"127.0.0.1":                           `error: "127.0.0.1" is not HOST:PORT`,
		"127.0.0.1:":                          "error: is not HOST:PORT",
		"127.0.0.1:0":                         "error: is not HOST:PORT",
		"127.0.0.1:65536":                     "error: is not HOST:PORT",
		"127.0.0.1:mqtt":                      "error: is not HOST:PORT",
		"127.0.0.1:1883,127.0.0.1:1883":       "error: --addr: 127.0.0.1:1883 is given twice",
		"ws://127.0.0.1:8083/mqtt":            "[ws://127.0.0.1:8083/mqtt]",
		"ws://localhost/mqtt,127.0.0.1:1883":  "[ws://localhost/mqtt 127.0.0.1:1883]",
		"WS://127.0.0.1:8083":                 "[WS://127.0.0.1:8083]",
		"wss://127.0.0.1:8084/mqtt":           "error: not wss",
		"ws://:8083/mqtt":                     "error: is not a WebSocket URL",
		"ws://u:p@127.0.0.1:8083/mqtt":        "error: is not a WebSocket URL",
		"ws://127.0.0.1:0/mqtt":               "error: is not HOST:PORT or ws://",
		"ws://127.0.0.1:x/mqtt":               "error: --addr",
		"http://127.0.0.1:8083/mqtt":          "error: is not HOST:PORT",
	} {
		got, err := ParseAddrs(in)
		if msg, ok := strings.CutPrefix(want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), msg) {
				t.Errorf("ParseAddrs(%q) = %v, %v; want an error saying %s", in, got, err, msg)
			}
		} else if err != nil || fmt.Sprint(got) != want {
			t.Errorf("ParseAddrs(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

// connectRecorder records which listener each client connected on.
type connectRecorder struct {
	mqtt.HookBase
	mu   sync.Mutex
	seen map[string]string // client ID: listener ID
}

func (h *connectRecorder) ID() string { return "recorder" }

func (h *connectRecorder) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *connectRecorder) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	h.mu.Lock()
	h.seen[cl.ID] = cl.Net.Listener
	h.mu.Unlock()
	return nil
}

func (h *connectRecorder) take() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := maps.Clone(h.seen)
	clear(h.seen)
	return m
}

// startNodes runs one plain broker listening on n loopback ports, which
// stand for n nodes of one service: a message published on one reaches
// subscribers on every other. It records the listener ("n0", "n1", ...)
// each client connected on.
func startNodes(t *testing.T, n int) ([]string, *connectRecorder) {
	t.Helper()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	rec := &connectRecorder{seen: make(map[string]string)}
	if err := s.AddHook(rec, nil); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddListener(&plainListener{Net: listeners.NewNet(fmt.Sprintf("n%d", i), ln), clients: s.Clients}); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return addrs, rec
}

// Runs over three nodes put each connection where nodeFor says, and count
// every message that crossed between them.
func TestRunSpreadsOverNodes(t *testing.T) {
	addrs, rec := startNodes(t, 3)
	base := Config{Addrs: addrs, Plain: true, Messages: 200, Duration: 10 * time.Second, QoS: 1}
	for _, tc := range []struct {
		scenario string
		clients  int
		want     map[string]string
		expected int64
	}{
		{"fanin", 4, map[string]string{"bench-pub-0": "n0", "bench-pub-1": "n1", "bench-pub-2": "n2", "bench-pub-3": "n0",
			"bench-count": "n2"}, 200},
		{"fanout", 4, map[string]string{"bench-pub-0": "n0", "bench-sub-0": "n1", "bench-sub-1": "n2", "bench-sub-2": "n1",
			"bench-sub-3": "n2"}, 800},
		{"latency", 1, map[string]string{"bench-pub-0": "n0", "bench-lat": "n2"}, 200},
		{"idle", 5, map[string]string{"bench-idle-0": "n0", "bench-idle-1": "n1", "bench-idle-2": "n2", "bench-idle-3": "n0",
			"bench-idle-4": "n1"}, 0},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			cfg := base
			cfg.Scenario, cfg.Clients = tc.scenario, tc.clients
			if tc.scenario == "latency" {
				cfg.Rate = 2000
			}
			if tc.scenario == "idle" {
				cfg.Duration = 100 * time.Millisecond
			}
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Nodes != 3 || r.Addr != strings.Join(addrs, ",") || r.Errors != 0 {
				t.Fatalf("%+v", r)
			}
			if tc.scenario == "idle" {
				if r.Acked != 5 {
					t.Fatalf("%+v", r)
				}
			} else if r.Sent != 200 || r.Acked != 200 || r.Delivered != tc.expected || r.Expected != tc.expected {
				t.Fatalf("%+v", r)
			}
			if got := rec.take(); !maps.Equal(got, tc.want) {
				t.Fatalf("connections by node %v, want %v", got, tc.want)
			}
		})
	}
	// connect: the workers take turns over the nodes.
	r, err := Run(context.Background(), Config{Scenario: "connect", Addrs: addrs, Plain: true, Clients: 3, Messages: 30,
		Duration: 10 * time.Second})
	if err != nil || r.Acked != 30 {
		t.Fatalf("%+v, %v", r, err)
	}
	if got, want := rec.take(), map[string]string{"bench-conn-0": "n0", "bench-conn-1": "n1", "bench-conn-2": "n2"}; !maps.Equal(got, want) {
		t.Fatalf("connect workers by node %v, want %v", got, want)
	}
}

// ParseAddrs never panics, and what it accepts is a list of distinct
// HOST:PORT addresses (or ws:// URLs of one) without blanks, ports 1 to
// 65535, one per comma.
func FuzzParseAddrs(f *testing.F) {
	for _, s := range []string{"127.0.0.1:1883", "127.0.0.1:1883,127.0.0.1:1884", " [::1]:1 , h:2", ",", "a:1,a:1", "h:0", "h:65536", "[::1]", "", "ws://h:1/mqtt", "ws://[::1]/x,h:2", "wss://h:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addrs, err := ParseAddrs(s)
		if err != nil {
			if addrs != nil {
				t.Fatalf("%q: addresses %v with error %v", s, addrs, err)
			}
			return
		}
		if len(addrs) != strings.Count(s, ",")+1 {
			t.Fatalf("%q: %d addresses", s, len(addrs))
		}
		seen := make(map[string]bool)
		for _, a := range addrs {
			_, port, err := net.SplitHostPort(hostPort(a))
			p, perr := strconv.Atoi(port)
			if err != nil || perr != nil || p < 1 || p > 65535 || a != strings.TrimSpace(a) || seen[a] {
				t.Fatalf("%q: accepted %q", s, a)
			}
			seen[a] = true
		}
	})
}
