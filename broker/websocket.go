package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
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
	readLimit int64
	establish listeners.EstablishFn // set by Serve, before any request
	connSet
}

var _ boundListener = (*wsListener)(nil)

func newWSListener(id string, ln net.Listener, tlsConfig *tls.Config, srv *Server) *wsListener {
	// Sockets are counted as unconnected from the accept on, not from the
	// upgrade: one that never sends its request holds a descriptor too.
	ln = pendingListener{Listener: ln, srv: srv}
	l := &wsListener{id: id, ln: ln, srv: srv, readLimit: int64(srv.opts.MaxPacketSize) + wsReadSlack}
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
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
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
	defer p.settle()
	ws, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered and logged
	}
	raw := ws.UnderlyingConn()
	if !l.add(raw) {
		_ = rawConn(raw).Close()
		return
	}
	defer l.remove(raw)
	// The same CONNECT deadline as TCP; mochi replaces it with the
	// keepalive one once CONNECT is read.
	_ = ws.SetReadDeadline(time.Now().Add(l.srv.opts.ConnectTimeout))
	ws.SetReadLimit(l.readLimit)
	l.srv.establish(l.id, &wsConn{ws: ws, srv: l.srv, pendingSocket: p, guarded: guarded{guard: frameGuard{maxPacket: l.srv.opts.MaxPacketSize}}},
		ws.RemoteAddr(), l.establish)
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

// errTextMessage ends a connection that sends a text message: MQTT over
// WebSocket uses binary messages only (MQTT 3.1.1 §6).
var errTextMessage = errors.New("websocket: text message; MQTT needs binary messages")

// wsConn is a WebSocket connection as the byte stream mochi reads MQTT
// packets from: reads span message boundaries, and each write is one
// binary message sent under a write deadline.
type wsConn struct {
	*pendingSocket
	ws  *websocket.Conn
	srv *Server
	r   io.Reader // the message being read; nil between messages

	guarded
	rp readPath // feed publishes, once the session is established

	wmu       sync.Mutex  // one writer at a time
	closeSent atomic.Bool // a close frame went out (ours or the reply to the peer's)
	closeCode atomic.Int32
	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*wsConn)(nil)

func (c *wsConn) Read(p []byte) (int, error) {
	if c.rp.on() {
		return c.rp.read(p)
	}
	return c.rawRead(p)
}

// startReadPath hands what the client sends to the read path first.
func (c *wsConn) startReadPath(s *Server, cl *mqtt.Client) { c.rp.start(s, cl, c) }

// rawRead reads the next bytes of the stream.
func (c *wsConn) rawRead(p []byte) (int, error) {
	n, err := c.read(p)
	if gerr := c.sawRead(p, n); gerr != nil {
		return 0, gerr
	}
	return n, err
}

func (c *wsConn) read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) || errors.Is(err, websocket.ErrReadLimit) {
					c.closeSent.Store(true) // gorilla has answered with a close frame
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				c.closeCode.Store(websocket.CloseUnsupportedData)
				return 0, errTextMessage
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 && len(p) > 0 {
				continue // an empty message, or the end of one: read on
			}
			return n, nil
		}
		if errors.Is(err, websocket.ErrReadLimit) {
			c.closeSent.Store(true)
		}
		return n, err
	}
}

func (c *wsConn) Write(b []byte) (int, error) {
	c.sawWrite(b)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	d := c.srv.writeTimeout()
	_ = c.ws.SetWriteDeadline(time.Now().Add(d))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		// A failed or timed-out write leaves the stream corrupt: close it,
		// which also ends the client's read loop.
		c.srv.logWriteError(c, d, err)
		_ = rawConn(c.ws.UnderlyingConn()).Close()
		return 0, err
	}
	return len(b), nil
}

// Close sends a close frame when no write is stuck, then closes the
// connection.
func (c *wsConn) Close() error {
	c.closeOnce.Do(func() {
		if c.guarded.owesFarewell(c.srv.closing.Load()) {
			_, _ = c.Write(tooLargeDisconnect)
		}
		wait := time.Second
		if c.srv.closing.Load() {
			wait = 100 * time.Millisecond
		}
		if !c.closeSent.Load() && c.lockWithin(wait) {
			code := int(c.closeCode.Load())
			switch {
			case code != 0:
			case c.srv.closing.Load():
				code = websocket.CloseGoingAway
			default:
				code = websocket.CloseNormalClosure
			}
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(wait))
			c.wmu.Unlock()
		}
		c.closeErr = rawConn(c.ws.UnderlyingConn()).Close()
	})
	return c.closeErr
}

// lockWithin takes the write lock unless a write holds it for longer than
// d: a write in progress (a fan-out racing the close) usually ends within
// microseconds, while a stuck one must not delay the close.
func (c *wsConn) lockWithin(d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		if c.wmu.TryLock() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func (c *wsConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// SetDeadline is how mochi applies keepalive; it only concerns reads,
// because writes carry their own deadline.
func (c *wsConn) SetDeadline(t time.Time) error      { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

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
