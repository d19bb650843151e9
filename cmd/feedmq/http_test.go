package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// httpConfig is a serve configuration with MQTT and HTTP on free ports.
func httpConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: off, WSS: off, HTTP: "127.0.0.1:0"}
	return cfg
}

// httpDo sends one request and returns the status and body.
func httpDo(t *testing.T, method, u, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

type mqttMessage struct{ topic, payload string }

// TestHTTPUpdateReachesMQTT writes over the REST API of a running server
// and checks that MQTT subscribers get the entries exactly as the write
// answered them, and that a refused write reaches nobody.
func TestHTTPUpdateReachesMQTT(t *testing.T) {
	s, ch, base := openGardenServer(t)

	msgs := make(chan mqttMessage, 100)
	o := paho.NewClientOptions().AddBroker("tcp://" + s.addr("mqtt").String()).SetClientID("http-e2e").
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- mqttMessage{m.Topic(), string(m.Payload())} })
	sub := paho.NewClient(o)
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(0)
	for _, f := range []string{"channels/1/subscribe", "channels/1/subscribe/fields/+"} {
		if tok := sub.Subscribe(f, 0, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	expect := func(topic, payload string) {
		t.Helper()
		select {
		case m := <-msgs:
			if m.topic != topic || m.payload != payload {
				t.Errorf("got %s %s\nwant %s %s", m.topic, m.payload, topic, payload)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message on %s", topic)
		}
	}

	// /update.json answers the entry as subscribers receive it.
	form := url.Values{"api_key": {ch.WriteKey}, "field1": {"23.5"}, "field3": {"dry"}, "status": {"ok"}}.Encode()
	code, entry := httpDo(t, http.MethodPost, base+"/update.json", "application/x-www-form-urlencoded", form)
	if code != 200 || !strings.HasPrefix(entry, `{"channel_id":1,"created_at":"`) || !strings.Contains(entry, `"entry_id":1,"field1":"23.5"`) {
		t.Fatalf("/update.json: %d %s", code, entry)
	}
	expect("channels/1/subscribe", entry)
	expect("channels/1/subscribe/fields/field1", "23.5")
	expect("channels/1/subscribe/fields/field3", "dry")

	// /update answers the entry_id.
	if code, body := httpDo(t, http.MethodGet, base+"/update?api_key="+ch.WriteKey+"&field2=7", "", ""); code != 200 || body != "2" {
		t.Fatalf("/update: %d %q", code, body)
	}
	m := <-msgs
	if m.topic != "channels/1/subscribe" || !strings.Contains(m.payload, `"entry_id":2,"field1":null,"field2":"7"`) {
		t.Errorf("entry 2: %s %s", m.topic, m.payload)
	}
	expect("channels/1/subscribe/fields/field2", "7")

	// A refused write answers 0, is not stored and reaches nobody.
	if code, body := httpDo(t, http.MethodGet, base+"/update?api_key="+ch.WriteKey+"&lat=91", "", ""); code != 400 || body != "0" {
		t.Fatalf("bad write: %d %q", code, body)
	}
	if code, body := httpDo(t, http.MethodGet, base+"/update?api_key="+ch.ReadKey+"&field1=1", "", ""); code != 400 || body != "0" {
		t.Fatalf("read key write: %d %q", code, body)
	}
	select {
	case m := <-msgs:
		t.Fatalf("refused write delivered: %s %s", m.topic, m.payload)
	case <-time.After(200 * time.Millisecond):
	}

	// Reads see what was written; the broker counted the HTTP writes.
	if code, body := httpDo(t, http.MethodGet, base+"/channels/1/fields/1/last.txt", "", ""); code != 200 || body != "23.5" {
		t.Errorf("last.txt: %d %q", code, body)
	}
	if code, body := httpDo(t, http.MethodGet, base+"/channels/1/feeds.json", "", ""); code != 200 || strings.Count(body, `"entry_id"`) != 2 {
		t.Errorf("feeds.json: %d %s", code, body)
	}
	if st := s.broker.Stats(); st.Accepted != 2 {
		t.Errorf("broker accepted %d entries, want 2", st.Accepted)
	}
}

// serve prints the HTTP listener's bound address, answers /healthz, and
// stops it on shutdown.
func TestRunServeHTTP(t *testing.T) {
	cfg := httpConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, out, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	var addr string
	waitFor(t, func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if a, ok := strings.CutPrefix(line, "http listening on "); ok {
				addr = a
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("http address %q", addr)
	}
	if code, body := httpDo(t, http.MethodGet, "http://"+addr+"/healthz", "", ""); code != 200 || body != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("http listener still open after shutdown")
	}
}

func TestServeHTTPPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := httpConfig(t)
	cfg.Listeners.HTTP = ln.Addr().String()
	_, err = openServer(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "http listener") {
		t.Fatalf("serve on a used http port: %v", err)
	}
	// Everything opened was closed: the database is free again.
	mustRun(t, cfg.DataDir, "channel", "list")
}

// openGardenServer runs serve with HTTP and MQTT on port 0 and one public
// channel, and returns the server, the channel and the HTTP base URL.
func openGardenServer(t *testing.T) (*server, *channels.Channel, string) {
	t.Helper()
	s, err := openServer(t.Context(), httpConfig(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ch, err := s.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "garden", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	return s, ch, "http://" + s.addr("http").String()
}
