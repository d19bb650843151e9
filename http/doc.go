// Package httpd is feedmq's HTTP adapter: the ThingSpeak-compatible REST
// API (NewAPI), the web dashboard (NewDashboard) and the server that owns
// the --http listener, its mux and its timeouts (Server).
//
// The directory is http, like the other adapters named after what they
// speak; the package is httpd so that its code and its callers can use
// net/http under its own name.
//
// It imports only the domain packages and the standard library: the
// caller supplies the store, the registry, the broker (as Publisher and
// Watcher) and the /metrics handler.
package httpd
