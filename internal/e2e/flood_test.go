package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

// The flood tests attack a real `feedmq serve` (the build as shipped, no
// race detector) and bound its resident memory, read from /proc: during
// each flood the server grows by less than its limits' peak, and once the
// attacker leaves it holds no more than their settle over its baseline.
// Go returns freed memory to the system lazily (an idle server may not
// collect for two minutes), so settle checks that nothing the flood built
// up is kept, not that every page went back.

// floodLimits bounds a flood: RSS growth while it runs and for hold after
// the attack returns (peak), and what may remain 30 s after the attacker
// left (settle).
type floodLimits struct {
	peak, settle int64
	hold         time.Duration
}

// defaultFlood is the bound: less than 64 MiB during a flood and
// after it.
var defaultFlood = floodLimits{peak: 64 << 20, settle: 64 << 20, hold: time.Second}

// floodServe starts serve on data with MQTT and HTTP on loopback port 0
// and the WebSocket listener off, plus args.
func floodServe(t *testing.T, data string, args ...string) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("floods a real server")
	}
	return startServeWith(t, plainBuild, data, append([]string{"--mqtt", "127.0.0.1:0", "--ws", "off",
		"--http", "127.0.0.1:0"}, args...)...)
}

// measureFlood runs attack (which returns once it has sent its flood,
// leaving its connections open; it must not call t.Fatal) and samples the
// server's RSS until lim.hold after it returned; then it calls leave,
// which closes the attacker's connections, and waits for RSS to settle.
// It fails when the peak grows lim.peak over the baseline or RSS does not
// come back within lim.settle of it in 30 s.
func measureFlood(t *testing.T, s *server, lim floodLimits, attack func(), leave func()) {
	t.Helper()
	base := settledRSS(t, s)
	peak := base
	done := make(chan struct{})
	go func() {
		defer close(done)
		attack()
	}()
	sample := func() {
		if r := s.rss(t); r > peak {
			peak = r
		}
	}
	func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	for end := time.Now().Add(lim.hold); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		sample()
	}
	leave()
	after := s.rss(t)
	for deadline := time.Now().Add(30 * time.Second); after-base >= lim.settle && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		after = s.rss(t)
	}
	t.Logf("server RSS: baseline %.1f MiB, peak %.1f MiB (+%.1f), after the attacker left %.1f MiB",
		mib(base), mib(peak), mib(peak-base), mib(after))
	if peak-base >= lim.peak {
		t.Errorf("RSS grew by %.1f MiB during the flood (bound %.0f MiB)", mib(peak-base), mib(lim.peak))
	}
	if after-base >= lim.settle {
		t.Errorf("RSS still %.1f MiB over the baseline 30 s after the attacker left (bound %.0f MiB)",
			mib(after-base), mib(lim.settle))
	}
}

// settledRSS returns the server's RSS once it stops changing much.
func settledRSS(t *testing.T, srv *server) int64 {
	t.Helper()
	prev := srv.rss(t)
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		r := srv.rss(t)
		if d := r - prev; d < 256<<10 && d > -(256<<10) {
			return r
		}
		prev = r
	}
	return prev
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// conns collects an attacker's connections so leave can close them.
type conns struct {
	mu sync.Mutex
	cs []net.Conn
}

func (c *conns) add(n net.Conn) {
	c.mu.Lock()
	c.cs = append(c.cs, n)
	c.mu.Unlock()
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.cs {
		_ = n.Close()
	}
	c.cs = nil
}

// TestTopicAliasFlood: one anonymous MQTT 5 connection sends 6000 QoS 0
// publishes, each with topic alias i and a 60 KB topic. The server must
// neither keep them as aliases nor grow.
func TestTopicAliasFlood(t *testing.T) {
	s := floodServe(t, t.TempDir())
	var att conns
	measureFlood(t, s, defaultFlood, func() {
		c, err := mqtttest.Dial(s.addr)
		if err != nil {
			t.Error(err)
			return
		}
		att.add(c)
		if code, err := c.Connect(mqtttest.Connect{ClientID: "alias-flood", Clean: true, Version: 5}); err != nil || code != 0 {
			t.Errorf("CONNACK %#x %v", code, err)
			return
		}
		topic := "channels/1/publish/" + strings.Repeat("A", 60000)
		for i := 1; i <= 6000; i++ {
			body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
			body = append(body, topic...)
			body = append(body, 3, 0x23, byte(i>>8), byte(i)) // Topic Alias i
			body = append(body, "field1=1"...)
			if _, err := c.Write(mqtttest.Packet(0x30, body)); err != nil {
				return // refused and closed: that is the point
			}
		}
	}, att.closeAll)
}

