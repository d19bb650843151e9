package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// WSPath is the only path that serves MQTT over WebSocket; every other
// path answers 404.
const WSPath = "/mqtt"

// wsSubprotocols are the WebSocket subprotocols of MQTT: "mqtt" for MQTT
// 3.1.1 and 5, "mqttv3.1" for MQTT 3.1. A client that asks for none is
// served too, without one.
var wsSubprotocols = []string{"mqtt", "mqttv3.1"}

// wsReadSlack is what a WebSocket message may hold beyond the largest
// MQTT packet: a message may carry several packets (MQTT 3.1.1 §6).
const wsReadSlack = 64 << 10

// wsListener serves MQTT over WebSocket (ws) or secure WebSocket (wss) at
// WSPath: an HTTP server on a socket bound before Serve, whose upgraded
// connections go to mochi like TCP ones, with the same CONNECT deadline,
// per-write deadlines and connection tracking.
type wsListener struct {
	id        string
	ln        net.Listener // the bound socket, TLS-wrapped for wss
	srv       *Server
	secure    bool
	http      *http.Server
	upgrader  websocket.Upgrader
	readLimit uint64 // bytes of one WebSocket message
	connSet
}

var _ boundListener = (*wsListener)(nil)

func newWSListener(id string, ln net.Listener, tlsConfig *tls.Config, srv *Server) *wsListener {
	// Sockets are counted as unconnected from the accept on, not from the
	// upgrade: one that never sends its request holds a descriptor too.
	ln = pendingListener{Listener: ln, srv: srv}
	l := &wsListener{id: id, ln: ln, srv: srv, readLimit: uint64(srv.opts.MaxPacketSize) + wsReadSlack}
	if tlsConfig != nil {
		l.ln, l.secure = tls.NewListener(ln, tlsConfig), true
	}
	l.upgrader = websocket.Upgrader{
		HandshakeTimeout: srv.opts.WriteTimeout,
		Subprotocols:     wsSubprotocols,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked before Upgrade
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			srv.log.Debug("websocket upgrade refused", "listener", id, "remote", r.RemoteAddr,
				"status", status, "error", reason)
			http.Error(w, reason.Error(), status)
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc(WSPath, l.serveMQTT)
	l.http = &http.Server{
		Handler: mux,
		// Slow or silent clients: the TLS handshake and request headers
		// must arrive within the CONNECT timeout.
		ReadHeaderTimeout: srv.opts.ConnectTimeout,
		WriteTimeout:      srv.opts.WriteTimeout,
		IdleTimeout:       srv.opts.ConnectTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(srv.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, pendingKey{}, pendingOf(c))
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				pendingOf(c).settle() // never upgraded; an upgraded one is serveMQTT's
			}
		},
	}
	return l
}

func (l *wsListener) ID() string      { return l.id }
func (l *wsListener) Address() string { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string {
	if l.secure {
		return "wss"
	}
	return "ws"
}
func (l *wsListener) addr() net.Addr          { return l.ln.Addr() }
func (l *wsListener) release()                { _ = l.ln.Close() }
func (l *wsListener) Init(*slog.Logger) error { return nil }

// Serve serves until Close; upgraded connections go to serveConn, not to
// mochi's establish.
func (l *wsListener) Serve(listeners.EstablishFn) {
	if err := l.http.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.srv.log.Error("websocket listener stopped", "listener", l.id, "error", err)
	}
}

