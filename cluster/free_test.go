package cluster

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/feedmq/feedmq/channels"
)

// freeRecorder records the free messages a node delivers.
type freeRecorder struct {
	mu  sync.Mutex
	got []channels.Message
}

func (r *freeRecorder) deliver(m *channels.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, *m)
}

func (r *freeRecorder) topics() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ts []string
	for _, m := range r.got {
		ts = append(ts, m.Topic)
	}
	return ts
}

// Free messages go from one node to the others, in the order sent, and
// not back to the sender; the two nodes count what they sent and got.
func TestClusterFreeMessages(t *testing.T) {
	servers := startNATS(t, 2)
	st := &sharedStore{fakeStore: newFakeStore()}
	a := startNode(t, "a", st, servers[0].ClientURL())
	b := startNode(t, "b", st, servers[1].ClientURL())
	var ra, rb freeRecorder
	if err := a.c.AttachFree(ra.deliver, 1<<16); err != nil {
		t.Fatal(err)
	}
	if err := b.c.AttachFree(rb.deliver, 1<<16); err != nil {
		t.Fatal(err)
	}
	if err := b.c.AttachFree(rb.deliver, 1<<16); err == nil {
		t.Error("a second AttachFree was accepted")
	}
	waitFor(t, "free subscriptions on both servers", func() bool {
		return servers[0].GlobalAccount().Interest(freeSubject("t1")) == 2 &&
			servers[1].GlobalAccount().Interest(freeSubject("t1")) == 2
	})
	want := []string{}
	for i := range 100 {
		topic := "home/" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
		want = append(want, topic)
		a.c.ForwardFree(&channels.Message{Topic: topic, Payload: []byte{byte(i)}, QoS: byte(i % 3)})
	}
	waitFor(t, "100 messages on b", func() bool { return len(rb.topics()) == 100 })
	if got := rb.topics(); !slices.Equal(got, want) {
		t.Fatalf("b got %q", got)
	}
	b.c.ForwardFree(&channels.Message{Topic: "back"})
	waitFor(t, "b's message on a", func() bool { return len(ra.topics()) == 1 })
	if got := ra.topics(); got[0] != "back" {
		t.Fatalf("a got %q: its own messages came back", got)
	}
	ma, mb := a.c.Metrics(), b.c.Metrics()
	if ma.FreeForwarded != 100 || ma.FreeReceived != 1 || mb.FreeForwarded != 1 || mb.FreeReceived != 100 ||
		ma.FreeDropped+mb.FreeDropped+ma.FreeForwardErrors+mb.FreeForwardErrors != 0 {
		t.Errorf("metrics a %+v, b %+v", ma, mb)
	}
}

// What arrives on the free subject is untrusted: malformed messages,
// ones over the packet limit and ones claiming this node as origin are
// dropped, counted and logged briefly; the good one after them arrives.
func TestClusterFreeHostile(t *testing.T) {
	servers := startNATS(t, 1)
	n := startNode(t, "node1", &sharedStore{fakeStore: newFakeStore()}, servers[0].ClientURL())
	var r freeRecorder
	const limit = 1000
	if err := n.c.AttachFree(r.deliver, limit); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := func(m channels.Message, node string) []byte { return AppendFree(nil, &m, node) }
	bad := [][]byte{
		nil,
		[]byte("{}"),
		msg(channels.Message{Topic: "channels/1/publish"}, "other"),
		msg(channels.Message{Topic: "a/#"}, "other"),
		msg(channels.Message{Topic: "a"}, "bad.node"),
		msg(channels.Message{Topic: "a"}, "node1"), // itself: a twin or a loop
		msg(channels.Message{Topic: "a", Payload: bytes.Repeat([]byte("p"), limit+freeOverhead)}, "other"),
		append(msg(channels.Message{Topic: "a"}, "other")[:5], 0xff),
	}
	for _, b := range bad {
		if err := nc.Publish(freeSubject("t1"), b); err != nil {
			t.Fatal(err)
		}
	}
	big := channels.Message{Topic: "a", Payload: bytes.Repeat([]byte("p"), limit)}
	if err := nc.Publish(freeSubject("t1"), msg(big, "other")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good message", func() bool { return len(r.topics()) == 1 })
	if m := n.c.Metrics(); m.FreeDropped != uint64(len(bad)) || m.FreeReceived != 1 {
		t.Errorf("metrics %+v: want %d dropped, 1 received", m, len(bad))
	}
	lines := strings.Split(strings.TrimSpace(n.logs.String()), "\n")
	if len(lines) != len(bad) {
		t.Errorf("%d log lines, want %d:\n%s", len(lines), len(bad), n.logs.String())
	}
	for _, l := range lines {
		if len(l) > 500 {
			t.Errorf("log line of %d bytes: %.200s...", len(l), l)
		}
	}
}

// A message NATS refuses (over its max_payload) is counted, not sent.
func TestClusterFreeForwardError(t *testing.T) {
	servers := startNATS(t, 1)
	n := startNode(t, "node1", &sharedStore{fakeStore: newFakeStore()}, servers[0].ClientURL())
	n.c.ForwardFree(&channels.Message{Topic: "a", Payload: make([]byte, n.c.nc.MaxPayload()+1)})
	if m := n.c.Metrics(); m.FreeForwardErrors != 1 || m.FreeForwarded != 0 {
		t.Errorf("metrics %+v", m)
	}
}