// TestPreConnectHeaderFlood: 2000 sockets each send only a fixed header
// declaring a 65,530-byte CONNECT, and wait. mochi allocated the 64 KiB
// of each as soon as it read the header. A socket that has not connected
// yet may cost its goroutine and read buffer, about 10 KiB: 2000 of them
// stay under 24 MiB.
func TestPreConnectHeaderFlood(t *testing.T) {
	preConnectHeaderFlood(t, []byte{0x10, 0xFA, 0xFF, 0x03})
}

// TestPreConnectPaddedHeaderFlood: the same flood with the length padded
// to five bytes (E8 FB 83 80 00: 65,000, which mochi decodes and
// allocates) grew RSS by 40.7 MiB; it must stay bounded as well.
func TestPreConnectPaddedHeaderFlood(t *testing.T) {
	preConnectHeaderFlood(t, []byte{0x10, 0xE8, 0xFB, 0x83, 0x80, 0x00})
}

func preConnectHeaderFlood(t *testing.T, header []byte) {
	s := floodServe(t, t.TempDir())
	var att conns
	measureFlood(t, s, floodLimits{peak: 24 << 20, settle: defaultFlood.settle, hold: time.Second}, func() {
		for i := 0; i < 2000; i++ {
			c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
			if err != nil {
				t.Errorf("socket %d: %v", i, err)
				return
			}
			att.add(c)
			if _, err := c.Write(header); err != nil {
				t.Errorf("socket %d: %v", i, err)
				return
			}
		}
	}, att.closeAll)
}

// TestLogFlood: what an attacker sends ends up in the log cut short,
// without API keys, and at a bounded rate. 500 anonymous CONNECTs with
// 60,000-byte client IDs (refused before CONNECT) and 500 with 8,000-byte
// ones (served), 500 refused MQTT 5 QoS 1 publishes with 60 KB payloads
// on a topic carrying the write key, and refused filters carrying the
// read key grow the log by less than 1 MiB, and no key appears in it.
func TestLogFlood(t *testing.T) {
	data := t.TempDir()
	s := floodServe(t, data)
	var ch struct {
		ID       uint64 `json:"id"`
		WriteKey string `json:"write_api_key"`
		ReadKey  string `json:"read_api_key"`
	}
	cli(t, data, &ch, "channel", "create", "--name", "logs", "--field", "1=T", "--json")
	before := len(s.logs.String())

	var wg sync.WaitGroup
	for _, idLen := range []int{60000, 8000} {
		for i := 0; i < 500; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := mqtttest.Dial(s.addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				id := fmt.Sprintf("%05d%s%s", i, ch.WriteKey, strings.Repeat("x", idLen))
				_, _ = c.Connect(mqtttest.Connect{ClientID: id, Clean: true, Version: 5})
			}()
		}
		wg.Wait()
	}

	c, err := mqtttest.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, err := c.Connect(mqtttest.Connect{ClientID: "flood-" + ch.ReadKey, Clean: true, Version: 5}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	topic := fmt.Sprintf("channels/%d/publish/%s", ch.ID, ch.WriteKey)
	payload := []byte("field1=" + strings.Repeat("9", 60000))
	go func() {
		for i := 1; i <= 500; i++ {
			if err := c.Publish(topic, 1, uint16(i), payload); err != nil {
				return
			}
		}
	}()
	for i := 1; i <= 500; i++ {
		if _, code, err := c.ReadPuback(); err != nil || code < 0x80 {
			t.Fatalf("publish %d: PUBACK %#x %v", i, code, err)
		}
	}
	for i, f := range []string{
		fmt.Sprintf("channels/%d/subscribe/%s", ch.ID, ch.ReadKey),
		fmt.Sprintf("channels/%d/subscribe/json/%sX", ch.ID, ch.ReadKey),
		fmt.Sprintf("channels/%d/publish/%s", ch.ID, ch.WriteKey),
	} {
		if code, err := c.Subscribe(uint16(i+1), f); err != nil || code < 0x80 {
			t.Fatalf("SUBSCRIBE %s: SUBACK %#x %v", f, code, err)
		}
	}
	c.Close()
	// The refused publishes are logged (the first one at least).
	if !s.logs.waitFor("publish rejected", 10*time.Second) {
		t.Fatalf("no rejection logged:\n%s", s.logs.String()[before:])
	}
	logs := s.logs.String()[before:]
	t.Logf("the flood grew the log by %d bytes", len(logs))
	if len(logs) >= 1<<20 {
		t.Errorf("the flood grew the log by %.1f MiB", mib(int64(len(logs))))
	}
	for _, key := range []string{ch.WriteKey, ch.ReadKey} {
		if strings.Contains(logs, key) {
			i := strings.Index(logs, key)
			t.Errorf("the log shows a key: ...%s...", logs[max(0, i-200):min(len(logs), i+50)])
		}
	}
}

