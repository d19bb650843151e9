package broker_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

// BenchmarkPublishQoS1 measures durable entries per second: 100 devices,
// each on its own channel with one QoS 1 publish in flight, every PUBACK
// sent after the entry's commit. Run with
// go test -run '^$' -bench PublishQoS1 -benchtime 20000x ./broker
func BenchmarkPublishQoS1(b *testing.B) {
	const devices = 100
	ts := startServer(b, broker.Options{Logger: quietLogger()})
	conns := make([]*mqtttest.Conn, devices)
	topics := make([]string, devices)
	for i := range conns {
		ch := ts.channel(false)
		dev := ts.device(pubsub(ch))
		c, err := mqtttest.Dial(ts.addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		code, err := c.Connect(mqtttest.Connect{ClientID: dev.Device.ClientID, Username: dev.Device.Username,
			Password: dev.Password, Clean: true, Keepalive: 60})
		if err != nil || code != 0 {
			b.Fatalf("connect: %d %v", code, err)
		}
		conns[i], topics[i] = c, fmt.Sprintf("channels/%d/publish", ch)
	}
	payload := []byte("field1=23.5&field2=40")
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range conns {
		wg.Add(1)
		go func(c *mqtttest.Conn, topic string) {
			defer wg.Done()
			for id := uint16(1); next.Add(1) <= int64(b.N); id = id%65535 + 1 {
				if err := c.Publish(topic, 1, id, payload); err != nil {
					b.Error(err)
					return
				}
				if typ, _, err := c.ReadPacket(); err != nil || typ != mqtttest.PUBACK {
					b.Errorf("want PUBACK, got %d %v", typ, err)
					return
				}
			}
		}(conns[i], topics[i])
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
