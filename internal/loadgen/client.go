// Package loadgen is the load generator behind `feedmq bench`: a lean
// MQTT 3.1.1 client that reuses its buffers, and the benchmark scenarios
// (fanin, fanout, latency, connect, idle) that drive any broker with it.
package loadgen

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// MQTT control packet types.
const (
	typeConnect    = 1
	typeConnack    = 2
	typePublish    = 3
	typePuback     = 4
	typeSubscribe  = 8
	typeSuback     = 9
	typePingreq    = 12
	typePingresp   = 13
	typeDisconnect = 14
)

// maxRemaining is the largest remaining length MQTT can encode.
const maxRemaining = 268435455

// ErrMalformed reports bytes that are not a well-formed MQTT packet.
var ErrMalformed = errors.New("malformed MQTT packet")

// ConnackError is a CONNACK that refused the connection.
type ConnackError struct{ Code byte }

func (e *ConnackError) Error() string {
	switch e.Code {
	case 4, 5:
		return fmt.Sprintf("connection refused (CONNACK %#x: bad username or password / not authorized)", e.Code)
	default:
		return fmt.Sprintf("connection refused (CONNACK %#x)", e.Code)
	}
}

// Options is what a CONNECT carries. Connections are always clean
// sessions at MQTT 3.1.1.
type Options struct {
	ClientID, Username, Password string
	// Keepalive in seconds; 0 (the default) asks the broker not to expect
	// pings, as MicroPython's umqtt.simple does.
	Keepalive uint16
}

// Packet is one packet read from a connection. Body aliases the
// connection's read buffer and is valid until the next read.
type Packet struct {
	Type  byte // high nibble of the first byte
	Flags byte // low nibble
	Body  []byte
}

// Conn is one MQTT connection. Writes and reads may run in two goroutines
// (one writer, one reader); neither side is safe for more than one.
type Conn struct {
	nc   net.Conn
	r    *bufio.Reader
	wbuf []byte
	rbuf []byte
}

// Dial connects to addr (host:port, or a ws:// URL for MQTT over
// WebSocket), sends CONNECT and waits up to timeout for the
// CONNACK. A refused connection returns a *ConnackError.
func Dial(addr string, o Options, timeout time.Duration) (*Conn, error) {
	return dial(addr, nil, o, timeout, 16<<10)
}

// dial is Dial from local (nil: the system chooses) with a read buffer of
// readBuf bytes (over WebSocket, also the socket's read and write
// buffers).
func dial(addr string, local *net.TCPAddr, o Options, timeout time.Duration, readBuf int) (*Conn, error) {
	var nc net.Conn
	var err error
	if isWS(addr) {
		nc, err = dialWS(addr, local, timeout, readBuf)
	} else {
		d := net.Dialer{Timeout: timeout}
		if local != nil {
			d.LocalAddr, d.Control = local, bindNoPort
		}
		nc, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, readBuf), wbuf: make([]byte, 0, 256), rbuf: make([]byte, 0, 512)}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if err := c.write(AppendConnect(c.wbuf[:0], o)); err != nil {
		nc.Close()
		return nil, err
	}
	p, err := c.ReadPacket()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if p.Type != typeConnack || len(p.Body) < 2 {
		nc.Close()
		return nil, fmt.Errorf("expected CONNACK, got packet type %d", p.Type)
	}
	if p.Body[1] != 0 {
		nc.Close()
		return nil, &ConnackError{Code: p.Body[1]}
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *Conn) write(b []byte) error {
	c.wbuf = b[:0]
	_, err := c.nc.Write(b)
	return err
}

// Publish sends a PUBLISH at QoS 0 or 1; id is the packet ID for QoS 1.
func (c *Conn) Publish(topic string, qos byte, id uint16, payload []byte) error {
	return c.write(AppendPublish(c.wbuf[:0], topic, qos, id, payload))
}

// Subscribe sends one SUBSCRIBE (QoS 0 for every filter) and waits for the
// SUBACK, returning its return codes (0x80 = refused). Packets other than
// the SUBACK that arrive first are dropped.
func (c *Conn) Subscribe(id uint16, filters ...string) ([]byte, error) {
	if err := c.write(AppendSubscribe(c.wbuf[:0], id, filters)); err != nil {
		return nil, err
	}
	for {
		p, err := c.ReadPacket()
		if err != nil {
			return nil, fmt.Errorf("waiting for SUBACK: %w", err)
		}
		if p.Type != typeSuback {
			continue
		}
		if len(p.Body) < 3 || binary.BigEndian.Uint16(p.Body) != id {
			return nil, ErrMalformed
		}
		return append([]byte(nil), p.Body[2:]...), nil
	}
}

