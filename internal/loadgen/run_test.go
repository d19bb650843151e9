package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// startPlainBroker runs a bare mochi broker that allows everything on a
// free loopback port, standing in for Mosquitto in --plain runs.
func startPlainBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(&plainListener{Net: listeners.NewNet("t", ln), clients: s.Clients}); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// plainListener is mochi's TCP listener with a shutdown that cannot hang.
// mochi's own CloseFn lists the clients with Clients.GetByListener, which
// read-locks the client table twice; a client ending in between (its
// Clients.Delete waiting for the write lock) blocks the second read lock
// and Close for good (mochi v2.7.9). It hung this package's tests in CI.
// GetAll locks once. The broker's own listeners do the same (broker
// package, disconnectClients).
type plainListener struct {
	*listeners.Net
	clients *mqtt.Clients
}

func (l *plainListener) Close(listeners.CloseFn) {
	l.Net.Close(func(id string) {
		for _, cl := range l.clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				cl.Stop(packets.ErrServerShuttingDown)
			}
		}
	})
}

// Each scenario runs briefly in --plain mode, and its counts agree.
func TestRunPlain(t *testing.T) {
	addr := startPlainBroker(t)
	base := Config{Addr: addr, Plain: true, Messages: 300, Duration: 5 * time.Second, PID: os.Getpid()}
	run := func(t *testing.T, mod func(*Config)) *Result {
		t.Helper()
		cfg := base
		mod(&cfg)
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 || res.Broker != "plain" || res.Scenario != cfg.Scenario {
			t.Fatalf("%+v", res)
		}
		if res.CPUSeconds == nil || res.RSSBytes <= 0 {
			t.Fatalf("no CPU or RSS with a PID: %+v", res)
		}
		return res
	}
	t.Run("FaninQoS1", func(t *testing.T) {
		r := run(t, func(c *Config) { c.Scenario, c.Clients, c.QoS = "fanin", 3, 1 })
		if r.Sent != 300 || r.Acked != r.Sent || r.Delivered != r.Sent || r.Expected != r.Sent {
			t.Fatalf("%+v", r)
		}
		if r.Latency == nil || r.Latency.Samples != int(r.Delivered) {
			t.Fatalf("latency %+v", r.Latency)
		}
	})
	t.Run("FaninQoS0", func(t *testing.T) {
		r := run(t, func(c *Config) { c.Scenario, c.Clients, c.Rate = "fanin", 3, 2000 })
		if r.Sent != 300 || r.Acked != 0 || r.Delivered > r.Sent || r.Delivered == 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("FanoutQoS1", func(t *testing.T) {
		r := run(t, func(c *Config) { c.Scenario, c.Clients, c.QoS = "fanout", 4, 1 })
		if r.Sent != 300 || r.Acked != 300 || r.Expected != 1200 || r.Delivered != r.Expected {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("Latency", func(t *testing.T) {
		r := run(t, func(c *Config) { c.Scenario, c.Rate, c.Messages, c.QoS = "latency", 500, 100, 1 })
		if r.Sent != 100 || r.Delivered != 100 || r.Latency == nil || r.Latency.Samples != 100 || r.Clients != 1 {
			t.Fatalf("%+v", r)
		}
		if r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.P999 || r.Latency.P999 > r.Latency.Max {
			t.Fatalf("percentiles out of order: %+v", r.Latency)
		}
	})
	t.Run("Connect", func(t *testing.T) {
		r := run(t, func(c *Config) { c.Scenario, c.Clients, c.Messages = "connect", 2, 50 })
		if r.Sent != 50 || r.Acked != 50 || r.Latency == nil || r.Latency.Samples != 50 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("Idle", func(t *testing.T) {
		r := run(t, func(c *Config) { c.Scenario, c.Clients, c.Duration = "idle", 20, 3*time.Second })
		if r.Sent != 20 || r.Acked != 20 {
			t.Fatalf("%+v", r)
		}
	})
}

// A run ends at its duration even when the count is far away.
func TestRunBoundedByTime(t *testing.T) {
	addr := startPlainBroker(t)
	start := time.Now()
	r, err := Run(context.Background(), Config{Scenario: "latency", Addr: addr, Plain: true, Messages: 1 << 40,
		Duration: 300 * time.Millisecond, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent == 0 || r.Sent > 1000 || time.Since(start) > 20*time.Second {
		t.Fatalf("sent %d in %v", r.Sent, time.Since(start))
	}
}

func TestRunConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no clients":     {Scenario: "fanin", Plain: true, Messages: 1, Duration: time.Second},
		"qos 2":          {Scenario: "fanin", Plain: true, Clients: 1, QoS: 2, Messages: 1, Duration: time.Second},
		"no duration":    {Scenario: "fanin", Plain: true, Clients: 1, Messages: 1},
		"no messages":    {Scenario: "fanin", Plain: true, Clients: 1, Duration: time.Second},
		"no provisioner": {Scenario: "fanin", Clients: 1, Messages: 1, Duration: time.Second},
		"latency rate":   {Scenario: "latency", Plain: true, Clients: 1, Messages: 1, Duration: time.Second},
		"unknown":        {Scenario: "bogus", Plain: true, Clients: 1, Messages: 1, Duration: time.Second},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Connections to a loopback address are spread round robin over
// 127.0.0.2 and up, never more than perSource on one; other addresses get
// no source address.
func TestSourceAddrs(t *testing.T) {
	for _, tc := range []struct {
		addr         string
		n, perSource int
		want         int // source addresses; 0 for none
	}{
		{"127.0.0.1:1883", 100000, 14116, 8},
		{"127.0.0.1:1883", 14116, 14116, 1},
		{"127.0.0.1:1883", 14117, 14116, 2},
		{"127.0.0.1:1883", 1, 14116, 1},
		{"127.1.2.3:1883", 5, 2, 3},
		{"10.0.0.1:1883", 100000, 14116, 0},
		{"[::1]:1883", 100000, 14116, 0},
		{"localhost:1883", 100000, 14116, 0},
	} {
		srcs, err := sourceAddrs(tc.addr, tc.n, tc.perSource)
		if err != nil || len(srcs) != tc.want {
			t.Errorf("sourceAddrs(%s, %d, %d) = %v, %v; want %d addresses", tc.addr, tc.n, tc.perSource, srcs, err, tc.want)
			continue
		}
		per := make(map[string]int)
		for i := range tc.n {
			if len(srcs) > 0 {
				per[srcs[i%len(srcs)].IP.String()]++
			}
		}
		for i, s := range srcs {
			if want := fmt.Sprintf("127.0.0.%d", 2+i); s.IP.String() != want || s.Port != 0 {
				t.Errorf("%s: source %d is %v, want %s:0", tc.addr, i, s, want)
			}
			if got := per[s.IP.String()]; got > tc.perSource || got == 0 {
				t.Errorf("%s: %d connections from %v (at most %d)", tc.addr, got, s.IP, tc.perSource)
			}
		}
	}
	if _, err := sourceAddrs("127.0.0.1:1883", 254*10, 10); err == nil {
		t.Error("254 source addresses accepted")
	}
	if srcs, err := sourceAddrs("127.0.0.1:1883", 100, 0); err != nil || len(srcs) != 1 {
		t.Errorf("default ports per source: %v, %v", srcs, err)
	}
}

// acceptConnack accepts connections on a loopback port, answers each
// CONNECT with a CONNACK and counts them by remote address.
func acceptConnack(t *testing.T) (addr string, from func() map[string]int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := make(map[string]int)
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p, _, err := ReadPacket(bufio.NewReader(c), nil)
			if err != nil || p.Type != typeConnect {
				c.Close()
				continue
			}
			if _, err := c.Write([]byte{typeConnack << 4, 2, 0, 0}); err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			seen[c.RemoteAddr().(*net.TCPAddr).IP.String()]++
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

// An idle run against 127.0.0.1 connects from 127.0.0.2 and up, as many
// from each as PerSource allows.
func TestIdleSpreadsSources(t *testing.T) {
	addr, from := acceptConnack(t)
	// The run holds its connections until the broker has seen all seven.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for n := 0; n < 7; time.Sleep(10 * time.Millisecond) {
			n = 0
			for _, c := range from() {
				n += c
			}
		}
		cancel()
	}()
	r, err := Run(ctx, Config{Scenario: "idle", Addr: addr, Plain: true, Clients: 7, PerSource: 2,
		Messages: 1, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 7 || r.Acked != 7 || r.Errors != 0 || r.FirstError != "" {
		t.Fatalf("%+v", r)
	}
	got := from()
	want := map[string]int{"127.0.0.2": 2, "127.0.0.3": 2, "127.0.0.4": 2, "127.0.0.5": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("connections by source address %v, want %v", got, want)
	}
}

// More connections than any process may open are refused before the run,
// with what to do about it.
func TestRunFileLimit(t *testing.T) {
	_, err := Run(context.Background(), Config{Scenario: "idle", Addr: "127.0.0.1:1", Plain: true, Clients: math.MaxInt32,
		Messages: 1, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "open files") || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("got %v", err)
	}
}

// After every connect failed, FirstError says why.
func TestIdleFirstError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	r, err := Run(context.Background(), Config{Scenario: "idle", Addr: addr, Plain: true, Clients: 3,
		Messages: 1, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Acked != 0 || r.Sent == 0 || r.Errors != r.Sent || !strings.Contains(r.FirstError, "refused") {
		t.Fatalf("%+v", r)
	}
}

// freeProvisioner hands out anonymous options and records what a run
// asked for.
type freeProvisioner struct {
	mu       sync.Mutex
	free     []string // name pattern
	channels int
}

func (p *freeProvisioner) Channel(context.Context, string) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.channels++
	return 0, fmt.Errorf("a free run asked for a channel")
}

func (p *freeProvisioner) Device(context.Context, string, uint64) (Options, error) {
	return Options{}, fmt.Errorf("a free run asked for a channel device")
}

func (p *freeProvisioner) FreeDevice(_ context.Context, name, pattern string) (Options, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, name+" "+pattern)
	return Options{ClientID: name}, nil
}

func (p *freeProvisioner) AllowAnonymousRead(_ context.Context, pattern string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, "anonymous "+pattern)
	return nil
}

// A free run provisions a device allowed to write bench/# for every
// publisher, lets anonymous subscribers read bench/#, and makes no
// channel; its messages travel on bench/<scenario>/<n> (the subscribers'
// filters), so every one arrives.
func TestRunFree(t *testing.T) {
	addr := startPlainBroker(t)
	for _, tc := range []struct {
		scenario string
		clients  int
		want     []string
		expected int64
	}{
		{"fanin", 3, []string{"anonymous bench/#", "bench-fanin-0 bench/#", "bench-fanin-1 bench/#", "bench-fanin-2 bench/#"}, 150},
		{"fanout", 2, []string{"anonymous bench/#", "bench-fanout-0 bench/#"}, 300},
		{"latency", 1, []string{"anonymous bench/#", "bench-latency-0 bench/#"}, 150},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			p := new(freeProvisioner)
			r, err := Run(context.Background(), Config{Scenario: tc.scenario, Addr: addr, Free: true, Provisioner: p,
				Clients: tc.clients, QoS: 1, Messages: 150, Duration: 10 * time.Second, Rate: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Free || r.Broker != "feedmq" || r.Sent != 150 || r.Acked != 150 || r.Expected != tc.expected || r.Delivered != tc.expected {
				t.Fatalf("%+v", r)
			}
			slices.Sort(p.free)
			if !slices.Equal(p.free, tc.want) || p.channels != 0 {
				t.Fatalf("provisioned %v and %d channels, want %v", p.free, p.channels, tc.want)
			}
		})
	}
	if _, err := Run(context.Background(), Config{Scenario: "connect", Addr: addr, Free: true, Provisioner: new(freeProvisioner),
		Clients: 1, Messages: 1, Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "--free applies to") {
		t.Fatalf("--free with connect: %v", err)
	}
}
