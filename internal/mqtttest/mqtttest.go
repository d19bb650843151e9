// Package mqtttest is a tiny wire-level MQTT 3.1.1 client for tests. It
// speaks exactly what a minimal device library such as MicroPython's
// umqtt.simple sends (keepalive 0 allowed, clean session, no pings unless
// asked), so tests can check behaviour byte by byte.
package mqtttest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Packet types.
const (
	CONNECT     = 1
	CONNACK     = 2
	PUBLISH     = 3
	PUBACK      = 4
	SUBSCRIBE   = 8
	SUBACK      = 9
	UNSUBSCRIBE = 10
	UNSUBACK    = 11
	PINGREQ     = 12
	PINGRESP    = 13
	DISCONNECT  = 14
)

// Conn is one raw MQTT connection.
type Conn struct {
	net.Conn
	r       *bufio.Reader
	version byte // 4 (3.1.1) or 5, set by Connect
}

// Dial opens a TCP connection.
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, r: bufio.NewReader(c), version: 4}, nil
}

// Wrap makes a Conn of a connection dialed by other means.
func Wrap(c net.Conn) *Conn { return &Conn{Conn: c, r: bufio.NewReader(c), version: 4} }

// Connect is the CONNECT packet's variable part.
type Connect struct {
	ClientID, Username, Password string
	Keepalive                    uint16
	Clean                        bool
	Version                      byte // 4 (MQTT 3.1.1, the default) or 5
}

func (c Connect) version() byte {
	if c.Version == 5 {
		return 5
	}
	return 4
}

