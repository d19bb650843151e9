package broker_test

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestHostileInput throws malformed and abusive traffic at the broker and
// checks that each bad connection is dealt with alone: the broker keeps
// serving a well-behaved device, stores nothing bad, and its goroutines
// come back down.
func TestHostileInput(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, MaxPacketSize: 16 << 10, Logger: quietLogger(),
		ConnectTimeout: time.Second})
	ch := ts.channel(false)
	dev := ts.device(pubsub(ch))
	good := rawDevice(t, ts.addr, dev, 4)
	if code, _ := good.Subscribe(1, fmt.Sprintf("channels/%d/subscribe", ch)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	base := runtime.NumGoroutine()
	heapBefore := heapInUse()
	connect := mqtttest.Connect{ClientID: "x", Clean: true}.Encode()
	topic := fmt.Sprintf("channels/%d/publish", ch)

	withConnect := func(b []byte) []byte { return append(append([]byte{}, connect...), b...) }
	// Broken streams must be closed; well-formed but unacceptable publishes
	// are dropped and the connection stays (MQTT 3.1.1, QoS 0).
	closes := map[string][]byte{
		"garbage first packet":    []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"truncated CONNECT":       connect[:len(connect)-3],
		"bad remaining length":    {0x10, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"CONNECT then garbage":    withConnect([]byte{0xf0, 0x00, 0xde, 0xad}),
		"oversized packet":        withConnect(publishPacket(topic, strings.Repeat("x", 20<<10))),
		"invalid UTF-8 topic":     withConnect(publishPacket("channels/\xff\xfe/publish", "field1=1")),
		"NUL in topic":            withConnect(publishPacket("channels/1\x00/publish", "field1=1")),
		"second CONNECT":          withConnect(connect),
		"subscribe with no topic": withConnect([]byte{0x82, 0x02, 0x00, 0x01}),
	}
	for name, b := range closes {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write(b)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			for {
				_, err := c.Read(buf)
				if err == nil {
					continue
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("connection still open after a broken stream")
				}
				break
			}
		})
	}
	dropped := map[string]string{
		"10k-level topic":  strings.Repeat("a/", 5000) + "b",
		"percent garbage":  "field1=%%%zz%",
		"huge field value": "field1=" + strings.Repeat("9", 2900),
		"unknown channel":  "channels/999999/publish",
	}
	anon := rawAnonymous(t, ts.addr, "hostile")
	for name, p := range dropped {
		tp, payload := topic, p
		if !strings.HasPrefix(p, "field1") {
			tp, payload = p, "field1=1"
		}
		if err := anon.Publish(tp, 0, 0, []byte(payload)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if code, err := anon.Subscribe(9, "x"); err != nil || code != 0x80 {
		t.Fatalf("connection did not survive dropped publishes: SUBACK %#x %v", code, err)
	}

	// A flood of CONNECTs with bad passwords and of half-open connections.
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mqtttest.Dial(ts.addr)
			if err != nil {
				return
			}
			defer c.Close()
			if i%2 == 0 {
				_, _ = c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
					Password: "wrong", Clean: true})
				return
			}
			time.Sleep(1500 * time.Millisecond) // never sends CONNECT
		}()
	}
	wg.Wait()

	// The good device still publishes and receives, and nothing bad was
	// stored.
	if err := good.Publish(topic, 1, 2, []byte("field1=ok")); err != nil {
		t.Fatal(err)
	}
	// The PUBACK and the fanned-out entry may come in either order.
	_ = good.SetReadDeadline(time.Now().Add(5 * time.Second))
	for seen := 0; seen != 3; {
		typ, body, err := good.ReadPacket()
		switch {
		case err != nil:
			t.Fatalf("good device: %v", err)
		case typ == mqtttest.PUBACK:
			seen |= 1
		case typ == mqtttest.PUBLISH && strings.Contains(string(body), `"field1":"ok"`):
			seen |= 2
		default:
			t.Fatalf("good device got packet type %d: %q", typ, body)
		}
	}
	if es := ts.entries(ch); len(es) != 1 {
		t.Fatalf("stored %d entries, want only the good one:\n%s", len(es), joinLines(es))
	}
	// Memory stays bounded: what the abuse left behind is freed with its
	// connections (the throttle keeps a few bytes per address).
	if grown := heapInUse() - heapBefore; grown > 16<<20 {
		t.Errorf("heap grew by %d MiB after the hostile traffic", grown>>20)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+10 {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d, started with %d", runtime.NumGoroutine(), base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publishPacket encodes a QoS 0 PUBLISH.
func publishPacket(topic, payload string) []byte {
	return mqtttest.PublishPacket(topic, []byte(payload))
}

// heapInUse returns the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestSlowlorisWebSocketUpgrade: clients that dribble out an HTTP upgrade
// request are closed after the CONNECT timeout and hold nothing up.
func TestSlowlorisWebSocketUpgrade(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true, WSAddr: "127.0.0.1:0", ConnectTimeout: time.Second,
		Logger: quietLogger()})
	addr := ts.addrOf("ws")
	req := "GET /mqtt HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	var wg sync.WaitGroup
	closed := make(chan time.Duration, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			start := time.Now()
			for i := 0; i < len(req); i++ {
				if _, err := c.Write([]byte{req[i]}); err != nil {
					closed <- time.Since(start)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	// Meanwhile a device on TCP is served as usual.
	good := rawAnonymous(t, ts.addr, "good")
	if code, err := good.Subscribe(1, "x"); err != nil || code != 0x80 {
		t.Fatalf("good client: %#x %v", code, err)
	}
	wg.Wait()
	close(closed)
	n := 0
	for d := range closed {
		n++
		if d > 5*time.Second {
			t.Errorf("a slow upgrade was cut only after %v", d)
		}
	}
	if n != 20 {
		t.Fatalf("%d of 20 slow upgrades were cut off; the rest could send their whole request", n)
	}
}
