// Package httpd is feedmq's HTTP adapter: the ThingSpeak-compatible REST
// API (NewAPI), the web dashboard (NewDashboard) and the server that owns
// the --http listener, its mux and its timeouts (Server).
//
// The directory is http; the package is httpd so that its code and its
// callers, which all use net/http, keep that under its usual name.
//
// It imports only the domain packages and the standard library: the
// caller supplies the store, the registry, the broker (as Publisher and
// Watcher) and the /metrics handler.
package httpd
