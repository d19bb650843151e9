package broker_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestPubackOrderWithMochiBacklog: a device that receives free-topic
// messages through mochi's queue, reads them slowly, and sends a
// free-topic QoS 1 publish (acknowledged by mochi) followed by a QoS 1
// feed publish (acknowledged by feedmq) gets the two PUBACKs in the
// order of its publishes, as MQTT requires ([MQTT-4.6.0-2]). mochi
// writes its PUBACK into the client's write buffer (outbuf), not the
// socket, while deliveries wait in its queue; feedmq's PUBACK, written to
// the socket directly (writeNow) or by its sender (writeRaw), overtakes
// it.
func TestPubackOrderWithMochiBacklog(t *testing.T) {
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	dev, flooder := ts.device(pubsub(ch)), ts.device()
	ts.allow(dev, "readwrite home/#")
	ts.allow(flooder, "write home/#")
	d := rawDevice(t, ts.addr, dev, 4)
	if code, err := d.Subscribe(1, "home/flood"); err != nil || code != 0 {
		t.Fatalf("SUBACK %#x %v", code, err)
	}
	f := rawDevice(t, ts.addr, flooder, 4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keeps mochi's queue for d busy
		defer wg.Done()
		payload := []byte(strings.Repeat("x", 2000))
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := f.Publish("home/flood", 0, 0, payload); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); f.Close(); wg.Wait() }()

	const rounds = 12
	acks := make(chan uint16, 2*rounds)
	readErr := make(chan error, 1)
	go func() {
		var last []string
		for n := 0; ; n++ {
			_ = d.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, body, err := d.ReadPacket()
			if err != nil {
				readErr <- fmt.Errorf("%w; last packets read: %v", err, last)
				return
			}
			if last = append(last, fmt.Sprintf("%d/%d", typ, len(body))); len(last) > 8 {
				last = last[1:]
			}
			if typ == mqtttest.PUBACK {
				acks <- binary.BigEndian.Uint16(body)
			}
			if n%16 == 0 {
				time.Sleep(time.Millisecond) // a slow reader: mochi's queue never empties
			}
		}
	}()
	feed := fmt.Sprintf("channels/%d/publish", ch)
	var got []uint16
	for r := range rounds {
		free, fed := uint16(2*r+1), uint16(2*r+2)
		b := append(pubPacket("home/d", 1, free, false, "on"), pubPacket(feed, 1, fed, false, fmt.Sprintf("field1=%d", r))...)
		if _, err := d.Write(b); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			select {
			case id := <-acks:
				got = append(got, id)
			case err := <-readErr:
				t.Fatalf("after PUBACKs %v: %v", got, err)
			case <-time.After(15 * time.Second):
				t.Fatalf("PUBACKs so far %v: no more", got)
			}
		}
	}
	for i, id := range got {
		if id != uint16(i+1) {
			t.Fatalf("PUBACKs out of order: %v", got)
		}
	}
}
