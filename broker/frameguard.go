package broker

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// maxConnectSize bounds the first packet of a connection, before it has
// said who it is. mochi allocates a packet's whole declared length as
// soon as it has read the fixed header, so without this bound a few
// bytes ("declaring 64 KiB") cost 64 KiB of every socket that sends them
// and nothing more. A feedmq CONNECT is about 100 bytes (23-byte client
// ID and username, a password, a few MQTT 5 properties); 8 KiB leaves
// room for long client IDs chosen by other libraries, a will (discarded)
// and MQTT 5 user properties or authentication data.
const maxConnectSize = 8 << 10

// errConnectTooLarge ends a connection whose first packet declares more
// than maxConnectSize.
var errConnectTooLarge = fmt.Errorf("first packet larger than %d bytes: not a CONNECT feedmq accepts", maxConnectSize)

// errMalformedLength ends a connection whose remaining length runs past
// four bytes, which MQTT forbids.
var errMalformedLength = errors.New("malformed remaining length")

// frameGuard follows the MQTT framing of what a connection reads, ahead
// of mochi: it sees each packet's fixed header as the bytes go by, so a
// first packet that is too large is refused before mochi allocates its
// buffer, and a later one that exceeds the maximum packet size is noted,
// so that Close can tell an MQTT 5 client why (DISCONNECT 0x95) rather
// than only drop it.
type frameGuard struct {
	maxPacket int // largest packet (fixed header byte + remaining length), as mochi checks it

	state   guardState
	rem     int // remaining length being decoded
	shift   uint
	nlen    int // length bytes read
	skip    int // body bytes still to pass
	packets int // fixed headers complete

	head    [16]byte // the start of the first packet's body (CONNECT)
	headLen int
	level   byte // protocol level of the CONNECT (4: 3.1.1, 5: MQTT 5); 0 unknown

	tooLarge bool // a packet over maxPacket was announced
}

type guardState uint8

const (
	guardHeader guardState = iota // next byte starts a packet
	guardLength                   // reading the remaining length
	guardBody                     // passing a packet's body
	guardDone                     // stopped following (mochi ends the connection)
)

// observe follows the bytes b just read. It returns errConnectTooLarge
// when the first packet is too large and errMalformedLength for a
// remaining length of more than four bytes; other errors in the stream
// are left for mochi to report.
func (g *frameGuard) observe(b []byte) error {
	for i := 0; i < len(b) && g.state != guardDone; {
		switch g.state {
		case guardHeader:
			g.rem, g.shift, g.nlen = 0, 0, 0
			g.state = guardLength
			i++
		case guardLength:
			d := b[i]
			i++
			g.rem |= int(d&0x7f) << g.shift
			g.shift += 7
			g.nlen++
			if d&0x80 != 0 {
				if g.nlen == 4 {
					// Malformed: a length has at most four bytes. mochi
					// reads on, and decodes "80 00" padding as nothing,
					// which would carry a large first packet past the
					// bound above.
					g.state = guardDone
					return errMalformedLength
				}
				continue
			}
			if g.packets == 0 && g.rem > maxConnectSize {
				g.state = guardDone
				return errConnectTooLarge
			}
			if g.maxPacket > 0 && g.rem+1 > g.maxPacket {
				g.tooLarge = true
				g.state = guardDone // mochi stops reading here
				continue
			}
			g.packets++
			g.skip = g.rem
			g.state = guardBody
			if g.skip == 0 {
				g.state = guardHeader
			}
		case guardBody:
			n := min(len(b)-i, g.skip)
			if g.packets == 1 && g.headLen < len(g.head) {
				g.headLen += copy(g.head[g.headLen:], b[i:i+n])
				g.noteLevel()
			}
			i += n
			g.skip -= n
			if g.skip == 0 {
				g.state = guardHeader
			}
		}
	}
	return nil
}

// noteLevel reads the protocol level from the start of the CONNECT: a
// two-byte name length, the name ("MQTT"), then the level.
func (g *frameGuard) noteLevel() {
	if g.level != 0 || g.headLen < 2 {
		return
	}
	at := 2 + (int(g.head[0])<<8 | int(g.head[1]))
	if at < g.headLen {
		g.level = g.head[at]
	}
}

// owesFarewell reports whether the client is owed tooLargeDisconnect: an
// MQTT 5 client announced a packet over the maximum size.
func (g *frameGuard) owesFarewell() bool { return g.tooLarge && g.level >= 5 }

// tooLargeDisconnect is an MQTT 5 DISCONNECT with reason 0x95 (packet too
// large) and no properties.
var tooLargeDisconnect = []byte{0xE0, 2, 0x95, 0}

// guarded is the framing state a connection wrapper (conn) keeps:
// its guard follows the packets read (reader goroutine only); owed is set
// when an MQTT 5 client sent a packet too large and is owed a DISCONNECT
// 0x95, said once a DISCONNECT has been written.
type guarded struct {
	guard      frameGuard
	owed, said atomic.Bool
}

// sawRead follows the n bytes just read into p; an error ends the
// connection before mochi sees them.
func (g *guarded) sawRead(p []byte, n int) error {
	if n <= 0 {
		return nil
	}
	if err := g.guard.observe(p[:n]); err != nil {
		return err
	}
	if g.guard.owesFarewell() {
		g.owed.Store(true)
	}
	return nil
}

// sawWrite notes a DISCONNECT among the whole packets written.
func (g *guarded) sawWrite(b []byte) {
	if len(b) > 0 && b[0] == 0xE0 {
		g.said.Store(true)
	}
}

// owesFarewell reports, once, whether DISCONNECT 0x95 is still to be
// sent before the connection closes (never during shutdown).
func (g *guarded) owesFarewell(closing bool) bool {
	return g.owed.Swap(false) && !g.said.Load() && !closing
}
