package main

import (
	"log/slog"
	"net/http"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker/dashboard"
)

// withDashboard puts the web dashboard (broker/dashboard: /, /channel/<id>,
// /assets/, /channels.json and the /channels/<id>/events streams) in front
// of next, which serves every other path. The broker feeds the event
// streams; srv's Shutdown ends them, so that it need not wait for them.
func withDashboard(s *server, log *slog.Logger, srv *http.Server, next http.Handler, keys *auth.Throttle) http.Handler {
	d := dashboard.New(dashboard.Options{
		Store:       s.db,
		Registry:    s.svc.Registry,
		Watcher:     s.broker,
		Next:        next,
		Logger:      log,
		KeyThrottle: keys,
	})
	srv.RegisterOnShutdown(d.Shutdown)
	return d
}
