package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// Free-topic messages go on one subject, <prefix>.free: NATS keeps one
// publisher's messages on one subject in order, so every node delivers a
// node's messages in the order they were published, across topics as
// MQTT wants per topic. A subject per topic would need MQTT topics
// escaped into subject tokens and would grow NATS's interest graph with
// every topic, for the one saving that a node could skip topics nobody
// on it subscribes to, which it cannot know cheaply anyway (wildcards,
// persistent sessions).
func freeSubject(cluster string) string { return subjectRoot + "." + cluster + ".free" }

// The free message format, version 1, compact because it carries every
// free-topic publish (a sensor payload is often a few bytes):
//
//	version    byte (1)
//	flags      byte: bits 0-1 QoS, bit 2 payload format indicator present
//	format     byte: payload format indicator (0 unless bit 2)
//	origin     string: the node that published it
//	topic      string
//	content    string: content type
//	response   string: response topic
//	correlate  bytes: correlation data
//	expiry     uvarint: message expiry interval, seconds (0: none)
//	users      uvarint count, then key and value strings
//	payload    the rest
//
// A string or bytes field is a uvarint length and that many bytes; MQTT
// bounds each to 65535.
const (
	freeVersion   = 1
	freeQoSMask   = 0x03
	freeFormatBit = 0x04
	// freeOverhead bounds what the format adds to the MQTT publish it
	// carries beyond the MQTT encoding's own size: the origin node and a
	// few header bytes. A message that fit the publishing node's packet
	// limit fits the receiver's limit plus this, when the limits agree.
	freeOverhead = 3 + 3 + MaxNameLen
	maxField     = math.MaxUint16
)

// AppendFree appends m, published on node, in the free message format.
func AppendFree(dst []byte, m *channels.Message, node string) []byte {
	flags := m.QoS & freeQoSMask
	format := byte(0)
	if m.PayloadFormatFlag {
		flags |= freeFormatBit
		format = m.PayloadFormat
	}
	dst = append(dst, freeVersion, flags, format)
	dst = appendField(dst, node)
	dst = appendField(dst, m.Topic)
	dst = appendField(dst, m.ContentType)
	dst = appendField(dst, m.ResponseTopic)
	dst = appendField(dst, m.CorrelationData)
	dst = binary.AppendUvarint(dst, uint64(m.MessageExpiry))
	dst = binary.AppendUvarint(dst, uint64(len(m.User)))
	for _, u := range m.User {
		dst = appendField(dst, u.Key)
		dst = appendField(dst, u.Val)
	}
	return append(dst, m.Payload...)
}

func appendField[T string | []byte](dst []byte, s T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// FreeSize is the length of m's encoding (AppendFree) on node.
func FreeSize(m *channels.Message, node string) int {
	n := 3 + fieldSize(len(node)) + fieldSize(len(m.Topic)) + fieldSize(len(m.ContentType)) +
		fieldSize(len(m.ResponseTopic)) + fieldSize(len(m.CorrelationData)) +
		uvarintSize(uint64(m.MessageExpiry)) + uvarintSize(uint64(len(m.User))) + len(m.Payload)
	for _, u := range m.User {
		n += fieldSize(len(u.Key)) + fieldSize(len(u.Val))
	}
	return n
}

func fieldSize(n int) int { return uvarintSize(uint64(n)) + n }

func uvarintSize(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// DecodeFree parses a free-topic message another node published, of at
// most max bytes. NATS may be shared with other software and a node may
// run another version, so everything is checked: the result is what an
// MQTT client could have published on a free topic, or an error. The
// payload and correlation data alias b.
func DecodeFree(b []byte, max int) (m channels.Message, origin string, err error) {
	if len(b) > max {
		return m, "", fmt.Errorf("free message of %d bytes: over %d", len(b), max)
	}
	if len(b) < 3 {
		return m, "", errors.New("free message: truncated header")
	}
	if b[0] != freeVersion {
		return m, "", fmt.Errorf("free message: unknown version %d", b[0])
	}
	flags, format := b[1], b[2]
	switch {
	case flags&^(freeQoSMask|freeFormatBit) != 0:
		return m, "", errors.New("free message: unknown flags")
	case flags&freeQoSMask == 3:
		return m, "", errors.New("free message: QoS 3")
	case flags&freeFormatBit == 0 && format != 0, format > 1:
		return m, "", fmt.Errorf("free message: payload format indicator %d", format)
	}
	m.QoS = flags & freeQoSMask
	m.PayloadFormatFlag, m.PayloadFormat = flags&freeFormatBit != 0, format
	r := reader{b: b[3:]}
	origin = r.text("origin")
	m.Topic = r.text("topic")
	m.ContentType = r.text("content type")
	m.ResponseTopic = r.text("response topic")
	m.CorrelationData = r.bytes("correlation data")
	expiry := r.uvarint("message expiry")
	users := r.uvarint("user property count")
	if r.err == nil && expiry > math.MaxUint32 {
		r.err = errors.New("message expiry over 2^32-1 seconds")
	}
	// Each property takes two bytes at least: a larger count is a lie
	// that must not size an allocation.
	if r.err == nil && users > uint64(len(r.b)/2) {
		r.err = errors.New("user property count larger than the message")
	}
	if r.err == nil && users > 0 {
		m.User = make([]channels.UserProperty, users)
		for i := range m.User {
			m.User[i] = channels.UserProperty{Key: r.text("user property name"), Val: r.text("user property value")}
		}
	}
	if r.err != nil {
		return channels.Message{}, "", fmt.Errorf("free message: %w", r.err)
	}
	m.MessageExpiry = uint32(expiry)
	m.Payload = r.b
	if err := ValidName(origin); err != nil {
		return channels.Message{}, "", fmt.Errorf("free message: origin node: %w", err)
	}
	if err := freeTopicName(m.Topic); err != nil {
		return channels.Message{}, "", fmt.Errorf("free message: topic: %w", err)
	}
	if m.ResponseTopic != "" && strings.ContainsAny(m.ResponseTopic, "+#") {
		return channels.Message{}, "", errors.New("free message: response topic has a wildcard")
	}
	return m, origin, nil
}

// freeTopicName checks that topic is one a client may publish to and
// mochi routes: not empty, no wildcard, outside the reserved trees.
func freeTopicName(topic string) error {
	switch {
	case topic == "":
		return errors.New("empty")
	case strings.ContainsAny(topic, "+#"):
		return errors.New("has a wildcard")
	case channels.Reserved(topic):
		return errors.New("in a reserved tree")
	}
	return nil
}

// reader takes fields off a message; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n != uvarintSize(v) {
		// A longer form than needed is refused too: one message, one
		// encoding.
		r.err = fmt.Errorf("%s: bad or truncated length", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > maxField || n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%s: length %d past the message or over %d", what, n, maxField)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// text reads a string field: UTF-8 without NUL, as MQTT requires.
func (r *reader) text(what string) string {
	v := r.bytes(what)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(v) || strings.IndexByte(string(v), 0) >= 0 {
		r.err = fmt.Errorf("%s: not UTF-8 without NUL", what)
		return ""
	}
	return string(v)
}
