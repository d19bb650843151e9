package main

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/feedmq/feedmq/auth"
)

// scrape fetches /metrics and parses the text format.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// metricValue returns the value of the series of family name whose labels
// include labels (name, value pairs), and whether it exists.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// TestMetrics scrapes /metrics of a running server after an MQTT publish,
// a rejected MQTT publish, a refused CONNECT and an HTTP write.
func TestMetrics(t *testing.T) {
	s, ch, base := openGardenServer(t)
	mqttURL := "tcp://" + s.addr("mqtt").String()

	// A refused CONNECT: unknown username.
	bad := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL).SetClientID("bad").SetProtocolVersion(4).SetUsername("nobody").
		SetPassword("x").SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second))
	if tok := bad.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() == nil {
		t.Fatal("unknown username connected")
	}

	c := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL).SetClientID("metrics-e2e").
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe("channels/1/subscribe", 0, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// The rejected QoS 0 publish is handled before the QoS 1 one that
	// follows on the same connection, so both are counted once its PUBACK
	// is in.
	if tok := c.Publish("channels/1/publish/"+ch.ReadKey, 0, false, "field1=9"); !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("rejected publish not sent")
	}
	if tok := c.Publish("channels/1/publish/"+ch.WriteKey, 1, false, "field1=1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if code, body := httpDo(t, http.MethodGet, base+"/update?api_key="+ch.WriteKey+"&field1=2&field2=3", "", ""); code != 200 || body != "2" {
		t.Fatalf("/update: %d %q", code, body)
	}

	mfs := scrape(t, base)
	expect := func(want float64, name string, labels ...string) {
		t.Helper()
		if got, ok := metricValue(mfs, name, labels...); !ok || got != want {
			t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
	}
	expect(2, "feedmq_entries_stored_total")
	expect(1, "feedmq_publishes_rejected_total", "reason", "not_authorized")
	for _, r := range []string{"bad_topic", "unknown_channel", "bad_payload", "too_large", "store_error", "shutting_down"} {
		expect(0, "feedmq_publishes_rejected_total", "reason", r)
	}
	// One feed topic per entry: with no field subscriber, field topics are
	// not published at all.
	expect(2, "feedmq_fanout_deliveries_total")
	expect(0, "feedmq_deliveries_dropped_total")
	expect(1, "feedmq_connections", "listener", "mqtt")
	expect(1, "feedmq_connections_accepted_total", "listener", "mqtt")
	if _, ok := metricValue(mfs, "feedmq_connections", "listener", "ws"); ok {
		t.Error("a series for the ws listener, which is off")
	}
	expect(1, "feedmq_connections_refused_total", "reason", "bad_credentials")
	expect(0, "feedmq_connections_refused_total", "reason", "max_connections")
	expect(1, "feedmq_subscriptions")
	if size, ok := metricValue(mfs, "feedmq_storage_file_size_bytes"); !ok || size <= 0 {
		t.Errorf("feedmq_storage_file_size_bytes = %v (present %v)", size, ok)
	}
	for _, name := range []string{"feedmq_storage_commit_duration_seconds", "feedmq_storage_commit_entries"} {
		mf, ok := mfs[name]
		if !ok || mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 {
			t.Errorf("%s: %v", name, mf)
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 2 || h.GetSampleSum() <= 0 {
			t.Errorf("%s: %d observations, sum %v; want 2 commits", name, h.GetSampleCount(), h.GetSampleSum())
		}
	}
	if h := mfs["feedmq_storage_commit_entries"].GetMetric()[0].GetHistogram(); h.GetSampleSum() != 2 {
		t.Errorf("entries per commit sum %v, want 2", h.GetSampleSum())
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("no %s", name)
		}
	}

	// Gone connections leave the gauge.
	c.Disconnect(0)
	waitFor(t, func() bool {
		v, _ := metricValue(scrape(t, base), "feedmq_connections", "listener", "mqtt")
		return v == 0
	})
}