// TestSlowSubscribers: 200 subscribers that never read while a device
// publishes 1500 entries of 2 KB. Each one held up to 2 MiB in the
// server, with no cap over all of them.
func TestSlowSubscribers(t *testing.T) {
	data := t.TempDir()
	s := floodServe(t, data)
	var ch struct {
		ID       uint64 `json:"id"`
		WriteKey string `json:"write_api_key"`
	}
	cli(t, data, &ch, "channel", "create", "--name", "slow", "--public", "--json")
	filter := fmt.Sprintf("channels/%d/subscribe", ch.ID)
	var subs conns
	for i := 0; i < 200; i++ {
		// A small receive buffer, so that the kernel holds little of
		// what the server sends.
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		nc, err := d.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		subs.add(nc)
		c := mqtttest.Wrap(nc)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if code, err := c.Connect(mqtttest.Connect{ClientID: fmt.Sprintf("slow%d", i), Clean: true, Keepalive: 600}); err != nil || code != 0 {
			t.Fatalf("CONNACK %#x %v", code, err)
		}
		if code, err := c.Subscribe(1, filter); err != nil || code != 0 {
			t.Fatalf("SUBACK %#x %v", code, err)
		}
	}
	pub, err := mqtttest.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if code, err := pub.Connect(mqtttest.Connect{ClientID: "pub", Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}
	topic := fmt.Sprintf("channels/%d/publish/%s", ch.ID, ch.WriteKey)
	var fields []string
	for n := 1; n <= 8; n++ {
		fields = append(fields, fmt.Sprintf("field%d=%s", n, strings.Repeat("7", 255)))
	}
	payload := []byte(strings.Join(fields, "&"))
	measureFlood(t, s, defaultFlood, func() {
		_ = pub.SetDeadline(time.Now().Add(60 * time.Second))
		for i := 1; i <= 1500; i++ {
			if err := pub.Publish(topic, 1, uint16(i), payload); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			if _, code, err := pub.ReadPuback(); err != nil || code != 0 {
				t.Errorf("publish %d: PUBACK %#x %v", i, code, err)
				return
			}
		}
	}, subs.closeAll)
}

// TestDefaultConnectionCap: serve caps MQTT connections by default
// (max_connections: 1000), so a connection flood meets a limit without
// any configuration.
func TestDefaultConnectionCap(t *testing.T) {
	s := floodServe(t, t.TempDir())
	var cs conns
	defer cs.closeAll()
	for i := 0; i < 1000; i++ {
		c, err := mqtttest.Dial(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		cs.add(c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if code, err := c.Connect(mqtttest.Connect{ClientID: fmt.Sprintf("c%d", i), Clean: true, Keepalive: 600}); err != nil || code != 0 {
			t.Fatalf("connection %d: CONNACK %#x %v", i+1, code, err)
		}
	}
	c, err := mqtttest.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	cs.add(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if code, err := c.Connect(mqtttest.Connect{ClientID: "one-too-many", Clean: true}); err != nil || code != 0x03 {
		t.Fatalf("connection 1001: CONNACK %#x %v, want 0x03 (server unavailable)", code, err)
	}
}
