package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/adminsock"
)

// watched records what WatchBindings hands out.
type watched struct {
	mu   sync.Mutex
	last []channels.Binding
	n    int
}

func (w *watched) set(bs []channels.Binding) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last, w.n = bs, w.n+1
}

func (w *watched) ids() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []uint64
	for _, b := range w.last {
		out = append(out, b.ID)
	}
	return out
}

func idsEqual(a []uint64, b ...uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func zigbee(ch uint64, topic string) channels.Binding {
	return channels.Binding{ChannelID: ch, Topic: topic, Fields: [8]string{"$.temperature", "$.humidity"}, Status: "$.battery"}
}

// Both the Local and the socket client create, list and delete bindings,
// and the watcher sees every change, including a deleted channel's.
func TestBindings_LocalAndSocket(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	var w watched
	if err := l.WatchBindings(ctx, w.set); err != nil {
		t.Fatal(err)
	}
	if w.n != 1 || len(w.last) != 0 {
		t.Fatalf("first hand-out: %d calls, %v", w.n, w.last)
	}
	ch1, _ := l.CreateChannel(ctx, auth.ChannelSpec{Name: "a"})
	ch2, _ := l.CreateChannel(ctx, auth.ChannelSpec{Name: "b"})
	b1, err := l.Bind(ctx, zigbee(ch1.ID, "zigbee2mqtt/a"))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := c.Bind(ctx, zigbee(ch2.ID, "zigbee2mqtt/b"))
	if err != nil {
		t.Fatal(err)
	}
	b3, err := c.Bind(ctx, channels.Binding{ChannelID: ch1.ID, Topic: "esphome/+/sensor/t/state", Fields: [8]string{"", "", "$"}, CreatedAt: "$.t"})
	if err != nil {
		t.Fatal(err)
	}
	if b1.ID != 1 || b2.ID != 2 || b3.ID != 3 || b2.Created.IsZero() || b2.Fields[0] != "$.temperature" {
		t.Fatalf("created %+v %+v %+v", b1, b2, b3)
	}
	if !idsEqual(w.ids(), 1, 2, 3) {
		t.Fatalf("watcher has %v", w.ids())
	}
	for _, s := range []Service{l, c} {
		all, err := s.Bindings(ctx, 0)
		if err != nil || len(all) != 3 || all[1] != *b2 {
			t.Fatalf("%T all: %+v, %v", s, all, err)
		}
		one, err := s.Bindings(ctx, ch1.ID)
		if err != nil || len(one) != 2 || one[0].ID != 1 || one[1].ID != 3 {
			t.Fatalf("%T channel %d: %+v, %v", s, ch1.ID, one, err)
		}
		if _, err := s.Bindings(ctx, 99); channels.ErrorCode(err) != channels.ENOTFOUND {
			t.Fatalf("%T channel 99: %v", s, err)
		}
	}
	if err := c.Unbind(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Unbind(ctx, 2); channels.ErrorCode(err) != channels.ENOTFOUND || !strings.Contains(err.Error(), "binding 2 not found") {
		t.Fatalf("second unbind: %v", err)
	}
	if !idsEqual(w.ids(), 1, 3) {
		t.Fatalf("watcher after unbind: %v", w.ids())
	}
	if err := c.DeleteChannel(ctx, ch1.ID); err != nil {
		t.Fatal(err)
	}
	if !idsEqual(w.ids()) {
		t.Fatalf("watcher after deleting the channel: %v", w.ids())
	}
	if all, _ := l.Bindings(ctx, 0); len(all) != 0 {
		t.Fatalf("bindings of a deleted channel remain: %+v", all)
	}
}

func TestBind_Refused(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	ch, _ := l.CreateChannel(ctx, auth.ChannelSpec{Name: "a", Fields: [8]string{"T", "H"}})
	if _, err := l.Bind(ctx, zigbee(ch.ID, "z/a")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		b    channels.Binding
		code string
		msg  string
	}{
		{zigbee(ch.ID+1, "z/b"), channels.ENOTFOUND, "channel 2 not found"},
		{zigbee(ch.ID, "z/a"), channels.ECONFLICT, "already has binding 1"},
		{channels.Binding{ChannelID: ch.ID, Topic: "z/c", Fields: [8]string{"", "", "$.x"}}, channels.EINVALID, "field3 is not enabled on channel 1"},
		{zigbee(ch.ID, "channels/1/publish"), channels.EINVALID, "governs itself"},
		{zigbee(ch.ID, "$SYS/x"), channels.EINVALID, "governs itself"},
		{zigbee(ch.ID, "a/#/b"), channels.EINVALID, "before its last level"},
		{zigbee(ch.ID, strings.Repeat("a", channels.MaxBindingTopic+1)), channels.EINVALID, "limit is 1024"},
		{channels.Binding{ChannelID: ch.ID, Topic: "z/d"}, channels.EINVALID, "at least one field"},
		{channels.Binding{ChannelID: ch.ID, Topic: "z/d", Fields: [8]string{"$.a[*]"}}, channels.EINVALID, "wildcard"},
		{channels.Binding{ChannelID: ch.ID, Topic: "z/d", Fields: [8]string{"$." + strings.Repeat("a", 300)}}, channels.EINVALID, "limit is 256"},
		{channels.Binding{ChannelID: 0, Topic: "z/d", Fields: [8]string{"$"}}, channels.EINVALID, "needs a channel"},
	} {
		for _, s := range []Service{l, c} {
			_, err := s.Bind(ctx, tc.b)
			if channels.ErrorCode(err) != tc.code || !strings.Contains(channels.ErrorMessage(err), tc.msg) {
				t.Errorf("%T %q: %v; want %s containing %q", s, tc.b.Topic, err, tc.code, tc.msg)
			}
		}
	}
	if all, _ := l.Bindings(ctx, 0); len(all) != 1 {
		t.Fatalf("refused bindings stored: %+v", all)
	}
	// Malformed arguments on the socket are EINVALID.
	h := NewHandler(l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var e *adminsock.Error
	for _, raw := range []string{`{"ChannelID":"one"}`, `[]`, `{"Fields":"x"}`} {
		if _, err := h(ctx, opBindingCreate, json.RawMessage(raw)); !errors.As(err, &e) || e.Code != channels.EINVALID {
			t.Errorf("%s: %#v", raw, err)
		}
	}
}

func TestBind_Limits(t *testing.T) {
	ctx := context.Background()
	s := newTestLocalBind(t, auth.Limits{MaxBindingsPerChannel: 2, MaxBindings: 3})
	a, _ := s.CreateChannel(ctx, auth.ChannelSpec{Name: "a"})
	b, _ := s.CreateChannel(ctx, auth.ChannelSpec{Name: "b"})
	for _, t2 := range []string{"x/1", "x/2"} {
		if _, err := s.Bind(ctx, zigbee(a.ID, t2)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Bind(ctx, zigbee(a.ID, "x/3"))
	if channels.ErrorCode(err) != channels.ELIMIT || !strings.Contains(err.Error(), "limits.max_bindings_per_channel") {
		t.Fatalf("per channel: %v", err)
	}
	if _, err := s.Bind(ctx, zigbee(b.ID, "x/3")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Bind(ctx, zigbee(b.ID, "x/4"))
	if channels.ErrorCode(err) != channels.ELIMIT || !strings.Contains(err.Error(), "limits.max_bindings") {
		t.Fatalf("total: %v", err)
	}
	// Concurrent binds cannot pass the limit together.
	c, _ := s.CreateChannel(ctx, auth.ChannelSpec{Name: "c"})
	if err := s.Unbind(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := s.Bind(ctx, zigbee(c.ID, "y/"+string(rune('a'+i)))); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if all, _ := s.Bindings(ctx, 0); ok != 1 || len(all) != 3 {
		t.Fatalf("%d concurrent binds succeeded, %d bindings", ok, len(all))
	}
}

func newTestLocalBind(t *testing.T, lim auth.Limits) *Local {
	t.Helper()
	l, _ := serveLocal(t)
	l.Limits = lim
	return l
}
