package e2e

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestSubscribeFlood: one anonymous connection sends 5000 SUBSCRIBEs of
// distinct 60 KB all-digit filters (channels/<60000 digits>/+), then 5000
// of distinct short valid ones (+/<n>/subscribe), without waiting for the
// SUBACKs. The server must refuse the first kind (no channel ID has 60000
// digits) and grant at most limits.max_subscriptions_per_client of the
// second, so its RSS stays within 64 MiB of the baseline during the flood
// and falls back after the attacker leaves.
func TestSubscribeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test")
	}
	data := t.TempDir()
	srv := startServeWith(t, plainBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0")
	base := settledRSS(t, srv)

	c, err := mqtttest.Dial(srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, err := c.Connect(mqtttest.Connect{ClientID: "flood", Clean: true}); err != nil || code != 0 {
		t.Fatalf("CONNACK %#x %v", code, err)
	}

	const n = 5000
	var acks, granted atomic.Int64
	readDone := make(chan error, 1)
	go func() {
		for acks.Load() < 2*n {
			typ, body, err := c.ReadPacket()
			if err != nil {
				readDone <- err
				return
			}
			if typ == mqtttest.SUBACK && len(body) == 3 {
				acks.Add(1)
				if body[2] < 0x80 {
					granted.Add(1)
				}
			}
		}
		readDone <- nil
	}()
	var peak atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			if r := srv.rss(t); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	nines := strings.Repeat("9", 60000)
	start := time.Now()
	for i := range n {
		pk := mqtttest.SubscribePacket(uint16(i+1), false, "channels/"+strconv.Itoa(i+1)+nines+"/+")
		if _, err := c.Write(pk); err != nil {
			t.Fatalf("SUBSCRIBE %d: %v", i, err)
		}
	}
	for i := range n {
		pk := mqtttest.SubscribePacket(uint16(n+i+1), false, "+/"+strconv.Itoa(i+1)+"/subscribe")
		if _, err := c.Write(pk); err != nil {
			t.Fatalf("SUBSCRIBE %d: %v", n+i, err)
		}
	}
	select {
	case err := <-readDone:
		if err != nil {
			t.Fatalf("after %d SUBACKs: %v", acks.Load(), err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("only %d SUBACKs within 2 minutes", acks.Load())
	}
	flood := time.Since(start)
	close(stopWatch)
	<-watchDone
	during := srv.rss(t)
	t.Logf("baseline RSS %d MiB; %d SUBSCRIBEs in %v, %d granted; peak RSS %d MiB (+%d), at the end %d MiB",
		base>>20, 2*n, flood.Round(time.Millisecond), granted.Load(), peak.Load()>>20, (peak.Load()-base)>>20, during>>20)
	if granted.Load() > 100 {
		t.Errorf("%d filters granted to one client, want at most 100 (limits.max_subscriptions_per_client)", granted.Load())
	}
	if grew := peak.Load() - base; grew > 64<<20 {
		t.Errorf("RSS grew by %d MiB during the flood, want < 64 MiB", grew>>20)
	}
	if l := len(srv.logs.String()); l > 64<<10 {
		t.Errorf("the flood logged %d bytes", l)
	}

	_ = c.Disconnect()
	// Go returns memory to the OS lazily (scavenger, about a minute at
	// most for a large heap): poll rather than expect it at once.
	var after int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		after = srv.rss(t)
		if after-base < 16<<20 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("RSS after the attacker left: %d MiB (+%d over the baseline)", after>>20, (after-base)>>20)
	if after-base >= 16<<20 {
		t.Errorf("RSS stayed %d MiB over the baseline 30 s after the attacker left", (after-base)>>20)
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
