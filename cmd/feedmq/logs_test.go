package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/internal/safelog"
)

// At info level a connection logs one line when it connects and one when
// it ends, however many packets it sends in between: logs stay readable in
// the journal with thousands of devices.
func TestConnectionLogLines(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.LogFormat = "json"
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: off, WSS: off, HTTP: off}
	var logs syncBuffer
	s, err := openServer(context.Background(), cfg, newLogger(cfg, &logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ch struct {
		WriteKey string `json:"write_api_key"`
		ReadKey  string `json:"read_api_key"`
	}
	mustJSON(t, dir, &ch, "channel", "create", "--name", "logs", "--json")
	before := len(logs.String())

	c, err := mqtttest.Dial(s.broker.Addr("mqtt").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, err := c.Connect(mqtttest.Connect{ClientID: "log-test", Clean: true}); err != nil || code != 0 {
		t.Fatalf("connect: %d, %v", code, err)
	}
	if code, err := c.Subscribe(1, "channels/1/subscribe/json/"+ch.ReadKey); err != nil || code != 0 {
		t.Fatalf("subscribe: %d, %v", code, err)
	}
	const n = 20
	for i := 1; i <= n; i++ {
		if err := c.Publish("channels/1/publish/"+ch.WriteKey, 1, uint16(i), fmt.Appendf(nil, "field1=%d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{mqtttest.PINGREQ << 4, 0}); err != nil {
			t.Fatal(err)
		}
	}
	// Each publish brings a PUBACK and a delivery, each ping a PINGRESP.
	for got := 0; got < 3*n; got++ {
		if _, _, err := c.ReadPacket(); err != nil {
			t.Fatalf("after %d packets: %v", got, err)
		}
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String()[before:], `"client disconnected"`) })

	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()[before:]), "\n") {
		var rec struct {
			Level, Msg string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec.Level != slog.LevelDebug.String() {
			msgs = append(msgs, rec.Level+" "+rec.Msg)
		}
	}
	if want := []string{"INFO client connected", "INFO client disconnected"}; strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("one connection with %d publishes logged:\n%s\nwant:\n%s", n, strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}

// Everything serve runs logs through one sanitizing, rate-limited logger:
// a URL path an HTTP client sends is cut and its keys masked, as an MQTT
// topic is, and lines from HTTP count against the same log_rate.
func TestServeLogsThroughOneSafeLogger(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.LogLevel = "debug"
	cfg.LogRate = 1 // a burst of 10 lines, at most 2 of one message
	cfg.Listeners = ListenersConfig{MQTT: off, WS: off, MQTTS: off, WSS: off, HTTP: "127.0.0.1:0"}
	var logs syncBuffer
	s, err := openServer(context.Background(), cfg, newLogger(cfg, &logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !safelog.IsSafe(s.log.Handler()) {
		t.Fatal("serve logs through a plain handler")
	}
	const key = "AB12CD34EF56GH78"
	before := len(logs.String())
	for range 20 {
		resp, err := http.Get("http://" + s.http.Addr().String() + "/" + key + strings.Repeat("/p", 4000) + "?api_key=" + key)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	out := logs.String()[before:]
	if n := strings.Count(out, "http request refused"); n != 2 {
		t.Errorf("%d of 20 refused requests logged at log_rate 1, want 2:\n%s", n, out)
	}
	if strings.Contains(out, key) || !strings.Contains(out, "/<key>/p/p") || len(out) > 2000 {
		t.Errorf("logged %d bytes: %.3000s", len(out), out)
	}
}
