package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/storage"
)

func TestFilterMatches(t *testing.T) {
	for _, c := range []struct {
		f, topic string
		want     bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"+/+", "a/b", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"#", "a/b", true},
		{"tele/+/SENSOR", "tele/plug1/SENSOR", true},
		{"tele/+/SENSOR", "tele/plug1/STATE", false},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a", false},
		{"/a", "/a", true},
		{"+/a", "/a", true},
	} {
		if got := filterMatches(c.f, c.topic); got != c.want {
			t.Errorf("filterMatches(%q, %q) = %v", c.f, c.topic, got)
		}
	}
}

// logBuffer collects log lines for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// bindServer is a broker wired to an admin Local as serve wires them,
// bindings included.
type bindServer struct {
	s   *Server
	svc *admin.Local
	db  *storage.DB
	log *logBuffer
}

func newBindServer(t testing.TB, opts Options) *bindServer {
	t.Helper()
	db, svc := openLocal(t)
	lb := &logBuffer{}
	opts.MQTTAddr = "127.0.0.1:0"
	opts.Anonymous = true
	opts.Logger = slog.New(slog.NewJSONHandler(lb, nil))
	s, err := New(opts, db, svc.Registry)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.WatchBindings(context.Background(), s.SetBindings); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &bindServer{s: s, svc: svc, db: db, log: lb}
}

func (bs *bindServer) entries(t *testing.T, ch uint64) []channels.Entry {
	t.Helper()
	es, err := bs.db.Entries(context.Background(), ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestBindPublish(t *testing.T) {
	ctx := context.Background()
	bs := newBindServer(t, Options{})
	ch, err := bs.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "living room", Public: true, Fields: [8]string{"Temperature", "Humidity"}})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := bs.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "all rooms", Public: true})
	if _, err := bs.svc.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "zigbee2mqtt/living_room",
		Fields: [8]string{"$.temperature", "$.humidity"}, Status: "$.battery"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.svc.Bind(ctx, channels.Binding{ChannelID: other.ID, Topic: "zigbee2mqtt/+", Fields: [8]string{"", "", "$.temperature"}}); err != nil {
		t.Fatal(err)
	}

	// A subscriber of the channel gets the entry, as from channels/<id>/publish.
	sub, err := mqtttest.Dial(bs.s.Addr("mqtt").String())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if code, err := sub.Connect(mqtttest.Connect{ClientID: "sub", Clean: true}); err != nil || code != 0 {
		t.Fatalf("connect: %d %v", code, err)
	}
	if code, err := sub.Subscribe(1, channels.FeedTopic(ch.ID)); err != nil || code != 0 {
		t.Fatalf("subscribe: %d %v", code, err)
	}

	bs.s.bindPublish(auth.Anonymous, "z2m", "zigbee2mqtt/living_room", []byte(`{"battery":97,"humidity":48.9,"linkquality":134,"temperature":21.37}`))
	// Stored before bindPublish returns.
	es := bs.entries(t, ch.ID)
	if len(es) != 1 || es[0].Values[0] != "21.37" || es[0].Values[1] != "48.9" || es[0].Values[channels.Status] != "97" || es[0].ID != 1 {
		t.Fatalf("entries of channel %d: %+v", ch.ID, es)
	}
	if es := bs.entries(t, other.ID); len(es) != 1 || es[0].Values[2] != "21.37" {
		t.Fatalf("entries of the wildcard binding's channel: %+v", es)
	}
	sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	topic, payload, err := sub.ReadPublish()
	if err != nil || topic != channels.FeedTopic(ch.ID) {
		t.Fatalf("subscriber: %q %v", topic, err)
	}
	var got map[string]any
	if err := json.Unmarshal(payload, &got); err != nil || got["field1"] != "21.37" || got["field2"] != "48.9" || got["status"] != "97" {
		t.Fatalf("subscriber got %s (%v)", payload, err)
	}

	// A topic nobody bound stores nothing; a payload the binding cannot
	// read stores nothing and is counted.
	bs.s.bindPublish(auth.Anonymous, "z2m", "zigbee2mqtt/kitchen/set", []byte(`{"temperature":1}`))
	secret := strings.Repeat("S", 40) + "-the-rest-of-the-payload-is-never-logged"
	bs.s.bindPublish(auth.Anonymous, "z2m", "zigbee2mqtt/living_room", []byte(`{"temperature":"`+secret+`"}`))
	bs.s.bindPublish(auth.Anonymous, "z2m", "zigbee2mqtt/living_room", []byte(`{"state":"ON"}`))
	st := bs.s.BindingStats()
	if st.Bindings != 2 || st.Entries != 2 || st.Failures[bindBadPayload] != 2 || st.Failures[bindNoValues] != 2 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(bs.entries(t, ch.ID)); n != 1 {
		t.Fatalf("%d entries after refused payloads", n)
	}
	logs := bs.log.String()
	if !strings.Contains(logs, "binding: publish not stored as an entry") || !strings.Contains(logs, `"reason":"bad_payload"`) {
		t.Fatalf("no failure line:\n%s", logs)
	}
	if strings.Contains(logs, "never-logged") {
		t.Fatalf("the payload is logged whole:\n%s", logs)
	}
	// One line per binding per interval: the no_values failure of binding
	// 1 came within it.
	if n := strings.Count(logs, `"binding":1,`); n != 1 {
		t.Fatalf("%d lines for binding 1:\n%s", n, logs)
	}

	// Unbinding takes effect at once.
	if err := bs.svc.Unbind(ctx, 1); err != nil {
		t.Fatal(err)
	}
	bs.s.bindPublish(auth.Anonymous, "z2m", "zigbee2mqtt/living_room", []byte(`{"temperature":5}`))
	if n := len(bs.entries(t, ch.ID)); n != 1 {
		t.Fatalf("unbound topic still feeds: %d entries", n)
	}
	if es := bs.entries(t, other.ID); len(es) != 2 {
		t.Fatalf("the wildcard binding stopped: %+v", es)
	}
	// Deleting the channel removes its binding from the index.
	if err := bs.svc.DeleteChannel(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if st := bs.s.BindingStats(); st.Bindings != 0 {
		t.Fatalf("bindings in force after the channel went: %d", st.Bindings)
	}
}

