package loadgen

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// stallHook holds every publish while the "database" is down, as a node
// whose commits wait for the database does.
type stallHook struct {
	mqtt.HookBase
	down *sync.RWMutex
}

func (h *stallHook) ID() string           { return "stall" }
func (h *stallHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *stallHook) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.down.RLock() // waits while the database is down
	h.down.RUnlock()
	return pk, nil
}

// startStallBroker runs a plain broker whose publishes wait while down is
// write-locked, and returns its address and a function that kills it.
func startStallBroker(t *testing.T, down *sync.RWMutex) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddHook(&stallHook{down: down}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(&plainListener{Net: listeners.NewNet("t", ln), clients: s.Clients}); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { s.Close() }) }
	t.Cleanup(kill)
	return ln.Addr().String(), kill
}

// Devices publish through the proxy to three brokers; the second is
// killed: exactly its devices move to the others and publish again there.
// Then the "database" stops answering for 300 ms: every device resumes,
// and each saw a pause at least that long.
func TestFailover(t *testing.T) {
	var down sync.RWMutex
	var addrs []string
	var kills []func()
	for range 3 {
		a, k := startStallBroker(t, &down)
		addrs, kills = append(addrs, a), append(kills, k)
	}
	const outage = 300 * time.Millisecond
	killed := -1
	cfg := Config{Scenario: "failover", Addrs: addrs, Plain: true, Clients: 6, Rate: 6 * 50, Messages: 1, Duration: 20 * time.Second,
		Kill: 2, KillNode: func(i int) error { killed = i; kills[i](); return nil },
		RestartDB: func(context.Context) error {
			down.Lock()
			time.Sleep(outage)
			down.Unlock()
			return nil
		}}
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := r.Failover
	if f == nil || f.Kill == nil || f.DB == nil || killed != 1 {
		t.Fatalf("%+v (killed %d)", r, killed)
	}
	t.Logf("kill %+v; database %+v; %d disconnects", *f.Kill, *f.DB, f.Disconnects)
	k := f.Kill
	if k.Node != 2 || k.Addr != addrs[1] || k.Devices != 2 || k.Recovered != 2 {
		t.Fatalf("kill: %+v", k)
	}
	if k.ReconnectMax <= 0 || k.ReconnectP50 > k.ReconnectMax || k.RecoverMax < k.ReconnectMax || k.RecoverP50 > k.RecoverMax {
		t.Fatalf("kill times out of order: %+v", k)
	}
	if f.Disconnects != 2 {
		t.Fatalf("%d disconnects, want the killed node's 2", f.Disconnects)
	}
	db := f.DB
	if db.Resumed != 6 || db.Restart < ms(outage) || db.GapMax < ms(outage)-50 || db.GapP50 > db.GapMax || db.ResumeP50 > db.ResumeMax {
		t.Fatalf("db: %+v", db)
	}
	if r.Sent == 0 || r.Acked == 0 || r.Acked > r.Sent || f.Devices != 6 || f.RatePerDevice != 50 || !strings.HasPrefix(f.Proxy, "127.0.0.1:") {
		t.Fatalf("%+v %+v", r, f)
	}
}

func TestFailoverConfigErrors(t *testing.T) {
	kill := func(int) error { return nil }
	two := []string{"127.0.0.1:1", "127.0.0.1:2"}
	for want, cfg := range map[string]Config{
		"failover needs a node to kill":   {Addrs: two},
		"--kill 3: there are 2 nodes":     {Addrs: two, Kill: 3, KillNode: kill},
		"--kill needs at least two nodes": {Addr: "127.0.0.1:1", Kill: 1, KillNode: kill},
		"--kill needs the nodes' process": {Addrs: two, Kill: 1},
	} {
		cfg.Scenario, cfg.Plain, cfg.Clients, cfg.Messages, cfg.Duration = "failover", true, 1, 1, time.Second
		if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}