// Disconnect sends DISCONNECT and closes the connection.
func (c *Conn) Disconnect() error {
	_, _ = c.nc.Write([]byte{typeDisconnect << 4, 0})
	return c.nc.Close()
}

// Close closes the connection without DISCONNECT.
func (c *Conn) Close() error { return c.nc.Close() }

// SetReadDeadline bounds the next reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// ReadPacket reads the next packet into the connection's buffer.
func (c *Conn) ReadPacket() (Packet, error) {
	var p Packet
	var err error
	p, c.rbuf, err = ReadPacket(c.r, c.rbuf)
	return p, err
}

// ReadPacket reads one packet from r, reusing buf for its body, and returns
// the packet and the (possibly grown) buffer.
func ReadPacket(r *bufio.Reader, buf []byte) (Packet, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return Packet{}, buf, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return Packet{}, buf, noEOF(err)
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return Packet{}, buf, ErrMalformed
		}
		mult *= 128
	}
	if cap(buf) < n {
		buf = make([]byte, n, n+n/2)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return Packet{}, buf, noEOF(err)
	}
	return Packet{Type: h >> 4, Flags: h & 0x0f, Body: buf}, buf, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Publish is a decoded PUBLISH; Topic and Payload alias the packet body.
type Publish struct {
	QoS     byte
	ID      uint16
	Topic   []byte
	Payload []byte
}

// DecodePublish decodes a PUBLISH packet (MQTT 3.1.1).
func DecodePublish(p Packet) (Publish, error) {
	if p.Type != typePublish || len(p.Body) < 2 {
		return Publish{}, ErrMalformed
	}
	qos := (p.Flags >> 1) & 3
	if qos == 3 {
		return Publish{}, ErrMalformed
	}
	tl := int(binary.BigEndian.Uint16(p.Body))
	rest := p.Body[2:]
	if tl > len(rest) {
		return Publish{}, ErrMalformed
	}
	out := Publish{QoS: qos, Topic: rest[:tl]}
	rest = rest[tl:]
	if qos > 0 {
		if len(rest) < 2 {
			return Publish{}, ErrMalformed
		}
		out.ID = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	out.Payload = rest
	return out, nil
}

// DecodePuback returns the packet ID of a PUBACK.
func DecodePuback(p Packet) (uint16, error) {
	if p.Type != typePuback || len(p.Body) < 2 {
		return 0, ErrMalformed
	}
	return binary.BigEndian.Uint16(p.Body), nil
}

// AppendConnect appends a CONNECT packet (MQTT 3.1.1, clean session).
func AppendConnect(b []byte, o Options) []byte {
	n := 2 + 4 + 1 + 1 + 2 + 2 + len(o.ClientID)
	flags := byte(0x02)
	if o.Username != "" {
		flags |= 0x80
		n += 2 + len(o.Username)
	}
	if o.Password != "" {
		flags |= 0x40
		n += 2 + len(o.Password)
	}
	b = appendHeader(b, typeConnect<<4, n)
	b = appendString(b, "MQTT")
	b = append(b, 4, flags)
	b = binary.BigEndian.AppendUint16(b, o.Keepalive)
	b = appendString(b, o.ClientID)
	if o.Username != "" {
		b = appendString(b, o.Username)
	}
	if o.Password != "" {
		b = appendString(b, o.Password)
	}
	return b
}

// AppendPublish appends a PUBLISH packet at QoS 0 or 1.
func AppendPublish(b []byte, topic string, qos byte, id uint16, payload []byte) []byte {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	b = appendHeader(b, typePublish<<4|qos<<1, n)
	b = appendString(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return append(b, payload...)
}

// AppendSubscribe appends a SUBSCRIBE packet asking QoS 0 for each filter.
func AppendSubscribe(b []byte, id uint16, filters []string) []byte {
	n := 2
	for _, f := range filters {
		n += 2 + len(f) + 1
	}
	b = appendHeader(b, typeSubscribe<<4|0x02, n)
	b = binary.BigEndian.AppendUint16(b, id)
	for _, f := range filters {
		b = appendString(b, f)
		b = append(b, 0)
	}
	return b
}

// appendHeader appends the fixed header: the first byte and the remaining
// length n.
func appendHeader(b []byte, first byte, n int) []byte {
	if n < 0 || n > maxRemaining {
		panic("loadgen: packet too large")
	}
	b = append(b, first)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
