package broker

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// boundListener is a mochi listener whose socket is bound before Serve.
type boundListener interface {
	listeners.Listener
	// addr is the bound address (port 0 resolved).
	addr() net.Addr
	// release closes the socket of a listener that never served, after a
	// failed Open.
	release()
}

// listener is a mochi listener over a socket bound before Serve, so that
// Open reports "address in use" and port 0 resolves to a real port. It
// wraps each connection to enforce the CONNECT and write deadlines that
// mochi does not. With a TLS config it serves MQTT over TLS (mqtts).
type listener struct {
	id  string
	ln  net.Listener // the bound TCP socket
	tls *tls.Config  // nil for plain MQTT
	srv *Server
	connSet
}

var _ boundListener = (*listener)(nil)

func newListener(id string, ln net.Listener, tlsConfig *tls.Config, srv *Server) *listener {
	return &listener{id: id, ln: ln, tls: tlsConfig, srv: srv}
}

func (l *listener) ID() string      { return l.id }
func (l *listener) Address() string { return l.ln.Addr().String() }
func (l *listener) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}
func (l *listener) addr() net.Addr              { return l.ln.Addr() }
func (l *listener) release()                    { _ = l.ln.Close() }
func (l *listener) Init(log *slog.Logger) error { return nil }

// Serve accepts until the socket is closed.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and go on
			// serving, as net/http does, rather than stop for good.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.srv.log.Error("accept failed; retrying", "listener", l.id, "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p := l.srv.admitSocket(c)
		if l.tls != nil {
			c = tls.Server(c, l.tls)
		}
		if !l.add(c) {
			p.settle()
			_ = rawConn(c).Close()
			return
		}
		l.srv.handlers.run(func() {
			// No defers: this frame is on an idle connection's stack
			// (serveConn), and nothing recovers a panic here.
			l.handle(c, p, establish)
			p.settle()
			l.remove(c)
		})
	}
}

func (l *listener) handle(c net.Conn, p *pendingSocket, establish listeners.EstablishFn) {
	// A connection gets ConnectTimeout to finish the TLS handshake and
	// send CONNECT; mochi replaces the read deadline with the keepalive one
	// once CONNECT is read, and conn bounds every write after that.
	_ = c.SetDeadline(time.Now().Add(l.srv.opts.ConnectTimeout))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			l.srv.logHandshake(l.id, c, err)
			_ = rawConn(c).Close()
			return
		}
	}
	l.srv.serveConn(l.id, newConn(c, l.srv, p))
}

// serveConn serves a connection of the listener until it ends. mochi
// handles its CONNECT and every packet it does not leave to the read
// path, as EstablishConnection would; but the goroutine waits for each
// packet in readClient, a few small frames deep, not under mochi's Read
// and the frames that called it. An idle connection's goroutine then
// uses under a kilobyte of its stack, and the collector shrinks the
// stack, grown to 16 KiB by the CONNECT, to 4 KiB (a stack is halved
// only while less than a quarter of it, less 800 bytes, is in use).
func (s *Server) serveConn(id string, c *conn) {
	// No defer (its record would sit in this frame): nothing here
	// recovers a panic, which ends the process.
	cl, err := s.mochi.ServeClient(id, c)
	if err == nil {
		err = s.readClient(cl, c)
	}
	s.release(c)
	if err != nil {
		s.connEnded(id, c, err)
	}
}

// readClient is mochi's read loop for cl (Client.Read, then what
// attachClient does after it), waiting in c.rp.await for input.
func (s *Server) readClient(cl *mqtt.Client, c *conn) error {
	var err error
	for s.mochi.ReadReady(cl) {
		if err = c.rp.await(); err != nil {
			break
		}
		if err = s.mochi.ReadNext(cl); err != nil {
			break
		}
	}
	if f := beforeEndClient.Load(); f != nil {
		(*f)()
	}
	s.mochi.EndClient(cl, err)
	return err
}

// beforeEndClient, when set (by tests only), runs when a connection's
// reads have ended, before mochi's end of the client.
var beforeEndClient atomic.Pointer[func()]

