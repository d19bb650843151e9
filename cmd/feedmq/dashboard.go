package main

import (
	"log/slog"
	"net/http"

	httpd "github.com/feedmq/feedmq/http"
)

// withDashboard puts the web dashboard (httpd.Dashboard: /, /channel/<id>,
// /assets/, /channels.json and the /channels/<id>/events streams) in front
// of next, which serves every other path. The broker feeds the event
// streams; srv's Shutdown ends them, so that it need not wait for them.
// opts carries the limits; the rest is filled in here.
func withDashboard(s *server, log *slog.Logger, srv *http.Server, next http.Handler, opts httpd.DashboardOptions) http.Handler {
	opts.Store, opts.Registry, opts.Watcher, opts.Next, opts.Logger = s.db, s.svc.Registry, s.broker, next, log
	d := httpd.NewDashboard(opts)
	srv.RegisterOnShutdown(d.Shutdown)
	return d
}
