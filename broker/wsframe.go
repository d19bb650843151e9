package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// WebSocket framing (RFC 6455 §5) as MQTT over WebSocket uses it: the
// client sends binary messages, masked, in frames of any size, and the
// MQTT byte stream is their payloads end to end (MQTT 3.1.1 §6: a message
// may hold several packets, or part of one). The broker decodes the
// frames itself rather than through a WebSocket library, so that an idle
// connection holds no buffer: a frame decoder keeps a few dozen bytes of
// state between reads, and decodes each read in place.

// WebSocket opcodes and close codes.
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xA

	wsCloseNormal      = 1000
	wsCloseGoingAway   = 1001
	wsCloseProtocol    = 1002
	wsCloseUnsupported = 1003
	wsCloseNoStatus    = 1005 // never sent: a close frame without a code
	wsCloseInvalidData = 1007
	wsCloseTooBig      = 1009

	// wsMaxControl is the largest payload of a control frame.
	wsMaxControl = 125
	// wsMaxHeader is the largest frame header: 2 bytes, an 8-byte length
	// and a 4-byte mask.
	wsMaxHeader = 14
)

// wsError is a violation of the framing: the connection ends with a close
// frame of its code.
type wsError struct {
	code uint16
	msg  string
}

func (e *wsError) Error() string { return "websocket: " + e.msg }

// errTextMessage ends a connection that sends a text message: MQTT over
// WebSocket uses binary messages only (MQTT 3.1.1 §6).
var errTextMessage = &wsError{wsCloseUnsupported, "text message; MQTT needs binary messages"}

// wsControl handles a whole control frame the client sent: a ping (to
// answer with a pong) or a close. A non-nil error ends the decoding.
type wsControl interface {
	wsControl(op byte, payload []byte) error
}

// wsReader decodes the frames a client sends into the bytes their data
// messages carry. Its zero value (with limit set) expects a new frame.
type wsReader struct {
	// limit bounds a data message (all its frames); 0: no bound.
	limit uint64

	hdr [wsMaxHeader]byte // the header being read
	hn  uint8             // bytes of it read so far

	op   byte    // the current frame's opcode (continuations: wsBinary); 0 between frames
	left uint64  // payload bytes of the current frame still to come
	key  [4]byte // its mask, rotated so that key[0] masks the next byte
	// inMessage: a fragmented data message continues (its last frame
	// lacked FIN). msg counts the bytes of the data message so far.
	inMessage bool
	msg       uint64

	ctl [wsMaxControl]byte // a control frame's payload, read so far
	cn  uint8
}

// wsHeaderLen returns the length of a client frame header whose second
// byte is b1.
func wsHeaderLen(b1 byte) int {
	switch b1 & 0x7f {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	}
	return 2 + 4
}

