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
	srv := floodServe(t, t.TempDir())
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
	lim := floodLimits{peak: 64 << 20, settle: 16 << 20, hold: time.Second}
	measureFlood(t, srv, lim, func() {
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
		nines := strings.Repeat("9", 60000)
		start := time.Now()
		for i := range n {
			pk := mqtttest.SubscribePacket(uint16(i+1), false, "channels/"+strconv.Itoa(i+1)+nines+"/+")
			if _, err := c.Write(pk); err != nil {
				t.Errorf("SUBSCRIBE %d: %v", i, err)
				return
			}
		}
		for i := range n {
			pk := mqtttest.SubscribePacket(uint16(n+i+1), false, "+/"+strconv.Itoa(i+1)+"/subscribe")
			if _, err := c.Write(pk); err != nil {
				t.Errorf("SUBSCRIBE %d: %v", n+i, err)
				return
			}
		}
		select {
		case err := <-readDone:
			if err != nil {
				t.Errorf("after %d SUBACKs: %v", acks.Load(), err)
			}
		case <-time.After(2 * time.Minute):
			t.Errorf("only %d SUBACKs within 2 minutes", acks.Load())
		}
		t.Logf("%d SUBSCRIBEs in %v, %d granted", 2*n, time.Since(start).Round(time.Millisecond), granted.Load())
	}, func() {
		if granted.Load() > 100 {
			t.Errorf("%d filters granted to one client, want at most 100 (limits.max_subscriptions_per_client)", granted.Load())
		}
		if l := len(srv.logs.String()); l > 64<<10 {
			t.Errorf("the flood logged %d bytes", l)
		}
		_ = c.Disconnect()
	})
}