// serveMQTT upgrades a request for WSPath and serves MQTT on it until the
// connection ends.
func (l *wsListener) serveMQTT(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "MQTT over WebSocket: use GET with a WebSocket upgrade", http.StatusMethodNotAllowed)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		http.Error(w, "this is an MQTT over WebSocket endpoint: connect an MQTT client with subprotocol \"mqtt\"",
			http.StatusUpgradeRequired)
		return
	}
	if !l.srv.origins.allows(r) {
		l.srv.log.Info("websocket origin refused", "listener", l.id, "remote", r.RemoteAddr,
			"origin", r.Header.Get("Origin"), "host", r.Host)
		http.Error(w, fmt.Sprintf("origin %s is not allowed", r.Header.Get("Origin")), http.StatusForbidden)
		return
	}
	p, _ := r.Context().Value(pendingKey{}).(*pendingSocket)
	ws, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		p.settle()
		return // the upgrader answered and logged
	}
	// From here on the broker decodes the frames itself (wsconn.go), on
	// a goroutine of its own: this one's net/http frames, request and
	// buffers, and gorilla's connection with its two buffers, would
	// otherwise be held for the life of every idle connection.
	raw := ws.NetConn()
	if !l.add(raw) {
		p.settle()
		_ = rawConn(raw).Close()
		return
	}
	c := newWSConn(raw, l.srv, p, l.readLimit)
	// The same CONNECT deadline as TCP; mochi replaces it with the
	// keepalive one once CONNECT is read.
	_ = c.SetDeadline(time.Now().Add(l.srv.opts.ConnectTimeout))
	l.srv.handlers.run(func() {
		l.srv.serveConn(l.id, c)
		p.settle()
		l.remove(raw)
	})
}

// Close stops the HTTP server (the socket, and requests not upgraded),
// disconnects its clients (not with mochi's CloseFn: see
// disconnectClients), closes what is left and waits for every handler to
// return.
func (l *wsListener) Close(listeners.CloseFn) {
	if !l.shut() {
		return
	}
	_ = l.http.Close()
	_ = l.ln.Close() // in case Serve never ran
	l.srv.disconnectClients(l.id)
	l.closeAndWait()
}

// originPolicy decides which web pages may open a WebSocket: requests
// without an Origin header (MQTT libraries, not browsers), the allowed
// origins, and same-origin pages whose host cannot be rebound.
//
// Same origin alone proves nothing: with DNS rebinding, a page from
// evil.example whose name now resolves to the broker sends Origin
// http://evil.example and Host evil.example. So a page whose Origin host
// and port equal the Host header is let in only when that host is an IP
// address (a page loaded from an address is from that address),
// "localhost" or a name under .localhost (browsers resolve them to
// loopback themselves), or the host name of a WebSocket listener's
// configured address (ws/wss: "broker.example.com:8083"), which the
// operator vouches for. Any other page needs ws_allowed_origins.
type originPolicy struct {
	any     bool
	allowed map[string]bool // normalized scheme://host[:port]
	names   map[string]bool // configured listener host names, lower case
}

// ValidateOrigins checks a WebSocket origin allow-list: each entry is "*"
// (any origin) or an origin such as "https://dashboard.example.com" or
// "http://localhost:3000".
func ValidateOrigins(origins []string) error {
	_, err := newOriginPolicy(origins)
	return err
}

func newOriginPolicy(origins []string, listenAddrs ...string) (originPolicy, error) {
	p := originPolicy{allowed: make(map[string]bool), names: make(map[string]bool)}
	for _, a := range listenAddrs {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" && net.ParseIP(h) == nil {
			p.names[strings.ToLower(h)] = true
		}
	}
	for _, o := range origins {
		if o == "*" {
			p.any = true
			continue
		}
		n, ok := normalizeOrigin(o)
		if !ok {
			return p, fmt.Errorf(`%q is not an origin; write "*" or scheme://host[:port] such as "https://dashboard.example.com"`, o)
		}
		p.allowed[n] = true
	}
	return p, nil
}

// normalizeOrigin lowercases an origin and drops a default port, so that
// "HTTPS://Example.com:443" and the browser's "https://example.com" match.
func normalizeOrigin(o string) (string, bool) {
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if h, port, err := net.SplitHostPort(host); err == nil &&
		((scheme == "http" || scheme == "ws") && port == "80" || (scheme == "https" || scheme == "wss") && port == "443") {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	return scheme + "://" + host, true
}

func (p originPolicy) allows(r *http.Request) bool {
	origin, ok := r.Header["Origin"]
	if !ok || len(origin) == 0 || p.any {
		return true
	}
	u, err := url.Parse(origin[0])
	if err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) && p.unbindable(u.Hostname()) {
		return true // a page served by this host, under a name that cannot be rebound
	}
	n, ok := normalizeOrigin(origin[0])
	return ok && p.allowed[n]
}

// unbindable reports whether a page's host name is one DNS rebinding
// cannot point at the broker: see originPolicy.
func (p originPolicy) unbindable(host string) bool {
	host = strings.ToLower(host)
	return net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") || p.names[host]
}