// unframe decodes the frame bytes in b in place: on return b[:n] holds the
// data bytes among them, in order. Control frames go to h as they
// complete. An error ends the stream: the n bytes before it are still
// data, and the error is a *wsError (or h's).
func (r *wsReader) unframe(b []byte, h wsControl) (n int, err error) {
	i := 0
	for i < len(b) {
		if r.op == 0 {
			// A header, or the rest of one.
			if r.hn < 2 {
				k := copy(r.hdr[r.hn:2], b[i:])
				r.hn += uint8(k)
				i += k
				if r.hn < 2 {
					break
				}
				if r.hdr[1]&0x80 == 0 {
					// Known now: do not wait for bytes that may never come.
					return n, &wsError{wsCloseProtocol, "unmasked frame from a client"}
				}
			}
			need := wsHeaderLen(r.hdr[1])
			k := copy(r.hdr[r.hn:need], b[i:])
			r.hn += uint8(k)
			i += k
			if int(r.hn) < need {
				break
			}
			r.hn = 0
			if err := r.begin(need, h); err != nil {
				return n, err
			}
			continue
		}
		// Payload of the current frame.
		k := int(min(r.left, uint64(len(b)-i)))
		if r.op >= wsClose {
			copy(r.ctl[r.cn:], b[i:i+k])
			r.mask(r.ctl[r.cn : int(r.cn)+k])
			r.cn += uint8(k)
		} else {
			copy(b[n:], b[i:i+k])
			r.mask(b[n : n+k])
			n += k
		}
		i += k
		r.left -= uint64(k)
		if r.left == 0 {
			if err := r.end(h); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// begin starts the frame whose header (need bytes) is in r.hdr; one
// without payload is handled at once.
func (r *wsReader) begin(need int, h wsControl) error {
	b0, b1 := r.hdr[0], r.hdr[1] // b1's mask bit is checked as it arrives
	fin, op := b0&0x80 != 0, b0&0x0f
	if b0&0x70 != 0 {
		return &wsError{wsCloseProtocol, "reserved bits set (no extension was agreed)"}
	}
	var length uint64
	switch need {
	case 2 + 2 + 4:
		length = uint64(binary.BigEndian.Uint16(r.hdr[2:]))
	case 2 + 8 + 4:
		length = binary.BigEndian.Uint64(r.hdr[2:])
		if length>>63 != 0 {
			return &wsError{wsCloseProtocol, "frame length over 2^63"}
		}
	default:
		length = uint64(b1 & 0x7f)
	}
	copy(r.key[:], r.hdr[need-4:need])
	switch op {
	case wsClose, wsPing, wsPong:
		if !fin || length > wsMaxControl {
			return &wsError{wsCloseProtocol, "fragmented or oversized control frame"}
		}
	case wsBinary, wsText:
		if r.inMessage {
			return &wsError{wsCloseProtocol, "new message inside a fragmented one"}
		}
		if op == wsText {
			return errTextMessage
		}
		r.msg = 0
	case wsContinuation:
		if !r.inMessage {
			return &wsError{wsCloseProtocol, "continuation frame without a message"}
		}
	default:
		return &wsError{wsCloseProtocol, fmt.Sprintf("reserved opcode %#x", op)}
	}
	if op < wsClose {
		// Refused before it is read, from the length the header declares.
		if r.msg += length; r.limit > 0 && r.msg > r.limit {
			return &wsError{wsCloseTooBig, fmt.Sprintf("message over %d bytes", r.limit)}
		}
		r.inMessage = !fin
		op = wsBinary // continuation frames carry data like the first
	}
	r.op, r.left, r.cn = op, length, 0
	if length == 0 {
		return r.end(h)
	}
	return nil
}

// end finishes the current frame.
func (r *wsReader) end(h wsControl) error {
	op := r.op
	r.op = 0
	if op < wsClose {
		return nil
	}
	payload := r.ctl[:r.cn]
	r.cn = 0
	if op == wsClose {
		if len(payload) == 1 {
			return &wsError{wsCloseProtocol, "close frame with a one-byte payload"}
		}
		if len(payload) >= 2 && !utf8.Valid(payload[2:]) {
			return &wsError{wsCloseInvalidData, "close reason is not UTF-8"}
		}
	}
	if op == wsPong {
		return nil
	}
	return h.wsControl(op, payload)
}

// mask unmasks p, the next bytes of the payload, and rotates the key past
// them.
func (r *wsReader) mask(p []byte) {
	if len(p) == 0 {
		return
	}
	k := r.key
	i := 0
	if len(p) >= 8 {
		k4 := uint64(binary.LittleEndian.Uint32(k[:]))
		k8 := k4 | k4<<32
		for ; i+8 <= len(p); i += 8 {
			binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
		}
	}
	for ; i < len(p); i++ {
		p[i] ^= k[i&3] // i is a multiple of 4 past the words
	}
	// The key's position advances by len(p) mod 4.
	s := len(p) & 3
	r.key = [4]byte{k[s&3], k[(s+1)&3], k[(s+2)&3], k[(s+3)&3]}
}

// closeCode returns the code of a close frame's payload, or
// wsCloseNoStatus for none.
func wsCloseCodeOf(payload []byte) uint16 {
	if len(payload) < 2 {
		return wsCloseNoStatus
	}
	return binary.BigEndian.Uint16(payload)
}

// validCloseCode reports whether a client may send code in a close frame:
// the codes IANA registers for use in a close frame (RFC 6455 §7.4 and
// 1012-1014 since; 1004-1006 and 1015 are reserved for reports), and the
// 3000-4999 range of libraries and applications.
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// appendWSHeader appends the header of an unmasked (server) frame of op
// with FIN set and a payload of n bytes.
func appendWSHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
}

// errWSClosed is what reading a connection returns once the client's
// close frame has been answered.
var errWSClosed = errors.New("websocket: closed by the client")
