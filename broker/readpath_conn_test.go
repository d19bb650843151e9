package broker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestKeepaliveMidPacket: a client that sends part of a packet and then
// nothing is still cut off by its keepalive (1.5 x), over TCP and TLS,
// whether the part is a feed publish the read path holds, a packet for
// mochi, or one larger than the read path's buffer; with keepalive 0,
// idle_timeout does it.
func TestKeepaliveMidPacket(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{IdleTimeout: 2 * time.Second})
	ch := ts.channel(false)
	feed := mqtttest.PublishPacket(fmt.Sprintf("channels/%d/publish", ch), []byte("field1=1"))
	sub := subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch))
	big := mqtttest.PublishPacket("home/x", []byte(strings.Repeat("x", 10<<10)))
	for _, transport := range []string{"tcp", "tls"} {
		for _, tc := range []struct {
			name      string
			part      []byte
			keepalive uint16
		}{
			{"first byte", feed[:1], 1},
			{"half a feed publish", feed[:len(feed)/2], 1},
			{"half a subscribe", sub[:len(sub)/2], 1},
			{"half a large publish", big[:len(big)/2], 1},
			{"half a feed publish, keepalive 0", feed[:len(feed)/2], 0},
		} {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				c, err := dialTransport(ts, pki, transport)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				dev := ts.device(pubsub(ch))
				ts.allow(dev, "readwrite home/#")
				if code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
					Password: dev.Password, Clean: true, Keepalive: tc.keepalive}); err != nil || code != 0 {
					t.Fatalf("CONNACK %#x %v", code, err)
				}
				if _, err := c.Write(tc.part); err != nil {
					t.Fatal(err)
				}
				// Keepalive 1 gives a deadline of 1 s (1.5 x, in whole
				// seconds, as mochi), counted from the last whole packet
				// read, before this clock starts: so well over half of it,
				// not all of it.
				if d := expectClosed(t, c, 15*time.Second); d < 500*time.Millisecond {
					t.Fatalf("closed after %v, before the keepalive ran out", d)
				}
			})
		}
	}
}

