package broker

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is a mochi listener over a socket bound before Serve, so that
// Open reports "address in use" and port 0 resolves to a real port. It
// wraps each connection to enforce the CONNECT and write deadlines that
// mochi does not.
type listener struct {
	id  string
	ln  net.Listener
	srv *Server
	log *slog.Logger

	// mochi adds to its client WaitGroup inside establish, racing with its
	// Wait on shutdown; tracking our own connections lets Close finish
	// every handler first, so that race cannot happen.
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener, srv *Server) *listener {
	return &listener{id: id, ln: ln, srv: srv, conns: make(map[net.Conn]struct{})}
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Address() string  { return l.ln.Addr().String() }
func (l *listener) Protocol() string { return l.ln.Addr().Network() }

func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// Serve accepts until the socket is closed.
func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handle(c, establish)
	}
}

func (l *listener) handle(c net.Conn, establish listeners.EstablishFn) {
	defer func() {
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		l.wg.Done()
	}()
	// A connection gets ConnectTimeout to send CONNECT; mochi replaces
	// the deadline with the keepalive one once CONNECT is read.
	_ = c.SetReadDeadline(time.Now().Add(l.srv.opts.ConnectTimeout))
	wc := &conn{Conn: c, srv: l.srv}
	if err := establish(l.id, wc); err != nil {
		// Refusals are logged by the hook with their reason; what is left
		// here is transport noise (resets, timeouts) worth only debug.
		l.srv.log.Debug("connection ended", "listener", l.id, "remote", c.RemoteAddr().String(), "error", err)
	}
}

// Close stops accepting, lets mochi disconnect its clients, closes what
// is left (connections that have not sent CONNECT yet) and waits for every
// handler to return.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	_ = l.ln.Close()
	closeClients(l.id)
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// conn bounds every write, so a client that stops reading is cut off
// instead of blocking its writer, shutdown and revocation forever.
type conn struct {
	net.Conn
	srv *Server
}

// SetDeadline is how mochi applies keepalive; it only concerns reads here,
// because writes carry their own deadline.
func (c *conn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

func (c *conn) Write(b []byte) (int, error) {
	d := c.srv.opts.WriteTimeout
	if c.srv.closing.Load() {
		d = time.Second // shutdown must not wait long for dead peers
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	n, err := c.Conn.Write(b)
	if err != nil {
		// A failed or timed-out write leaves the stream corrupt: close it,
		// which also ends the client's read loop.
		_ = c.Conn.Close()
	}
	return n, err
}