// connEnded logs the end of a connection, in a frame of its own (kept
// off the stack of an idle connection).
//
//go:noinline
func (s *Server) connEnded(id string, c net.Conn, err error) {
	// Refusals are logged by the hook with their reason; what is left
	// here is transport noise (resets, timeouts) worth only debug.
	s.log.Debug("connection ended", "listener", id, "remote", c.RemoteAddr().String(), "error", err)
}

// newConn wraps the accepted connection c (plain TCP or TLS).
func newConn(c net.Conn, s *Server, p *pendingSocket) *conn {
	cc := &conn{Conn: c, srv: s, pendingSocket: p, guarded: guarded{guard: frameGuard{maxPacket: s.opts.MaxPacketSize}}}
	if tc, ok := c.(*net.TCPConn); ok {
		cc.lazy = true
		if raw, err := tc.SyscallConn(); err == nil {
			cc.raw = raw
			cc.rawFn = cc.rawReadFn
		}
	}
	cc.rp.src = cc
	return cc
}

// Close stops accepting, disconnects its clients, closes what is left
// (connections that have not sent CONNECT yet) and waits for every
// handler to return. mochi's CloseFn is not used: see disconnectClients.
func (l *listener) Close(listeners.CloseFn) {
	if !l.shut() {
		return
	}
	_ = l.ln.Close()
	l.srv.disconnectClients(l.id)
	l.closeAndWait()
}

// disconnectClients sends each client of listener id a DISCONNECT (MQTT 5:
// server shutting down) and ends it, as the CloseFn mochi hands to Close
// would. That one lists the clients with Clients.GetByListener, which
// read-locks the client table twice; a client ending in between (its
// Clients.Delete waiting for the write lock) blocks the second read lock
// and the shutdown for good (mochi v2.7.9, mochi-mqtt/server#488). It
// happened to serve on SIGTERM as 10,000 idle connections were closing.
// GetAll locks once.
func (s *Server) disconnectClients(id string) {
	for _, cl := range s.mochi.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = s.mochi.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// logHandshake logs a failed TLS handshake: at info when it says
// something about a client's configuration (protocol version, unknown
// certificate authority), at debug for resets, timeouts and port scans.
func (s *Server) logHandshake(id string, c net.Conn, err error) {
	level := slog.LevelInfo
	var ne net.Error
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, net.ErrClosed) || // evicted before its CONNECT (admitSocket), already logged
		(errors.As(err, &ne) && ne.Timeout()) {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "tls handshake failed", "listener", id, "remote", c.RemoteAddr().String(), "error", err)
}

// pendingSocket counts a socket that has not sent CONNECT yet.
// max_connections counts connections from CONNECT on; sockets before it
// are bounded separately, by the same number, so that connections that
// never say who they are cannot take every file descriptor (each holds
// one until connect_timeout).
type pendingSocket struct {
	srv  *Server
	c    net.Conn      // closed when evicted
	elem *list.Element // in srv.unconnected.list; nil once out (guarded by its mu)
	once sync.Once
}

// pendingSockets lists the sockets that have not sent CONNECT, oldest
// first.
type pendingSockets struct {
	mu   sync.Mutex
	list list.List // of *pendingSocket
}

// admitSocket counts a new socket c. When max_connections sockets are
// already waiting for their CONNECT, the oldest of them is closed to make
// room: refusing the new one instead would let anyone who renews that
// many idle sockets every connect_timeout keep every device out, where a
// client sends its CONNECT within a round trip of connecting.
func (s *Server) admitSocket(c net.Conn) *pendingSocket {
	p := &pendingSocket{srv: s, c: c}
	var evicted *pendingSocket
	s.unconnected.mu.Lock()
	if s.opts.MaxConnections > 0 && s.unconnected.list.Len() >= s.opts.MaxConnections {
		evicted = s.unconnected.list.Remove(s.unconnected.list.Front()).(*pendingSocket)
		evicted.elem = nil
	}
	p.elem = s.unconnected.list.PushBack(p)
	s.unconnected.mu.Unlock()
	if evicted != nil {
		_ = rawConn(evicted.c).Close()
		s.stats.conns.refused[refusedMaxConns].Add(1)
		s.log.Info("connection closed", "remote", evicted.c.RemoteAddr().String(),
			"reason", "oldest of max_connections sockets that have not sent CONNECT")
	}
	return p
}

