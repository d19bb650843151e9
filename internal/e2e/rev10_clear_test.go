package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// A channel cleared through node 1 while a subscriber follows it on node
// 2: its numbering restarts, the subscriber gets the new feed's entries
// 1, 2, 3 in order, each once, and none of the old feed again; right
// after the clear, and again after a second clear with a lone entry (the
// last entry before a pause must come too, not wait for the next).
func TestClusterClearOnOtherNode(t *testing.T) {
	db, nats := pgtest.New(t), smokeNATS(t)
	dir1, conf1 := smokeConfig(t, db, nats, "n1")
	dir2, conf2 := smokeConfig(t, db, nats, "n2")
	n1 := smokeServe(t, dir1, conf1)
	n2 := smokeServe(t, dir2, conf2)

	var ch struct {
		ID uint64 `json:"id"`
	}
	cli(t, dir1, &ch, "channel", "create", "--name", "cleared", "--field", "1=T", "--json")
	var pub, sub deviceJSON
	cli(t, dir1, &pub, "device", "create", "--name", "pub", "--channel", fmt.Sprint(ch.ID), "--json")
	cli(t, dir1, &sub, "device", "create", "--name", "sub", "--channel", fmt.Sprint(ch.ID), "--json")

	sc := smokeSubscribe(t, n2.addr, sub, ch.ID)
	pc := smokeConnect(t, n1.addr, pub)
	publish := func(v string) {
		t.Helper()
		smokePublish(t, pc, ch.ID, v)
	}
	type entry struct {
		ID     uint64 `json:"entry_id"`
		Field1 string `json:"field1"`
	}
	expect := func(c *mqtttest.Conn, want ...entry) {
		t.Helper()
		for _, w := range want {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, payload, err := c.ReadPublish()
			if err != nil {
				t.Fatalf("waiting for entry %d (%s) on node 2: %v", w.ID, w.Field1, err)
			}
			var got entry
			if err := json.Unmarshal(payload, &got); err != nil || got != w {
				t.Fatalf("node 2's subscriber got %s, want entry %d with field1 %s", payload, w.ID, w.Field1)
			}
		}
	}
	for _, v := range []string{"o1", "o2", "o3"} {
		publish(v)
	}
	expect(sc, entry{1, "o1"}, entry{2, "o2"}, entry{3, "o3"})

	cli(t, dir1, nil, "channel", "clear", fmt.Sprint(ch.ID), "--json")
	for _, v := range []string{"n1", "n2", "n3"} {
		publish(v)
	}
	expect(sc, entry{1, "n1"}, entry{2, "n2"}, entry{3, "n3"})

	cli(t, dir1, nil, "channel", "clear", fmt.Sprint(ch.ID), "--json")
	publish("lone")
	expect(sc, entry{1, "lone"})

	// Nothing more: no old entry comes again. (A replay would follow
	// the entries above at once; a second is ample on any machine.)
	_ = sc.SetDeadline(time.Now().Add(time.Second))
	if _, payload, err := sc.ReadPublish(); err == nil {
		t.Fatalf("node 2's subscriber got %s after the new feed", payload)
	} else if !os.IsTimeout(err) {
		t.Fatalf("node 2's subscriber: %v", err)
	}
}
