package main

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
)

// TestDashboardServe checks the dashboard as serve wires it: the page and
// the API share --http, an event stream gets an entry written over the
// API, and shutdown ends open streams at once instead of waiting for them.
func TestDashboardServe(t *testing.T) {
	cfg := httpConfig(t)
	s, err := openServer(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	ch, err := s.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "garden", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.addr("http").String()
	if code, body := httpDo(t, http.MethodGet, base+"/", "", ""); code != 200 || !strings.Contains(body, "/assets/app.js") {
		t.Fatalf("/: %d %.100s", code, body)
	}
	if code, body := httpDo(t, http.MethodGet, base+"/channels/1/feeds.json", "", ""); code != 200 || !strings.HasPrefix(body, `{"channel":{"id":1`) {
		t.Fatalf("API behind the dashboard: %d %.100s", code, body)
	}

	resp, err := http.Get(base + "/channels/1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 10)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() (string, bool) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok || l != "" {
					return l, ok
				}
			case <-time.After(5 * time.Second):
				t.Fatal("event stream: nothing within 5s")
			}
		}
	}
	for l, _ := next(); !strings.HasPrefix(l, ": stream"); l, _ = next() {
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n, _ := s.broker.WatchStats(); n == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("watchers = %d", n)
		}
	}
	_, entry := httpDo(t, http.MethodGet, base+"/update.json?api_key="+ch.WriteKey+"&field1=7", "", "")
	if l, _ := next(); l != "id: 1" {
		t.Errorf("got %q, want id: 1", l)
	}
	if l, _ := next(); l != "data: "+entry {
		t.Errorf("got %q\nwant data: %s", l, entry)
	}

	start := time.Now()
	closed = true
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v with an open event stream", d)
	}
	if l, ok := next(); ok {
		t.Errorf("stream still open after shutdown: %q", l)
	}
}
