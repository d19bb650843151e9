package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/feedmq/feedmq/internal/pgtest"
)

// Production (two nodes) and staging (one node, its own database) share
// a NATS server and, by oversight, the cluster name. Channel ids overlap:
// staging's channel 1 must not feed production's channel 1 subscribers,
// nor an outsider's forged entry; production's own entries still cross
// from node to node. The dropped messages are counted and logged.
func TestClusterIgnoresOtherDatabases(t *testing.T) {
	prodDB, stagingDB, natsURL := pgtest.New(t), pgtest.New(t), smokeNATS(t)
	dir1, conf1 := smokeConfig(t, prodDB, natsURL, "p1")
	dir2, conf2 := smokeConfig(t, prodDB, natsURL, "p2")
	dir3, conf3 := smokeConfig(t, stagingDB, natsURL, "s1")
	p1 := smokeServe(t, dir1, conf1)
	p2 := smokeServe(t, dir2, conf2)
	s1 := smokeServe(t, dir3, conf3)

	var prodCh, stagingCh struct {
		ID uint64 `json:"id"`
	}
	cli(t, dir1, &prodCh, "channel", "create", "--name", "prod", "--field", "1=T", "--json")
	cli(t, dir3, &stagingCh, "channel", "create", "--name", "staging", "--field", "1=T", "--json")
	if prodCh.ID != stagingCh.ID {
		t.Fatalf("channel ids %d and %d: the test needs them to overlap", prodCh.ID, stagingCh.ID)
	}
	var sub, pub, spub deviceJSON
	cli(t, dir1, &sub, "device", "create", "--name", "sub", "--channel", fmt.Sprint(prodCh.ID), "--json")
	cli(t, dir1, &pub, "device", "create", "--name", "pub", "--channel", fmt.Sprint(prodCh.ID), "--json")
	cli(t, dir3, &spub, "device", "create", "--name", "spub", "--channel", fmt.Sprint(stagingCh.ID), "--json")

	sc := smokeSubscribe(t, p2.addr, sub, prodCh.ID)
	publish := func(addr string, d deviceJSON, ch uint64, v string) {
		t.Helper()
		c := smokeConnect(t, addr, d)
		defer c.Close()
		smokePublish(t, c, ch, v)
	}
	publish(s1.addr, spub, stagingCh.ID, "staging")
	// An outsider on the NATS server forges an entry of the channel.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	forged := fmt.Sprintf(`{"channel_id":%d,"created_at":"2024-01-02T03:04:05Z","entry_id":1,"field1":"forged"}`, prodCh.ID)
	if err := nc.Publish(fmt.Sprintf("feedmq.smoke.entries.%d", prodCh.ID), []byte(forged)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	base2 := "http://" + p2.addrs["http"]
	smokeWait(t, "p2 counting staging's messages and the forged one", 10*time.Second, func() (bool, string) {
		m := smokeMetric(t, base2)
		var n int
		for _, l := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(l, "feedmq_cluster_foreign_messages_total "); ok {
				fmt.Sscan(v, &n)
			}
		}
		// staging's connect notices (one per CONNECT) and entry, the forgery
		return n >= 3, fmt.Sprint(n)
	})
	publish(p1.addr, pub, prodCh.ID, "prod")
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	_, payload, err := sc.ReadPublish()
	if err != nil || !strings.Contains(string(payload), `"entry_id":1,`) || !strings.Contains(string(payload), `"field1":"prod"`) {
		t.Fatalf("p2's subscriber got %s, %v; want production's entry 1", payload, err)
	}
	_ = sc.SetDeadline(time.Now().Add(time.Second))
	if _, payload, err := sc.ReadPublish(); err == nil {
		t.Fatalf("p2's subscriber got %s too", payload)
	} else if !os.IsTimeout(err) {
		t.Fatal(err)
	}
	if !strings.Contains(p2.logs.String(), "need a cluster_name each") {
		t.Errorf("p2 did not log what is wrong:\n%s", logTail(p2.logs.String(), 3000))
	}
}