// The channel's rate limit applies to bound entries as to any other.
func TestBindPublishRateLimit(t *testing.T) {
	ctx := context.Background()
	bs := newBindServer(t, Options{})
	ch, _ := bs.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "c", RateLimit: time.Hour})
	if _, err := bs.svc.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "esphome/node/sensor/t/state", Fields: [8]string{"$"}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		bs.s.bindPublish(auth.Anonymous, "node", "esphome/node/sensor/t/state", []byte(fmt.Sprint(20+i)))
	}
	if es := bs.entries(t, ch.ID); len(es) != 1 || es[0].Values[0] != "20" {
		t.Fatalf("entries %+v", es)
	}
	if st := bs.s.BindingStats(); st.Failures[bindRateLimited] != 2 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A field disabled after binding is dropped from entries and counted.
func TestBindPublishDisabledField(t *testing.T) {
	ctx := context.Background()
	bs := newBindServer(t, Options{})
	ch, _ := bs.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "c", Fields: [8]string{"a", "b"}})
	if _, err := bs.svc.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "t", Fields: [8]string{"$.a", "$.b"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.svc.UpdateChannel(ctx, ch.ID, auth.ChannelUpdate{Fields: map[int]string{2: ""}}); err != nil {
		t.Fatal(err)
	}
	bs.s.bindPublish(auth.Anonymous, "c", "t", []byte(`{"a":1,"b":2}`))
	es := bs.entries(t, ch.ID)
	if len(es) != 1 || es[0].Values[0] != "1" || es[0].Set != 1 {
		t.Fatalf("entries %+v", es)
	}
	if bs.s.Stats().FieldsDropped != 1 {
		t.Fatalf("dropped %d", bs.s.Stats().FieldsDropped)
	}
}