// Encode returns the CONNECT packet bytes.
func (c Connect) Encode() []byte {
	var b []byte
	b = appendString(b, "MQTT")
	b = append(b, c.version())
	flags := byte(0)
	if c.Clean {
		flags |= 0x02
	}
	if c.Username != "" {
		flags |= 0x80
	}
	if c.Password != "" {
		flags |= 0x40
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint16(b, c.Keepalive)
	if c.version() == 5 {
		b = append(b, 0) // no properties
	}
	b = appendString(b, c.ClientID)
	if c.Username != "" {
		b = appendString(b, c.Username)
	}
	if c.Password != "" {
		b = appendString(b, c.Password)
	}
	return Packet(CONNECT<<4, b)
}

// Connect sends CONNECT and returns the CONNACK return code.
func (c *Conn) Connect(p Connect) (byte, error) {
	_, code, err := c.ConnectAck(p)
	return code, err
}

// ConnectAck sends CONNECT and returns the CONNACK's session-present flag
// and return code.
func (c *Conn) ConnectAck(p Connect) (present bool, code byte, err error) {
	c.version = p.version()
	if _, err := c.Write(p.Encode()); err != nil {
		return false, 0, err
	}
	typ, body, err := c.ReadPacket()
	if err != nil {
		return false, 0, err
	}
	if typ != CONNACK || len(body) < 2 {
		return false, 0, fmt.Errorf("expected CONNACK, got type %d (%d bytes)", typ, len(body))
	}
	return body[0]&1 == 1, body[1], nil
}

// Publish sends a PUBLISH at QoS 0 or 1 (packet ID id).
func (c *Conn) Publish(topic string, qos byte, id uint16, payload []byte) error {
	b := appendString(nil, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	if c.version == 5 {
		b = append(b, 0) // no properties
	}
	b = append(b, payload...)
	_, err := c.Write(Packet(PUBLISH<<4|qos<<1, b))
	return err
}

// PublishPacket returns the bytes of an MQTT 3.1.1 QoS 0 PUBLISH, for tests
// that write raw (possibly invalid) packets themselves.
func PublishPacket(topic string, payload []byte) []byte {
	return Packet(PUBLISH<<4, append(appendString(nil, topic), payload...))
}

// Subscribe sends SUBSCRIBE for one filter at QoS 0 and returns the SUBACK
// code.
func (c *Conn) Subscribe(id uint16, filter string) (byte, error) {
	b := binary.BigEndian.AppendUint16(nil, id)
	if c.version == 5 {
		b = append(b, 0) // no properties
	}
	b = appendString(b, filter)
	b = append(b, 0)
	if _, err := c.Write(Packet(SUBSCRIBE<<4|0x02, b)); err != nil {
		return 0, err
	}
	typ, body, err := c.ReadPacket()
	if err != nil {
		return 0, err
	}
	if typ != SUBACK || len(body) < 3 {
		return 0, fmt.Errorf("expected SUBACK, got type %d", typ)
	}
	return body[len(body)-1], nil
}

// SubscribeMany sends one SUBSCRIBE with every filter at QoS 0 and returns
// the SUBACK's codes, one per filter.
func (c *Conn) SubscribeMany(id uint16, filters ...string) ([]byte, error) {
	if _, err := c.Write(SubscribePacket(id, c.version == 5, filters...)); err != nil {
		return nil, err
	}
	return c.readAck(SUBACK, id, len(filters))
}

// SubscribePacket returns the bytes of a SUBSCRIBE of filters at QoS 0,
// for tests that write many without waiting for each SUBACK.
func SubscribePacket(id uint16, v5 bool, filters ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	if v5 {
		b = append(b, 0) // no properties
	}
	for _, f := range filters {
		b = appendString(b, f)
		b = append(b, 0)
	}
	return Packet(SUBSCRIBE<<4|0x02, b)
}

// Unsubscribe sends one UNSUBSCRIBE and returns the UNSUBACK's codes (none
// in MQTT 3.1.1).
func (c *Conn) Unsubscribe(id uint16, filters ...string) ([]byte, error) {
	b := binary.BigEndian.AppendUint16(nil, id)
	if c.version == 5 {
		b = append(b, 0) // no properties
	}
	for _, f := range filters {
		b = appendString(b, f)
	}
	if _, err := c.Write(Packet(UNSUBSCRIBE<<4|0x02, b)); err != nil {
		return nil, err
	}
	n := len(filters)
	if c.version != 5 {
		n = 0
	}
	return c.readAck(UNSUBACK, id, n)
}

// readAck reads a SUBACK or UNSUBACK for packet id with n reason codes,
// skipping PUBLISH packets that arrive first.
func (c *Conn) readAck(want byte, id uint16, n int) ([]byte, error) {
	for {
		typ, body, err := c.ReadPacket()
		if err != nil {
			return nil, err
		}
		if typ == PUBLISH {
			continue
		}
		if typ != want || len(body) < 2 || binary.BigEndian.Uint16(body) != id {
			return nil, fmt.Errorf("expected ack type %d for packet %d, got type %d (%d bytes)", want, id, typ, len(body))
		}
		body = body[2:]
		if c.version == 5 && len(body) > 0 { // skip the properties
			plen, used := 0, 0
			for shift := 0; used < len(body) && used < 4; shift += 7 {
				d := body[used]
				used++
				plen |= int(d&0x7f) << shift
				if d&0x80 == 0 {
					break
				}
			}
			if used+plen > len(body) {
				return nil, errors.New("short ack properties")
			}
			body = body[used+plen:]
		}
		if len(body) != n {
			return nil, fmt.Errorf("ack has %d codes, want %d", len(body), n)
		}
		return body, nil
	}
}

// ReadPuback reads the next packet as a PUBACK and returns its reason code
// (0 when an MQTT 5 PUBACK omits it, and always for MQTT 3.1.1).
func (c *Conn) ReadPuback() (id uint16, code byte, err error) {
	typ, body, err := c.ReadPacket()
	if err != nil {
		return 0, 0, err
	}
	if typ != PUBACK || len(body) < 2 {
		return 0, 0, fmt.Errorf("expected PUBACK, got type %d", typ)
	}
	if len(body) > 2 {
		code = body[2]
	}
	return binary.BigEndian.Uint16(body), code, nil
}

// ReadPacket reads one packet: its type (high nibble of byte 1, plus flags
// in the low bits of the returned header) and body.
func (c *Conn) ReadPacket() (typ byte, body []byte, err error) {
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
		mult *= 128
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return h >> 4, body, nil
}

// ReadPublish reads the next packet and decodes it as a QoS 0 PUBLISH.
func (c *Conn) ReadPublish() (topic string, payload []byte, err error) {
	typ, body, err := c.ReadPacket()
	if err != nil {
		return "", nil, err
	}
	if typ != PUBLISH || len(body) < 2 {
		return "", nil, fmt.Errorf("expected PUBLISH, got type %d", typ)
	}
	tl := int(binary.BigEndian.Uint16(body))
	if 2+tl > len(body) {
		return "", nil, errors.New("short PUBLISH")
	}
	rest := body[2+tl:]
	if c.version == 5 { // skip the properties (QoS 0: no packet ID)
		n, used := 0, 0
		for shift := 0; used < len(rest) && used < 4; shift += 7 {
			d := rest[used]
			used++
			n |= int(d&0x7f) << shift
			if d&0x80 == 0 {
				break
			}
		}
		if used+n > len(rest) {
			return "", nil, errors.New("short PUBLISH properties")
		}
		rest = rest[used+n:]
	}
	return string(body[2 : 2+tl]), rest, nil
}

// Disconnect sends DISCONNECT and closes the connection.
func (c *Conn) Disconnect() error {
	_, _ = c.Write([]byte{DISCONNECT << 4, 0})
	return c.Close()
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Packet prefixes body, of any length, with the fixed header: the
// packet type and flags in header, then the remaining length.
func Packet(header byte, body []byte) []byte {
	out := []byte{header}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}