// TestPipelinedAfterConnect: a client that sends its CONNECT and, without
// waiting for the CONNACK, a SUBSCRIBE, a QoS 1 and a QoS 0 feed publish,
// in one write or one byte per write, over TCP and TLS, with a CONNECT
// shorter and longer than the read path's small-read threshold: every
// packet is handled once and in order.
func TestPipelinedAfterConnect(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{Anonymous: true})
	c0, err := ts.svc.CreateChannel(context.Background(), auth.ChannelSpec{Name: "pipelined", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	ch := c0.ID
	topic := fmt.Sprintf("channels/%d/publish/%s", ch, c0.WriteKey)
	n := 0
	for _, transport := range []string{"tcp", "tls"} {
		for _, split := range []bool{false, true} {
			for _, pad := range []int{0, 100} {
				n++
				t.Run(fmt.Sprintf("%s/split=%v/pad=%d", transport, split, pad), func(t *testing.T) {
					c, err := dialTransport(ts, pki, transport)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					id := fmt.Sprintf("p%d%s", n, strings.Repeat("x", pad))
					b := mqtttest.Connect{ClientID: id, Clean: true, Keepalive: 30}.Encode()
					b = append(b, subscribePacket(1, fmt.Sprintf("channels/%d/subscribe", ch))...)
					b = append(b, pubPacket(topic, 1, 2, false, fmt.Sprintf("field1=%d", n))...)
					b = append(b, pubPacket(topic, 0, 0, false, fmt.Sprintf("field1=q%d", n))...)
					if split {
						for i := range b {
							if _, err := c.Write(b[i : i+1]); err != nil {
								t.Fatal(err)
							}
						}
					} else if _, err := c.Write(b); err != nil {
						t.Fatal(err)
					}
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if typ, body, err := c.ReadPacket(); err != nil || typ != mqtttest.CONNACK || body[1] != 0 {
						t.Fatalf("CONNACK: %d % x %v", typ, body, err)
					}
					expectSubscribedEntry(t, c, ch, 2, fmt.Sprint(n))
					if topic, payload := readPublish(t, c); !strings.Contains(payload, fmt.Sprintf(`"field1":"q%d"`, n)) {
						t.Fatalf("QoS 0 entry: %s %s", topic, payload)
					}
				})
			}
		}
	}
}

// TestGarbageAfterConnect: random bytes after a CONNECT, over TCP and
// TLS, end the connection (a protocol error, the frame guard, or the
// keepalive for a packet that never completes) and nothing else: the
// server serves a new connection's feed publish afterwards.
func TestGarbageAfterConnect(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{Anonymous: true})
	c0, err := ts.svc.CreateChannel(context.Background(), auth.ChannelSpec{Name: "garbage", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	topic := fmt.Sprintf("channels/%d/publish/%s", c0.ID, c0.WriteKey)
	rng := rand.New(rand.NewPCG(17, 17))
	var wg sync.WaitGroup
	for i := range 40 {
		transport := []string{"tcp", "tls"}[i%2]
		blob := make([]byte, 1+rng.IntN(600))
		for j := range blob {
			blob[j] = byte(rng.Uint32())
		}
		if i%4 < 2 {
			// A plausible start: a feed publish header with a wild length.
			blob = append([]byte{0x30 | byte(rng.IntN(4))<<1}, blob...)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialTransport(ts, pki, transport)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if code, err := c.Connect(mqtttest.Connect{ClientID: fmt.Sprintf("g%d", i), Clean: true, Keepalive: 1}); err != nil || code != 0 {
				t.Errorf("%d: CONNACK %#x %v", i, code, err)
				return
			}
			if _, err := c.Write(blob); err != nil {
				return // closed already
			}
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			for {
				if _, _, err := c.ReadPacket(); err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						t.Errorf("%d (%s): still open 15 s after % x", i, transport, blob)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	c := rawAnonymous(t, ts.addr, "after")
	if err := c.Publish(topic, 1, 1, []byte("field1=1")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, _, err := c.ReadPacket(); err != nil || typ != mqtttest.PUBACK {
		t.Fatalf("PUBACK: %d %v", typ, err)
	}
}

// TestConnectedCounts: mochi's $SYS count of connected clients and the
// listeners' live counts follow connections served by the listener's own
// read loop, however they end: closed by the client, DISCONNECT, the
// keepalive, taken over by the same client ID.
func TestConnectedCounts(t *testing.T) {
	ts, pki, _, _ := startTLSServer(t, broker.Options{Anonymous: true})
	dial := func(transport, id string, keepalive uint16) *mqtttest.Conn {
		t.Helper()
		c, err := dialTransport(ts, pki, transport)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if code, err := c.Connect(mqtttest.Connect{ClientID: id, Clean: true, Keepalive: keepalive}); err != nil || code != 0 {
			t.Fatalf("%s: CONNACK %#x %v", id, code, err)
		}
		return c
	}
	live := func() int64 {
		st := ts.srv.Stats()
		return st.Connections["mqtt"].Live + st.Connections["mqtts"].Live
	}
	waitCounts := func(want int64) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("%d connected", want), func() bool {
			return ts.srv.MochiClientsConnected() == want && live() == want
		})
	}
	for _, transport := range []string{"tcp", "tls"} {
		closed := dial(transport, transport+"-closed", 30)
		disc := dial(transport, transport+"-disconnect", 30)
		dial(transport, transport+"-keepalive", 1)
		dial(transport, transport+"-taken", 30)
		waitCounts(4)
		taker := dial(transport, transport+"-taken", 30) // takes the session over
		waitCounts(4)
		closed.Close()
		_ = disc.Disconnect()
		waitCounts(1) // the taker, once the keepalive one is cut off
		taker.Close()
		waitCounts(0)
	}
}

// dialTransport connects to ts over "tcp" or "tls" (pki's client
// configuration); the caller closes the connection.
func dialTransport(ts *testServer, pki *testPKI, transport string) (*mqtttest.Conn, error) {
	var nc net.Conn
	var err error
	if transport == "tls" {
		nc, err = tls.Dial("tcp", ts.addrOf("mqtts"), pki.clientConfig())
	} else {
		nc, err = net.Dial("tcp", ts.addr)
	}
	if err != nil {
		return nil, err
	}
	return mqtttest.Wrap(nc), nil
}