// BenchmarkBindPublish is the cost of one bound entry through the broker:
// index lookup, extraction of a Zigbee2MQTT payload, and the commit
// (write-ahead log and fdatasync included) and fan-out.
// go test -run '^$' -bench BindPublish ./broker
func BenchmarkBindPublish(b *testing.B) {
	ctx := context.Background()
	bs := newBindServer(b, Options{})
	ch, _ := bs.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	for i := 0; i < 50; i++ { // bindings of other topics in the index
		other, _ := bs.svc.CreateChannel(ctx, auth.ChannelSpec{Name: fmt.Sprint("o", i)})
		if _, err := bs.svc.Bind(ctx, channels.Binding{ChannelID: other.ID, Topic: fmt.Sprintf("zigbee2mqtt/room%d", i), Fields: [8]string{"$.temperature"}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := bs.svc.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "zigbee2mqtt/living_room",
		Fields: [8]string{"$.temperature", "$.humidity", "$.pressure"}, Status: "$.battery"}); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"battery":97,"humidity":48.91,"linkquality":134,"pressure":1012.3,"temperature":21.37,"voltage":2985}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bs.s.bindPublish(auth.Anonymous, "z2m", "zigbee2mqtt/living_room", payload)
	}
	b.StopTimer()
	if st := bs.s.BindingStats(); st.Entries != uint64(b.N) {
		b.Fatalf("%d entries for %d publishes: %+v", st.Entries, b.N, st)
	}
}

// BenchmarkBindMiss is what bindings cost a free publish that no binding
// matches: the index lookup with 50 exact and 10 wildcard bindings.
func BenchmarkBindMiss(b *testing.B) {
	s := &Server{}
	var list []channels.Binding
	for i := 0; i < 60; i++ {
		topic := fmt.Sprintf("zigbee2mqtt/room%d", i)
		if i >= 50 {
			topic = fmt.Sprintf("tele/+/SENSOR%d", i)
		}
		list = append(list, channels.Binding{ID: uint64(i + 1), ChannelID: 1, Topic: topic, Fields: [8]string{"$.t"}})
	}
	s.SetBindings(list)
	payload := []byte("1")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.bindPublish(0, "c", "homeassistant/sensor/x/state", payload)
	}
}

// A device flooding a bound topic with payloads its binding cannot read
// is counted in full but logged once per interval, and a key in the
// payload's prefix is masked.
func TestBindPublishFailureFlood(t *testing.T) {
	ctx := context.Background()
	bs := newBindServer(t, Options{})
	ch, _ := bs.svc.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	if _, err := bs.svc.Bind(ctx, channels.Binding{ChannelID: ch.ID, Topic: "t/+", Fields: [8]string{"$.temperature"}}); err != nil {
		t.Fatal(err)
	}
	payload := []byte("api_key=ABCDEFGHIJKLMNOP&temperature=warm")
	for i := 0; i < 500; i++ {
		bs.s.bindPublish(auth.Anonymous, "flood", fmt.Sprintf("t/%d", i), payload)
	}
	if st := bs.s.BindingStats(); st.Failures[bindBadPayload] != 500 || st.Entries != 0 {
		t.Fatalf("stats %+v", st)
	}
	logs := bs.log.String()
	if n := strings.Count(logs, "binding: publish not stored"); n != 1 {
		t.Fatalf("%d failure lines for 500 failures:\n%s", n, logs)
	}
	if strings.Contains(logs, "ABCDEFGHIJKLMNOP") || !strings.Contains(logs, "<key>") {
		t.Fatalf("the key is not masked:\n%s", logs)
	}
	if es := bs.entries(t, ch.ID); len(es) != 0 {
		t.Fatalf("entries %+v", es)
	}
}

// openLocal opens a bbolt database in a temporary directory, closed when
// tb ends, and the admin service over it.
func openLocal(tb testing.TB) (*storage.DB, *admin.Local) {
	tb.Helper()
	db, err := storage.Open(filepath.Join(tb.TempDir(), "feedmq.db"), storage.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		tb.Fatal(err)
	}
	return db, svc
}
