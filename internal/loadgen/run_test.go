package loadgen

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
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
	if err := s.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
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
