package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// An address that starts with ws:// is a broker's MQTT over WebSocket
// endpoint (ws://127.0.0.1:8083/mqtt); any other is host:port over TCP.
const wsScheme = "ws://"

func isWS(addr string) bool { return strings.HasPrefix(strings.ToLower(addr), wsScheme) }

// hostPort returns the host:port that addr connects to.
func hostPort(addr string) string {
	if !isWS(addr) {
		return addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return addr
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

// checkAddr refuses an address bench cannot dial: a ws:// URL must name a
// host (wss:// is not supported: bench measures brokers, not TLS).
func checkAddr(addr string) error {
	if strings.HasPrefix(strings.ToLower(addr), "wss://") {
		return fmt.Errorf("%s: bench speaks MQTT over TCP (host:port) or plain WebSocket (ws://host:port/path), not wss", addr)
	}
	if !isWS(addr) {
		return nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Hostname() == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%s is not a WebSocket URL such as ws://127.0.0.1:8083/mqtt", addr)
	}
	return nil
}

// dialWS opens a WebSocket to addr (a ws:// URL) with subprotocol "mqtt",
// from local (nil: the system chooses), and returns it as the byte stream
// MQTT runs on. bufSize sizes the client's read and write buffers, so
// that an idle run holding many connections stays small.
func dialWS(addr string, local *net.TCPAddr, timeout time.Duration, bufSize int) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout}
	if local != nil {
		nd.LocalAddr, nd.Control = local, bindNoPort
	}
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, a)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			return c, err
		},
		HandshakeTimeout: timeout,
		Subprotocols:     []string{"mqtt"},
		ReadBufferSize:   bufSize,
		WriteBufferSize:  bufSize,
	}
	ws, resp, err := d.Dial(addr, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket %s: %s: %w", addr, resp.Status, err)
		}
		return nil, fmt.Errorf("websocket %s: %w", addr, err)
	}
	return &wsConn{ws: ws}, nil
}

// wsConn is a WebSocket as a net.Conn: each Write is one binary message
// (a whole MQTT packet, as brokers expect), and Read reads on across
// message boundaries. One reader and one writer at a time, as Conn.
type wsConn struct {
	ws *websocket.Conn
	r  io.Reader // the message being read; nil between messages
}

var _ net.Conn = (*wsConn)(nil)

func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, io.EOF // the broker closed the connection
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: the broker sent a text message: %w", ErrMalformed)
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

func (c *wsConn) Write(b []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close closes the socket without a close frame: bench ends connections
// the way a client that drops off does, and a DISCONNECT before it (as
// Conn.Disconnect sends) is the clean end MQTT knows.
func (c *wsConn) Close() error                       { return c.ws.NetConn().Close() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}
