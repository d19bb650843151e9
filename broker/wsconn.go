package broker

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// wsState makes a conn speak MQTT over WebSocket: reads decode the
// client's frames in place (wsReader), each write is one binary message,
// and the connection ends with a close frame. A conn of a TCP or TLS
// listener has none.
type wsState struct {
	rd wsReader // reader goroutine only
	// pending is an error met after data bytes that were returned first;
	// the next read returns it (reader goroutine only).
	pending error

	wmu       sync.Mutex  // one frame at a time
	closeSent atomic.Bool // a close frame went out (ours or the answer to the client's)
	closeCode atomic.Uint32
	closeOnce sync.Once
	closeErr  error
}

// newWSConn wraps an upgraded WebSocket connection c; messages over limit
// bytes are refused.
func newWSConn(c net.Conn, s *Server, p *pendingSocket, limit uint64) *conn {
	if pc, ok := c.(pendingConn); ok {
		c = pc.Conn // plain TCP underneath: read as the TCP listener's are
	}
	cc := newConn(c, s, p)
	cc.ws = &wsState{rd: wsReader{limit: limit}}
	return cc
}

// takePending returns, once, an error met after bytes already returned.
func (w *wsState) takePending() error {
	err := w.pending
	w.pending = nil
	return err
}

// unframe decodes the n raw bytes at b in place and returns how many are
// data; an error after data is kept for the next read.
func (c *conn) unframe(b []byte) (int, error) {
	n, err := c.ws.rd.unframe(b, c)
	if err != nil {
		var we *wsError
		if errors.As(err, &we) {
			c.ws.closeCode.Store(uint32(we.code))
		}
		if n > 0 {
			c.ws.pending, err = err, nil
		}
	}
	return n, err
}

// wsControl answers a client's ping with a pong, and its close frame with
// one of the same code, after which reads end.
func (c *conn) wsControl(op byte, payload []byte) error {
	switch op {
	case wsPing:
		d := c.armWrite()
		if err := c.writeFrame(wsPong, payload); err != nil {
			c.srv.logWriteError(c.Conn, d, err)
			_ = rawConn(c.Conn).Close()
			return err
		}
		return nil
	case wsClose:
		code := wsCloseCodeOf(payload)
		var reply []byte
		if code != wsCloseNoStatus {
			if !validCloseCode(code) {
				code = wsCloseProtocol
			}
			reply = binary.BigEndian.AppendUint16(nil, code)
		}
		c.armWrite()
		c.ws.wmu.Lock()
		if !c.ws.closeSent.Swap(true) {
			_ = c.writeFrameLocked(wsClose, reply)
		}
		c.ws.wmu.Unlock()
		return errWSClosed
	}
	return nil
}

// readWS is rawRead of a WebSocket connection: it reads until some data
// arrives (a read may hold only frame headers or control frames).
//
//go:noinline
func (c *conn) readWS(p []byte) (int, error) {
	if err := c.ws.takePending(); err != nil {
		return 0, err
	}
	for {
		n, err := c.readSocket(p)
		if n > 0 {
			m, derr := c.unframe(p[:n])
			if m > 0 {
				if err != nil && c.ws.pending == nil {
					c.ws.pending = err
				}
				if gerr := c.sawRead(p, m); gerr != nil {
					return 0, gerr
				}
				return m, nil
			}
			if derr != nil {
				return 0, derr
			}
		}
		if err != nil {
			return 0, err
		}
	}
}

// takeRawWS decodes what rawFn read into b (n bytes); a nil buffer with
// no error means no data came: wait again.
//
//go:noinline
func (c *conn) takeRawWS(b *[]byte, n int) (*[]byte, int, error) {
	m, err := c.unframe((*b)[:n])
	if m == 0 {
		readBufs.Put(b)
		return nil, 0, err
	}
	return b, m, nil
}

// writeWS writes b as one binary message.
func (c *conn) writeWS(b []byte) (int, error) {
	if err := c.writeFrame(wsBinary, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// errWSCloseSent refuses a write after the close frame.
var errWSCloseSent = errors.New("websocket: write after the close frame")

func (c *conn) writeFrame(op byte, payload []byte) error {
	c.ws.wmu.Lock()
	defer c.ws.wmu.Unlock()
	if c.ws.closeSent.Load() {
		return errWSCloseSent
	}
	return c.writeFrameLocked(op, payload)
}

// writeFrameLocked writes one frame, in one write when it fits a read
// buffer; the caller holds wmu.
func (c *conn) writeFrameLocked(op byte, payload []byte) error {
	var h [10]byte
	hdr := appendWSHeader(h[:0], op, len(payload))
	if len(hdr)+len(payload) <= readBufSize {
		b := readBufs.Get().(*[]byte)
		buf := append(append((*b)[:0], hdr...), payload...)
		_, err := c.Conn.Write(buf)
		readBufs.Put(b)
		return err
	}
	bufs := net.Buffers{hdr, payload}
	_, err := bufs.WriteTo(c.Conn)
	return err
}

// closeWS ends a WebSocket connection: the DISCONNECT an MQTT 5 client is
// owed, then a close frame (going away during shutdown, else normal, or
// the code of the violation that ends it) unless a write is stuck or one
// went out, then the socket.
func (c *conn) closeWS() error {
	w := c.ws
	w.closeOnce.Do(func() {
		if c.guarded.owesFarewell(c.srv.closing.Load()) {
			_, _ = c.Write(tooLargeDisconnect)
		}
		wait := time.Second
		if c.srv.closing.Load() {
			wait = 100 * time.Millisecond
		}
		ours := false
		if !w.closeSent.Load() && w.lockWithin(wait) {
			if !w.closeSent.Swap(true) {
				ours = true
				code := uint16(w.closeCode.Load())
				switch {
				case code != 0:
				case c.srv.closing.Load():
					code = wsCloseGoingAway
				default:
					code = wsCloseNormal
				}
				_ = c.Conn.SetWriteDeadline(time.Now().Add(wait))
				_ = c.writeFrameLocked(wsClose, binary.BigEndian.AppendUint16(nil, code))
			}
			w.wmu.Unlock()
		}
		if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok && ours && !c.srv.closing.Load() {
			// The client answers our close frame with its own. Closing at
			// once would meet that answer with a reset, which browsers
			// report as an unclean close: end our side only (a FIN; over
			// TLS a close_notify first), let the reader take the answer,
			// and close within wsLinger.
			_ = hc.CloseWrite()
			_ = c.Conn.SetReadDeadline(time.Now().Add(wsLinger))
			raw := rawConn(c.Conn)
			time.AfterFunc(wsLinger, func() { _ = raw.Close() })
			return
		}
		w.closeErr = rawConn(c.Conn).Close()
	})
	return w.closeErr
}

// wsLinger is how long a connection whose close frame the broker sent
// stays open for the client's answer.
const wsLinger = time.Second

// lockWithin takes the write lock unless a write holds it for longer than
// d: a write in progress (a fan-out racing the close) usually ends within
// microseconds, while a stuck one must not delay the close.
func (w *wsState) lockWithin(d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		if w.wmu.TryLock() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
