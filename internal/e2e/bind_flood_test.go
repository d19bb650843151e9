package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestBindingFlood: anonymous clients allowed to write flood/# flood a
// bound topic with QoS 0 publishes, a third of them unreadable. Each readable one is committed before
// the connection's next packet is read, so the server holds no backlog:
// RSS stays within the flood bound, every readable publish is one entry
// (none lost, none twice) and the failures are logged a few times, not
// once each.
func TestBindingFlood(t *testing.T) {
	data := t.TempDir()
	var ch struct {
		ID uint64 `json:"id"`
	}
	cli(t, data, &ch, "channel", "create", "--name", "flood", "--field", "1=v", "--json")
	cli(t, data, nil, "device", "allow", "anonymous", "--topic", "flood/#", "--write", "--json")
	cli(t, data, nil, "channel", "bind", fmt.Sprint(ch.ID), "--topic", "flood/+", "--field", "1=$.v", "--status", "$.s", "--json")
	s := floodServe(t, data, "--log-level", "info")

	const clients, each = 20, 600
	padding := strings.Repeat("x", 2000)
	var att conns
	var mu sync.Mutex
	readable := 0
	measureFlood(t, s, defaultFlood, func() {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := mqtttest.Dial(s.addr)
				if err != nil {
					t.Error(err)
					return
				}
				att.add(conn)
				if code, err := conn.Connect(mqtttest.Connect{ClientID: fmt.Sprintf("flood%d", c), Clean: true}); err != nil || code != 0 {
					t.Errorf("CONNACK %#x %v", code, err)
					return
				}
				n := 0
				for i := range each {
					var p string
					switch {
					case i%3 == 1:
						p = `{"v":` + padding // not JSON
					default:
						p = fmt.Sprintf(`{"v":%d,"s":"%s"}`, i, padding[:200])
						n++
					}
					if err := conn.Publish(fmt.Sprintf("flood/c%d", c), 0, 0, []byte(p)); err != nil {
						t.Errorf("client %d publish %d: %v", c, i, err)
						return
					}
				}
				// A QoS 1 publish is acknowledged after the ones before it
				// were read: then all of them are committed.
				if err := conn.Publish(fmt.Sprintf("flood/c%d", c), 1, 1, []byte(`{"v":-1}`)); err != nil {
					t.Error(err)
					return
				}
				_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
				if id, code, err := conn.ReadPuback(); err != nil || id != 1 || code != 0 {
					t.Errorf("client %d: PUBACK %d %#x %v", c, id, code, err)
					return
				}
				mu.Lock()
				readable += n + 1
				mu.Unlock()
			}()
		}
		wg.Wait()
	}, att.closeAll)

	var got struct {
		LastEntryID uint64 `json:"last_entry_id"`
	}
	cli(t, data, &got, "channel", "show", fmt.Sprint(ch.ID), "--json")
	if got.LastEntryID != uint64(readable) {
		t.Errorf("%d entries from %d readable bound publishes", got.LastEntryID, readable)
	}
	logs := s.logs.String()
	if n := strings.Count(logs, "binding: publish not stored"); n == 0 || n > 20 {
		t.Errorf("%d binding failure lines for %d failures, want a few", n, clients*each-readable+clients)
	}
}