// pendingListener counts every socket it accepts as unconnected
// (admitSocket); pendingOf finds the count of an accepted socket.
type pendingListener struct {
	net.Listener
	srv *Server
}

func (l pendingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		return pendingConn{Conn: c, p: l.srv.admitSocket(c)}, nil
	}
}

// pendingConn is a socket accepted by a pendingListener.
type pendingConn struct {
	net.Conn
	p *pendingSocket
}

// pendingKey is the request context key of a WebSocket socket's count.
type pendingKey struct{}

// pendingOf returns the count of a socket accepted by a pendingListener
// (under TLS or not), or nil.
func pendingOf(c net.Conn) *pendingSocket {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(pendingConn); ok {
		return pc.p
	}
	return nil
}

// settle ends the count of p: its CONNECT arrived, or it ended.
func (p *pendingSocket) settle() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		ps := &p.srv.unconnected
		ps.mu.Lock()
		if p.elem != nil {
			ps.list.Remove(p.elem)
			p.elem = nil
		}
		ps.mu.Unlock()
	})
}

// connSet tracks the connections of a listener. mochi adds to its client
// WaitGroup inside establish, racing with its Wait on shutdown; tracking
// our own connections lets Close finish every handler first, so that race
// cannot happen.
type connSet struct {
	mu     sync.Mutex
	closed bool
	set    map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// add registers a connection; it returns false once the listener is
// closed, and the caller must then close c itself.
func (t *connSet) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.set == nil {
		t.set = make(map[net.Conn]struct{})
	}
	t.set[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// remove ends the tracking of a connection whose handler returned.
func (t *connSet) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.set, c)
	t.mu.Unlock()
	t.wg.Done()
}

// shut refuses new connections; it returns false when already shut.
func (t *connSet) shut() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.closed = true
	return true
}

