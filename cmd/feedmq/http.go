package main

import (
	"net"
	"time"
	_ "time/tzdata" // timezone= must work without the host's zoneinfo (containers, sandboxed units)

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	httpd "github.com/feedmq/feedmq/http"
)

// The channel API and the console front the same admin service as the CLI.
var _ httpd.Admin = (*admin.Local)(nil)

// openHTTP builds the HTTP server (the REST API, the dashboard, the web
// console, /healthz and /metrics, see metrics.go) from cfg and opens it on --http and
// --https (with the broker's certificate, so SIGHUP renews it there too);
// the API's writes go through the broker like MQTT publishes and the
// broker feeds the dashboard's event streams. It returns nil when both
// listeners are off. A port in use fails here, at startup.
func openHTTP(cfg Config, s *server) (*httpd.Server, error) {
	addr, tlsAddr := cfg.Listeners.HTTP, cfg.httpsAddr()
	if addr == off {
		addr = ""
	}
	if addr == "" && tlsAddr == "" {
		return nil, nil
	}
	// auth_backoff throttles wrong API keys as it does failed logins; the
	// API and the dashboard count them together.
	keys := auth.NewThrottle(authBackoff(cfg.AuthBackoff))
	limits := cfg.authLimits()
	srv := httpd.NewServer(httpd.ServerOptions{
		Addr:    addr,
		Logger:  s.log.With("component", "http"),
		Metrics: s.metrics.handler(s),
		API: httpd.APIOptions{
			Store:         s.db,
			Registry:      s.svc.Registry,
			Publisher:     s.broker,
			Limits:        cfg.payloadLimits(),
			Health:        s.health(),
			HealthDetail:  s.healthDetail(),
			KeyThrottle:   keys,
			Admin:         s.svc,
			Refusals:      s.metrics.httpRefused,
			FieldsDropped: &s.metrics.httpFieldsDropped,
			MaxFeedReads:  cfg.HTTP.MaxFeedReads,
			// Shared with the console's forms.
			MaxBodyBytesInFlight: cfg.HTTP.MaxBodyBytesInFlight,
			WriteTimeout:         time.Duration(cfg.HTTP.WriteTimeout),
		},
		Dashboard: httpd.DashboardOptions{
			Store:        s.db,
			Registry:     s.svc.Registry,
			Watcher:      s.broker,
			KeyThrottle:  keys,
			MaxStreams:   cfg.HTTP.MaxSSEStreams,
			WriteTimeout: time.Duration(cfg.HTTP.WriteTimeout),
			EmbedPoll:    time.Duration(cfg.HTTP.EmbedPollInterval),
		},
		// The console counts wrong passwords with the API's wrong keys.
		Console: &httpd.ConsoleOptions{
			Admin:                s.svc,
			MaxDevices:           limits.MaxDevices,
			MaxChannelsPerDevice: limits.MaxChannelsPerDevice,
		},
		TLSAddr:   tlsAddr,
		TLSConfig: s.broker.TLSConfig(),
	})
	if err := srv.Open(); err != nil {
		return nil, err
	}
	return srv, nil
}

// addr returns the bound address of listener name ("mqtt", ..., "http"),
// or nil when it is not running.
func (s *server) addr(name string) net.Addr {
	switch name {
	case "http", "https":
		if s.http == nil {
			return nil
		}
		if name == "https" {
			return s.http.TLSAddr()
		}
		return s.http.Addr()
	}
	return s.broker.Addr(name)
}