// /healthz answers 503 once the store no longer answers.
func TestHealthzChecksStore(t *testing.T) {
	cfg := httpConfig(t)
	s, err := openServer(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.addr("http").String()
	if code, body := httpDo(t, http.MethodGet, base+"/healthz", "", ""); code != 200 || body != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	if code, body := httpDo(t, http.MethodGet, base+"/healthz", "", ""); code != 503 {
		t.Fatalf("/healthz with the store closed: %d %q", code, body)
	}
}

// Every request the HTTP API refuses is counted by reason, and the
// management API is served by the running server's admin service.
func TestMetricsHTTPRefused(t *testing.T) {
	_, ch, base := openGardenServer(t)
	for _, r := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/channels.json", 401},
		{"DELETE", "/mqtt/devices/1.json", 401},
		{"GET", "/update?api_key=WRONGKEY00000001&field1=1", 400}, // /update answers 0 with 400
		{"GET", "/channels/1/feeds.json?results=lots", 400},
		{"GET", "/channels/2/feeds.json", 404},
		{"PUT", "/channels/public.json", 405},
		{"GET", "/channels/public.json", 200},
	} {
		if code, body := httpDo(t, r.method, base+r.path, "", ""); code != r.status {
			t.Fatalf("%s %s: %d %s", r.method, r.path, code, body)
		}
	}
	if code, body := httpDo(t, "GET", base+"/channels/1.json", "", ""); code != 200 || !strings.Contains(body, `"name":"garden"`) || strings.Contains(body, ch.WriteKey) {
		t.Fatalf("public settings: %d %s", code, body)
	}
	mfs := scrape(t, base)
	for reason, want := range map[string]float64{"auth_required": 3, "bad_request": 1, "resource_not_found": 1, "method_invalid": 1} {
		if got, ok := metricValue(mfs, "feedmq_http_refused_total", "reason", reason); !ok || got != want {
			t.Errorf("feedmq_http_refused_total{reason=%q} = %v (present %v), want %v", reason, got, ok, want)
		}
	}
}

// TestMetricsFieldsDropped checks feedmq_fields_dropped_total: values of
// fields the channel has not enabled, left out of MQTT and HTTP writes
// whose other values are stored.
func TestMetricsFieldsDropped(t *testing.T) {
	s, _, base := openGardenServer(t)
	two, err := s.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "two", Public: true, Fields: [8]string{"Temp", "Hum"}})
	if err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatUint(two.ID, 10)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.addr("mqtt").String()).SetClientID("dropped-e2e").
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Publish("channels/"+id+"/publish/"+two.WriteKey, 1, false, "field1=1&field3=3&field8=8"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if code, body := httpDo(t, http.MethodGet, base+"/update?api_key="+two.WriteKey+"&field2=2&field5=5", "", ""); code != 200 || body != "2" {
		t.Fatalf("/update: %d %q", code, body)
	}
	mfs := scrape(t, base)
	for _, c := range []struct {
		source string
		want   float64
	}{{"mqtt", 2}, {"http", 1}} {
		if got, ok := metricValue(mfs, "feedmq_fields_dropped_total", "source", c.source); !ok || got != c.want {
			t.Errorf("feedmq_fields_dropped_total{source=%q} = %v (present %v), want %v", c.source, got, ok, c.want)
		}
	}
	if code, body := httpDo(t, http.MethodGet, base+"/channels/"+id+"/feeds.json?results=10", "", ""); code != 200 ||
		!strings.Contains(body, `"entry_id":1,"field1":"1","field2":null}`) || !strings.Contains(body, `"entry_id":2,"field1":null,"field2":"2"}`) {
		t.Errorf("feeds.json: %d %s", code, body)
	}
}

// TestMetricsFreeTopics checks the free-topic series: publishes allowed
// by a rule, retained messages held, and the queue series present at 0.
func TestMetricsFreeTopics(t *testing.T) {
	s, _, base := openGardenServer(t)
	s.svc.Registry.SetAnonymousRules([]auth.Rule{{Access: auth.AccessReadWrite, Pattern: "home/#"}})
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.addr("mqtt").String()).SetClientID("metrics-free").
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	for _, topic := range []string{"home/a", "home/b", "garden/denied"} {
		if tok := c.Publish(topic, 1, true, "1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	mfs := scrape(t, base)
	for name, want := range map[string]float64{"feedmq_free_publishes_total": 2, "feedmq_retained_messages": 2,
		"feedmq_retained_refused_total": 0, "feedmq_queued_messages": 0, "feedmq_queued_dropped_total": 0,
		"feedmq_persistent_sessions": 0} {
		if got, ok := metricValue(mfs, name); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if got, _ := metricValue(mfs, "feedmq_publishes_rejected_total", "reason", "not_authorized"); got != 1 {
		t.Errorf("not_authorized rejections %v, want 1", got)
	}
}