// closeAndWait closes every connection still open and waits for their
// handlers.
func (t *connSet) closeAndWait() {
	t.mu.Lock()
	for c := range t.set {
		_ = rawConn(c).Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// rawConn returns the TCP connection under a TLS one: closing it ends the
// connection at once, where tls.Conn.Close may wait seconds to send a
// close_notify alert to a peer that does not read.
func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// conn bounds every write, so a client that stops reading is cut off
// instead of blocking its writer, shutdown and revocation forever.
type conn struct {
	net.Conn
	*pendingSocket
	srv *Server
	guarded
	// deadline is the write deadline last set (Unix nanoseconds). Moving
	// a deadline costs a timer update, so it is moved only once it has
	// aged by an eighth of the write timeout: every write still gets at
	// least 7/8 of it.
	deadline atomic.Int64
	// mochi moves the keepalive deadline before every packet it reads, a
	// timer update each. With lazy set (plain TCP, whose reads may be
	// retried after a timeout), a later deadline is only noted in readBy
	// and the socket keeps the one in armed; when that one fires, Read
	// arms readBy and reads on. The connection still times out exactly
	// at the last deadline mochi set. Unix nanoseconds; 0: none.
	lazy   bool
	readBy atomic.Int64
	armed  atomic.Int64
	// mochi reads conn as it is, as an io.ByteReader, without a buffer
	// of its own: conn holds a buffer (rp.buf) only while bytes it read
	// wait to be consumed. It waits for input holding none: on plain TCP
	// through raw (rawFn takes a buffer once the socket is readable), on
	// TLS with a read into one.
	raw    syscall.RawConn
	rawFn  func(fd uintptr) bool // rawReadFn, made once
	rawBuf *[]byte               // what rawFn read: rawN bytes, or rawErr
	rawN   int
	rawErr error
	// empty: the last read of the socket (plain TCP, WebSocket) left it
	// empty, as a read shorter than its buffer does.
	empty bool
	one   [16]byte // TLS: the first bytes after a wait
	b1    [1]byte  // ReadByte's, when it reads
	rp    readPath // the read buffer; feed publishes once the session is established
	ws    *wsState // MQTT over WebSocket (wsconn.go); nil for TCP and TLS
}

// SetDeadline is how mochi applies keepalive; it only concerns reads here,
// because writes carry their own deadline.
func (c *conn) SetDeadline(t time.Time) error {
	if !c.lazy {
		return c.Conn.SetReadDeadline(t)
	}
	var want int64
	if !t.IsZero() {
		want = t.UnixNano()
	}
	c.readBy.Store(want)
	if armed := c.armed.Load(); armed != 0 && want >= armed {
		return nil // later: Read moves it when the armed one fires
	}
	c.armed.Store(want)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) Read(p []byte) (int, error) { return c.rp.read(p) }

// ReadByte makes conn an io.ByteReader, which mochi (the fork) reads
// directly instead of through a buffer of its own.
func (c *conn) ReadByte() (byte, error) {
	if rp := &c.rp; rp.give > 0 && rp.r < rp.w {
		b := (*rp.buf)[rp.r]
		rp.r++
		rp.give--
		rp.drop()
		return b, nil
	}
	for range 100 { // as bufio: a reader that keeps returning nothing is broken
		n, err := c.rp.read(c.b1[:])
		if n == 1 {
			return c.b1[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// fill waits for input and returns a buffer from readBufs holding the n
// bytes read, or the error that ended the wait. Nothing is held while it
// waits. Its frame is on an idle connection's stack: the rest is in
// functions of their own.
func (c *conn) fill() (*[]byte, int, error) {
	if c.raw == nil {
		return c.fillSmall()
	}
	for {
		if c.ws != nil && c.ws.pending != nil {
			return nil, 0, c.ws.takePending()
		}
		if err := c.raw.Read(c.rawFn); err != nil {
			if c.rearm(err) {
				continue
			}
			return nil, 0, readError(err)
		}
		if b, n, err := c.takeRaw(); b != nil || err != nil {
			return b, n, err
		}
		// WebSocket frame headers or control frames only: wait again.
	}
}

// fillSmall is fill on TLS: the record is decrypted into tls.Conn's own
// buffer; a small read waits, and the rest is read from there.
//
//go:noinline
func (c *conn) fillSmall() (*[]byte, int, error) {
	n, err := c.rawRead(c.one[:])
	if n == 0 {
		return nil, 0, err
	}
	b := readBufs.Get().(*[]byte)
	return b, copy(*b, c.one[:n]), err
}

// takeRaw returns what rawFn read (over WebSocket, the data in it; nil
// and no error when there was none).
//
//go:noinline
func (c *conn) takeRaw() (*[]byte, int, error) {
	b, n, err := c.rawBuf, c.rawN, c.rawErr
	c.rawBuf, c.rawN, c.rawErr = nil, 0, nil
	if n == 0 {
		return nil, 0, err
	}
	if c.ws != nil {
		if b, n, err = c.takeRawWS(b, n); b == nil {
			return nil, 0, err
		}
	}
	if gerr := c.sawRead(*b, n); gerr != nil {
		readBufs.Put(b)
		return nil, 0, gerr
	}
	return b, n, nil
}

// rearm reports whether the read ended by err may go on: as in rawRead, a
// deadline that mochi has since moved is armed.
//
//go:noinline
func (c *conn) rearm(err error) bool {
	if !c.lazy || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	want := c.readBy.Load()
	if want == c.armed.Load() {
		return false // the deadline mochi set has passed
	}
	c.armed.Store(want)
	return c.Conn.SetReadDeadline(time.Unix(0, want)) == nil
}

// readError is err as the connection's Read would have said it.
func readError(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = "read" // not "raw-read"
	}
	return err
}

// rawReadFn reads the socket fd into a buffer from readBufs, taken only
// once there is something to read; it returns false (wait, then call
// again) while there is nothing.
func (c *conn) rawReadFn(fd uintptr) bool {
	b := readBufs.Get().(*[]byte)
	for {
		n, err := syscall.Read(int(fd), *b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			readBufs.Put(b)
			return false
		case err != nil:
			readBufs.Put(b)
			c.rawErr = &net.OpError{Op: "read", Net: "tcp", Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: os.NewSyscallError("read", err)}
		case n == 0:
			readBufs.Put(b)
			c.rawErr = io.EOF
		default:
			c.rawBuf, c.rawN = b, n
			c.empty = n < len(*b)
		}
		return true
	}
}

// startReadPath hands what the client sends to the read path first.
func (c *conn) startReadPath(s *Server, cl *mqtt.Client) { c.rp.start(s, cl, c) }

// rawRead reads the socket (over WebSocket, the data in its frames).
func (c *conn) rawRead(p []byte) (int, error) {
	if c.ws != nil {
		return c.readWS(p)
	}
	n, err := c.readSocket(p)
	if gerr := c.sawRead(p, n); gerr != nil {
		return 0, gerr
	}
	return n, err
}

// readSocket reads the socket, arming a deadline mochi has moved when the
// one set fires.
func (c *conn) readSocket(p []byte) (int, error) {
	n, err := c.readSocketOnce(p)
	for n == 0 && c.lazy && errors.Is(err, os.ErrDeadlineExceeded) {
		want := c.readBy.Load()
		if want == c.armed.Load() {
			break // the deadline mochi set has passed
		}
		c.armed.Store(want)
		if serr := c.Conn.SetReadDeadline(time.Unix(0, want)); serr != nil {
			break
		}
		n, err = c.readSocketOnce(p)
	}
	return n, err
}

// readSocketOnce is one read of the socket, noting whether it left the
// socket empty (not known over TLS, whose reads end at a record).
func (c *conn) readSocketOnce(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.empty = c.raw != nil && n > 0 && n < len(p)
	return n, err
}

func (c *conn) readEmpty() bool { return c.empty }

func (c *conn) Write(b []byte) (int, error) {
	c.sawWrite(b)
	d := c.armWrite()
	var n int
	var err error
	if c.ws != nil {
		n, err = c.writeWS(b)
	} else {
		n, err = c.Conn.Write(b)
	}
	if err != nil {
		// A failed or timed-out write leaves the stream corrupt: close it,
		// which also ends the client's read loop.
		c.srv.logWriteError(c.Conn, d, err)
		_ = rawConn(c.Conn).Close()
	}
	return n, err
}

// armWrite moves the write deadline when it has aged (see deadline) and
// returns the write timeout.
func (c *conn) armWrite() time.Duration {
	d := c.srv.writeTimeout()
	want := time.Now().Add(d)
	// A shorter timeout (shutdown) applies at once.
	if last := c.deadline.Load(); want.UnixNano() < last || want.UnixNano()-last > int64(d/8) {
		_ = c.Conn.SetWriteDeadline(want)
		c.deadline.Store(want.UnixNano())
	}
	return d
}

// logWriteError says why a connection is cut when a write times out: the
// client stopped reading. Other write errors follow a closed connection
// and are left to the disconnect log.
func (s *Server) logWriteError(c net.Conn, d time.Duration, err error) {
	var ne net.Error // gorilla/websocket hides os.ErrDeadlineExceeded
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		s.log.Info("closing connection: client does not read", "remote", c.RemoteAddr().String(), "write_timeout", d)
	}
}

// Close ends the connection. A TLS connection says goodbye with a
// close_notify alert, except during shutdown, which must not wait for
// peers that do not read.
func (c *conn) Close() error {
	if c.ws != nil {
		return c.closeWS()
	}
	if c.guarded.owesFarewell(c.srv.closing.Load()) {
		c.sayTooLarge()
	}
	if c.srv.closing.Load() {
		return rawConn(c.Conn).Close()
	}
	return c.Conn.Close()
}

// sayTooLarge tells an MQTT 5 client that its packet exceeded the
// maximum packet size, which mochi only answers by closing.
func (c *conn) sayTooLarge() {
	if _, err := c.Write(tooLargeDisconnect); err != nil {
		return
	}
	// Closing a socket with unread input sends a reset, which can
	// overtake the DISCONNECT: half-close, and drain what the client is
	// still sending, for a moment.
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.Conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.CopyN(io.Discard, c.Conn, 1<<20)
	}
}

// writeTimeout bounds one write to a client.
func (s *Server) writeTimeout() time.Duration {
	if s.closing.Load() {
		return time.Second // shutdown must not wait long for dead peers
	}
	return s.opts.WriteTimeout
}
