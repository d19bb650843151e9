package httpd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	httpd "github.com/feedmq/feedmq/http"
)

// TestServerRoutes opens a Server on a real listener and checks that each
// part answers on its path: the dashboard, /metrics, the REST API with its
// /healthz, and that Close ends open event streams.
func TestServerRoutes(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	ch := e.channel(true, "temp")
	e.publish(ch.ID, "21.5")
	healthErr := errors.New("store down")
	var healthy atomic.Bool
	healthy.Store(true)
	s := httpd.NewServer(httpd.ServerOptions{
		Addr: "127.0.0.1:0",
		API: httpd.APIOptions{
			Store: e.db, Registry: e.svc.Registry, Publisher: e.srv,
			Health: func(context.Context) error {
				if healthy.Load() {
					return nil
				}
				return healthErr
			},
		},
		Dashboard: httpd.DashboardOptions{Store: e.db, Registry: e.svc.Registry, Watcher: e.srv},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "feedmq_test_metric 1\n")
		}),
	})
	if a := s.Addr(); a != nil {
		t.Fatalf("Addr before Open = %v", a)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	base := "http://" + s.Addr().String()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	if resp, body := get("/"); resp.StatusCode != 200 || !strings.Contains(body, "<html") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("GET /: %d %q, X-Frame-Options %q", resp.StatusCode, body, resp.Header.Get("X-Frame-Options"))
	}
	if resp, body := get("/metrics"); resp.StatusCode != 200 || body != "feedmq_test_metric 1\n" {
		t.Errorf("GET /metrics: %d %q", resp.StatusCode, body)
	}
	path := fmt.Sprintf("/channels/%d/feeds/last.txt", ch.ID)
	if resp, body := get(path); resp.StatusCode != 200 || !strings.Contains(body, `"field1":"21.5"`) {
		t.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
	}
	if resp, _ := get("/healthz"); resp.StatusCode != 200 {
		t.Errorf("GET /healthz: %d, want 200", resp.StatusCode)
	}
	healthy.Store(false)
	if resp, _ := get("/healthz"); resp.StatusCode != 503 {
		t.Errorf("GET /healthz with a failing store: %d, want 503", resp.StatusCode)
	}

	// A second server on the same address fails at Open, naming the
	// listener.
	other := httpd.NewServer(httpd.ServerOptions{
		Addr:      s.Addr().String(),
		API:       httpd.APIOptions{Store: e.db, Registry: e.svc.Registry, Publisher: e.srv},
		Dashboard: httpd.DashboardOptions{Store: e.db, Registry: e.svc.Registry, Watcher: e.srv},
	})
	if err := other.Open(); err == nil || !strings.HasPrefix(err.Error(), "http listener: ") {
		other.Close()
		t.Errorf("Open on a bound address: %v", err)
	}
	if err := other.Close(); err != nil {
		t.Errorf("Close of a server that never opened: %v", err)
	}

	// An open event stream does not keep Close waiting for it: the
	// dashboard ends streams when the server shuts down.
	resp, err := http.Get(base + fmt.Sprintf("/channels/%d/events", ch.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	closed = true
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("event stream still open after Close")
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("GET after Close succeeded")
	}
}
