package broker_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestPublishReuse: the broker recycles each publish's entry (and its
// JSON buffer) once it is stored, fanned out and answered. Publishers
// that pipeline QoS 0 and QoS 1 (queued, PUBACKs from the fan-out side),
// one that waits for each PUBACK (committed on its reader), and failed
// commits (PUBACK 0x80) all run at once; every PUBACK must carry its
// publish's ID and every delivery its own values, once. An entry reused
// while still referred to shows as a wrong or zero PUBACK ID, a delivery
// with another publish's values (or none), or, under -race, as a race
// between the release and the late use.
func TestPublishReuse(t *testing.T) {
	ts, h := startHeld(t, broker.Options{})
	ch := ts.channel(false)
	topic := fmt.Sprintf("channels/%d/publish", ch)
	sub := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 4)
	if codes, err := sub.SubscribeMany(1, channels.FeedTopic(ch), channels.FieldTopic(ch, 1)); err != nil ||
		len(codes) != 2 || codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("SUBACK %v %v", codes, err)
	}
	const fail = 23 // every fail-th append fails after storing its entry
	for n := fail; n <= 5000; n += fail {
		h.fail(n, fmt.Errorf("commit: %w", channels.ErrCommitUnknown))
	}

	const pipelined, each, waiting = 4, 241, 60 // each: the last is QoS 1
	type result struct {
		acked  []string // values whose PUBACK said stored
		failed []string // values answered 0x80
		qos0   []string
		err    error
	}
	results := make([]result, pipelined+1)
	var wg sync.WaitGroup
	var last *mqtttest.Conn
	for p := range pipelined + 1 {
		c := rawDevice(t, ts.addr, ts.device(pubsub(ch)), 5)
		last = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[p]
			var sent []string // QoS 1 values in the order sent
			var mu sync.Mutex
			acks := make(chan error, 1)
			n := each
			if p == pipelined {
				n = waiting
			}
			readAck := func() error {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				id, code, err := c.ReadPuback()
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				i := len(r.acked) + len(r.failed)
				if i >= len(sent) || int(id) != i+1 {
					return fmt.Errorf("publisher %d: PUBACK id %d, want %d", p, id, i+1)
				}
				switch code {
				case 0:
					r.acked = append(r.acked, sent[i])
				case 0x80:
					r.failed = append(r.failed, sent[i])
				default:
					return fmt.Errorf("publisher %d: PUBACK %d code %#x", p, id, code)
				}
				return nil
			}
			qos1 := 0
			for k := range n {
				v := fmt.Sprintf("p%d-%d", p, k)
				qos := byte(1)
				if p < pipelined && k%3 == 2 {
					qos = 0
				}
				var id uint16
				if qos == 1 {
					qos1++
					id = uint16(qos1)
					mu.Lock()
					sent = append(sent, v)
					mu.Unlock()
					if p < pipelined && qos1 == 1 {
						go func() { // pipelined: PUBACKs are read as they come
							for range qos1Of(each) {
								if err := readAck(); err != nil {
									acks <- err
									return
								}
							}
							acks <- nil
						}()
					}
				} else {
					r.qos0 = append(r.qos0, v)
				}
				if err := c.Publish(topic, qos, id, []byte("field1="+v)); err != nil {
					r.err = err
					return
				}
				if p == pipelined {
					if err := readAck(); err != nil {
						r.err = err
						return
					}
				}
			}
			if p < pipelined {
				r.err = <-acks
			}
		}()
	}
	wg.Wait()
	// Alone, with nothing else in commit: the reader commits each itself.
	for k := range 20 {
		v := fmt.Sprintf("alone-%d", k)
		if err := last.Publish(topic, 1, uint16(waiting+k+1), []byte("field1="+v)); err != nil {
			t.Fatal(err)
		}
		_ = last.SetReadDeadline(time.Now().Add(10 * time.Second))
		id, code, err := last.ReadPuback()
		switch {
		case err != nil || int(id) != waiting+k+1 || code != 0 && code != 0x80:
			t.Fatalf("PUBACK %d %#x %v, want %d", id, code, err, waiting+k+1)
		case code == 0:
			results[pipelined].acked = append(results[pipelined].acked, v)
		default:
			results[pipelined].failed = append(results[pipelined].failed, v)
		}
	}

	want := map[string]bool{} // value -> acknowledged (false: QoS 0)
	var failed, qos0 int
	for p, r := range results {
		if r.err != nil {
			t.Fatalf("publisher %d: %v", p, r.err)
		}
		for _, v := range r.acked {
			want[v] = true
		}
		for _, v := range r.qos0 {
			want[v] = false
		}
		qos0 += len(r.qos0)
		failed += len(r.failed)
	}
	if failed == 0 {
		t.Fatal("no commit failed: the failure path was not taken")
	}
	// Every publisher's last publish is QoS 1: once it is answered, so
	// are the QoS 0 ones before it, and each failed one was counted.
	st := ts.srv.Stats()
	failed0 := int(st.Rejected["store_error"]) - failed
	must := len(want) - failed0
	if failed0 < 0 || st.Dropped != 0 {
		t.Fatalf("store errors %d, QoS 1 failed %d, deliveries dropped %d", st.Rejected["store_error"], failed, st.Dropped)
	}
	seen := map[string]bool{}
	fields := map[string]bool{}
	for got := 0; got < must || len(fields) < must; {
		_ = sub.SetReadDeadline(time.Now().Add(10 * time.Second))
		tp, payload, err := sub.ReadPublish()
		if err != nil {
			t.Fatalf("%d of %d deliveries: %v", got, must, err)
		}
		if tp == channels.FieldTopic(ch, 1) {
			v := string(payload)
			if _, ok := want[v]; !ok || fields[v] {
				t.Fatalf("field delivery %q: unknown or repeated", v)
			}
			fields[v] = true
			continue
		}
		var e struct {
			Channel uint64 `json:"channel_id"`
			ID      uint64 `json:"entry_id"`
			Field1  string `json:"field1"`
		}
		if err := json.Unmarshal(payload, &e); err != nil || tp != channels.FeedTopic(ch) || e.Channel != ch || e.ID == 0 {
			t.Fatalf("delivery on %s: %s (%v)", tp, payload, err)
		}
		if _, ok := want[e.Field1]; !ok || seen[e.Field1] {
			t.Fatalf("delivery %s: unknown or repeated value", payload)
		}
		seen[e.Field1] = true
		got++
	}
	for v, m := range want {
		if m && !seen[v] {
			t.Errorf("acknowledged %s not delivered", v)
		}
	}
	readNothing(t, sub)
	waitZero(t, "unacked", ts.srv.Unacked)
}

// qos1Of is how many of n publishes of a pipelining publisher are QoS 1
// (every third is QoS 0).
func qos1Of(n int) int { return n - n/3 }
