package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
	_ "time/tzdata" // timezone= must work without the host's zoneinfo (containers, sandboxed units)

	"github.com/feedmq/feedmq/auth"
	httpd "github.com/feedmq/feedmq/http"
)

// Timeouts of the HTTP listener. Devices on slow links get generous
// bounds; a client that sends nothing is cut off quickly.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 2 * time.Minute // an 8000-entry CSV over a slow link
	httpIdleTimeout       = 2 * time.Minute
	httpMaxHeaderBytes    = 16 << 10
	// httpShutdownTimeout bounds the wait for requests in flight at
	// shutdown; writes among them are committed before the broker closes.
	httpShutdownTimeout = 5 * time.Second
)

// httpListener serves the REST feed API (httpd.NewAPI), /healthz and
// /metrics (metrics.go) on --http.
type httpListener struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// openHTTP binds the --http address and serves the API, whose writes go
// through the broker like MQTT publishes. It returns nil when the listener
// is off. A port in use fails here, at startup.
func openHTTP(cfg Config, s *server) (*httpListener, error) {
	addr := cfg.Listeners.HTTP
	if addr == "" || addr == off {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	log := s.log.With("component", "http")
	l := &httpListener{ln: ln, done: make(chan struct{})}
	// auth_backoff throttles wrong API keys as it does failed logins; the
	// API and the dashboard count them together.
	keys := auth.NewThrottle(authBackoff(cfg.AuthBackoff))
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.handler(s))
	mux.Handle("/", httpd.NewAPI(httpd.APIOptions{
		Store:       s.db,
		Registry:    s.svc.Registry,
		Publisher:   s.broker,
		Limits:      cfg.payloadLimits(),
		Logger:      log,
		Health:      (&storeHealth{db: s.db}).check,
		KeyThrottle: keys,
		// A stalled reader trips the write deadline and frees what it
		// holds long before the whole answer's deadline.
		MaxFeedReads:    cfg.HTTP.MaxFeedReads,
		WriteTimeout:    time.Duration(cfg.HTTP.WriteTimeout),
		ResponseTimeout: httpWriteTimeout,
	}))
	l.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		// Malformed requests from the internet are not worth a warning.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	l.srv.Handler = withDashboard(s, log, l.srv, l.srv.Handler, httpd.DashboardOptions{
		KeyThrottle:  keys,
		MaxStreams:   cfg.HTTP.MaxSSEStreams,
		WriteTimeout: time.Duration(cfg.HTTP.WriteTimeout),
	})
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("http listener stopped", "error", err)
		}
	}()
	return l, nil
}

// Addr returns the bound address.
func (l *httpListener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting requests and waits up to httpShutdownTimeout for
// those in flight, then closes what is left.
func (l *httpListener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	err := l.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = l.srv.Close()
	}
	<-l.done
	return err
}

// addr returns the bound address of listener name ("mqtt", ..., "http"),
// or nil when it is not running.
func (s *server) addr(name string) net.Addr {
	if name == "http" {
		if s.http == nil {
			return nil
		}
		return s.http.Addr()
	}
	return s.broker.Addr(name)
}
