package broker

import (
	"bytes"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/feedmq/feedmq/channels"
)

// isFeedTopic reports whether a publish to topic is the feed path's:
// reserved, not $. (OnPublish refuses $ topics as free ones; wildcards
// never reach here.)
func isFeedTopic(topic []byte) bool {
	if len(topic) == 0 || topic[0] == '$' {
		return false
	}
	return channels.Reserved(unsafe.String(unsafe.SliceData(topic), len(topic)))
}

// pubFrame is a PUBLISH decoded in place: topic and payload share the
// packet's bytes.
type pubFrame struct {
	qos         byte
	retain, dup bool
	id          uint16
	topic       []byte
	payload     []byte
}

// packetLength decodes the remaining length at the start of b (after the
// fixed header byte): the length and how many bytes encode it. ok is
// false when b ends first (nlen 0) or the encoding runs past four bytes
// (nlen -1).
func packetLength(b []byte) (rem, nlen int, ok bool) {
	shift := 0
	for i := 0; i < len(b); i++ {
		if i == 4 {
			return 0, -1, false
		}
		rem |= int(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return rem, i + 1, true
		}
		shift += 7
	}
	if len(b) >= 4 {
		return 0, -1, false
	}
	return 0, 0, false
}

// decodePublish decodes the body of a PUBLISH whose fixed header byte is
// hb, without allocating. ok is false for anything the read path leaves
// to mochi, which decodes and answers it: QoS 2 or 3, DUP at QoS 0, a
// malformed packet, a topic that is not valid UTF-8 or holds NUL or a
// wildcard, a missing or zero packet ID, and MQTT 5 properties (a topic
// alias among them).
func decodePublish(hb byte, body []byte, v5 bool) (f pubFrame, ok bool) {
	if hb>>4 != packets.Publish {
		return f, false
	}
	f.qos = (hb >> 1) & 3
	f.dup = hb&0x08 != 0
	f.retain = hb&0x01 != 0
	if f.qos > 1 || (f.qos == 0 && f.dup) || len(body) < 2 {
		return f, false
	}
	n := int(body[0])<<8 | int(body[1])
	at := 2 + n
	if n == 0 || at > len(body) {
		return f, false
	}
	f.topic = body[2:at]
	if !utf8.Valid(f.topic) || bytes.IndexByte(f.topic, 0) >= 0 ||
		strings.ContainsAny(unsafe.String(unsafe.SliceData(f.topic), len(f.topic)), "+#") {
		return f, false
	}
	if f.qos == 1 {
		if at+2 > len(body) {
			return f, false
		}
		f.id = uint16(body[at])<<8 | uint16(body[at+1])
		at += 2
		if f.id == 0 {
			return f, false
		}
	}
	if v5 {
		// A property length of zero, one byte; any property goes to
		// mochi.
		if at >= len(body) || body[at] != 0 {
			return f, false
		}
		at++
	}
	f.payload = body[at:]
	return f, true
}
