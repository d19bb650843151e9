package broker

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The read path: once a session is established, the connection wrapper
// (conn, over TCP, TLS or WebSocket) splits what the socket delivers into
// MQTT packets ahead of mochi. A QoS 0 or 1 PUBLISH to a feed topic is
// decoded in place and stored by feedPublish, as OnPublish would, without
// mochi's per-packet allocation, copy, decode into an 816-byte Packet and
// hook dispatch. Every other packet, and any feed publish mochi must see
// (MQTT 5 properties, a packet ID a QoS 2 flow holds, a packet over the
// buffer or the maximum size), is handed to mochi's Read as it came, in
// order.
//
// Order holds because mochi processes each packet before it reads again:
// a conn is read by mochi directly, one packet per ReadNext (serveConn),
// and await handles the feed publishes between them.

// readBufSize is the buffer a connection holds while part of a packet is
// in it. A feed publish is a few hundred bytes; a larger packet passes to
// mochi as it arrives.
const readBufSize = 4 << 10

// readBufs holds the buffers of connections with a packet in flight: an
// idle connection holds none.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// rawReader is a connection wrapper (conn) as the read path reads it:
// rawRead reads the socket (following the framing, see guarded) into p;
// fill waits for input without a buffer and returns one from readBufs
// with the n bytes read; SetDeadline moves the keepalive deadline as
// mochi does; readEmpty reports whether the last read of the socket left
// it empty (false when that is not known, as over TLS).
type rawReader interface {
	rawRead(p []byte) (int, error)
	fill() (*[]byte, int, error)
	SetDeadline(t time.Time) error
	readEmpty() bool
}

// readPath is a connection's state on the read path; only the
// connection's reader goroutine uses it.
type readPath struct {
	srv       *Server
	cl        *mqtt.Client
	src       rawReader // set from the start (mochi reads the CONNECT through read)
	v5        bool
	keepalive time.Duration // mochi's read deadline after each packet; 0: none

	buf  *[]byte // from readBufs while bytes are held; nil otherwise
	r, w int     // the held bytes are (*buf)[r:w]
	// give counts the bytes, from r on, that go to mochi as they are
	// (the rest of the packets handed over); beyond w they are still to
	// be read from the socket.
	give int
	// viaMochi sends every later publish through mochi: the client used
	// QoS 2, whose receive quota mochi checks on every publish.
	viaMochi bool
	// off: the stream is no longer followed (an error left bytes
	// unaccounted); everything goes to mochi as read.
	off bool
}

// start turns the read path on for cl, whose session is
// established; cl.Net.Conn is src.
func (rp *readPath) start(s *Server, cl *mqtt.Client, src rawReader) {
	rp.srv, rp.cl, rp.src = s, cl, src
	// mochi has consumed the CONNECT and buffers nothing: what is held
	// starts a packet.
	rp.give = 0
	rp.v5 = cl.Properties.ProtocolVersion >= 5
	if k := cl.State.Keepalive; k > 0 {
		rp.keepalive = time.Duration(k+k/2) * time.Second // as mochi: 1.5 x keepalive
	}
}

// read is the connection's Read once the read path is on.
func (rp *readPath) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if rp.give > 0 {
			if rp.r < rp.w {
				n := copy(p[:min(len(p), rp.give)], (*rp.buf)[rp.r:rp.w])
				rp.r += n
				rp.give -= n
				rp.drop()
				return n, nil
			}
			// The rest of a packet larger than what was held.
			if len(p) < smallRead {
				// mochi's fixed header, byte by byte: buffer.
				if err := rp.fillGiven(); err != nil {
					return 0, err
				}
				continue
			}
			n, err := rp.src.rawRead(p[:min(len(p), rp.give)])
			rp.give -= n
			return n, err
		}
		if rp.off || rp.srv == nil {
			// Not following the stream (or not yet: the CONNECT): all
			// goes to mochi.
			if len(p) >= smallRead {
				return rp.src.rawRead(p)
			}
			rp.give = math.MaxInt // whatever fill reads
			if err := rp.fillGiven(); err != nil {
				rp.give = 0
				return 0, err
			}
			rp.give = rp.w - rp.r
			continue
		}
		if rp.r < rp.w {
			if rp.next() {
				continue
			}
			if rp.off || rp.give > 0 {
				continue
			}
			rp.readRest()
			continue
		}
		// Nothing held.
		b, n, err := rp.src.fill()
		if n == 0 {
			return 0, err
		}
		rp.filled(b, n, err)
	}
}

// filled takes the n bytes a fill read into b; bytes that came with an
// error go to mochi as read, and the connection is ending.
func (rp *readPath) filled(b *[]byte, n int, err error) {
	rp.buf, rp.r, rp.w = b, 0, n
	if err != nil {
		rp.give = n
		rp.off = true
	}
}

// readRest reads more of a packet that is partly held, after it (the
// buffer is held while a packet is in flight). On an error the
// connection is ending: mochi gets what is held, then the error (a
// socket's errors repeat) as it would have.
func (rp *readPath) readRest() {
	b := *rp.buf
	if rp.w == len(b) {
		rp.w = copy(b, b[rp.r:rp.w])
		rp.r = 0
	}
	n, err := rp.src.rawRead(b[rp.w:])
	rp.w += n
	if err != nil {
		rp.give = rp.w - rp.r
		rp.off = true
	}
}

// await returns once a packet for mochi is held, or an error ended the
// wait, handling the feed publishes that come first; mochi then reads
// the packet (conn's Read and ReadByte). It holds no buffer while it
// waits for input (fill). The states it leaves alone (before the read
// path starts, off, a packet partly given) are read's to handle.
func (rp *readPath) await() error {
	for rp.srv != nil && !rp.off && rp.give == 0 {
		if rp.r == rp.w {
			b, n, err := rp.src.fill()
			if n == 0 {
				return err
			}
			rp.filled(b, n, err)
			continue
		}
		if rp.next() || rp.off || rp.give > 0 {
			continue
		}
		rp.readRest()
	}
	return nil
}

// smallRead: a read into less than this is served from a buffer.
const smallRead = 64

// fillGiven reads into a new buffer when nothing is held (give > 0: the
// bytes go to mochi as they are). With bytes, any error comes with the
// next read (a socket's errors repeat).
func (rp *readPath) fillGiven() error {
	b, n, err := rp.src.fill()
	if n == 0 {
		return err
	}
	rp.buf, rp.r, rp.w = b, 0, n
	return nil
}

// drop returns the buffer once nothing is held.
func (rp *readPath) drop() {
	if rp.r == rp.w && rp.buf != nil {
		if len(*rp.buf) == readBufSize {
			readBufs.Put(rp.buf)
		}
		rp.buf, rp.r, rp.w = nil, 0, 0
	}
}

// next looks at the packet at r. It reports true when it consumed a feed
// publish; otherwise it either set give (the packet goes to mochi) or
// left it for more bytes.
func (rp *readPath) next() bool {
	b := (*rp.buf)[rp.r:rp.w]
	rem, nlen, ok := packetLength(b[1:])
	if !ok {
		if nlen < 0 {
			// Malformed: the guard ends such a connection first;
			// should one get here, mochi reports it.
			rp.give = len(b)
			rp.off = true
		}
		return false
	}
	size := 1 + nlen + rem
	hb := b[0]
	if hb>>4 != packets.Publish || size > readBufSize || rp.viaMochi ||
		(rp.srv.opts.MaxPacketSize > 0 && rem+1 > rp.srv.opts.MaxPacketSize) { // mochi's measure: it refuses
		if hb>>4 == packets.Publish && (hb>>1)&3 == 2 {
			rp.viaMochi = true
		}
		rp.give = size
		return false
	}
	if len(b) < size {
		return false // wait for the rest
	}
	f, ok := decodePublish(hb, b[1+nlen:size], rp.v5)
	if !ok || !isFeedTopic(f.topic) {
		if (hb>>1)&3 == 2 {
			rp.viaMochi = true
		}
		rp.give = size
		return false
	}
	// The last packet of a read that left the socket empty: nothing else
	// is to be read before more comes, so its commit may run here.
	idle := rp.r+size == rp.w && rp.src.readEmpty()
	if !rp.handle(&f, size, idle) {
		rp.give = size
		return false
	}
	rp.r += size
	if rp.cl.Closed() {
		rp.stopped()
	}
	rp.drop()
	return true
}

// handle stores the feed publish f (size bytes on the wire) and answers
// it as mochi and OnPublish would; idle: the connection has nothing else
// to read (feedPublish). It returns false, having done nothing, when
// mochi must handle it.
func (rp *readPath) handle(f *pubFrame, size int, idle bool) bool {
	s, cl := rp.srv, rp.cl
	ss := s.session(cl)
	if ss == nil || cl.Closed() {
		return false // ended meanwhile: mochi stops, or OnPublish refuses it
	}
	id := f.id
	if f.qos == 1 {
		var ok bool
		if id, ok = ss.feedPublishID(cl, id); !ok {
			return false
		}
	}
	// What mochi counts for $SYS as it reads a publish.
	info := s.mochi.Info
	atomic.AddInt64(&info.BytesReceived, int64(size))
	atomic.AddInt64(&info.PacketsReceived, 1)
	atomic.AddInt64(&info.MessagesReceived, 1)
	topic := unsafe.String(unsafe.SliceData(f.topic), len(f.topic))
	if err := s.feedPublish(ss, topic, f.payload, f.qos, id, idle); err != nil {
		rp.reject(ss, f, id, err)
	}
	// mochi moves the keepalive deadline before reading each packet.
	var expiry time.Time
	if rp.keepalive > 0 {
		expiry = time.Now().Add(rp.keepalive)
	}
	_ = rp.src.SetDeadline(expiry)
	return true
}

// phantomPuback is a PUBACK for packet ID 0: mochi looks it up among the
// packets in flight, finds nothing and reads on.
var phantomPuback = []byte{packets.Puback << 4, 2, 0, 0}

// stopped follows a publish the read path consumed that stopped the
// client (refused, MQTT 3.1.1 at QoS 1). mochi would then end at the
// top of its read loop without an error, which keeps the will from
// being sent; it is in Read now, so it gets a packet it ignores
// (phantomPuback, left out of the $SYS counts) to get there. Nothing
// else held is read.
func (rp *readPath) stopped() {
	info := rp.srv.mochi.Info
	atomic.AddInt64(&info.PacketsReceived, -1)
	atomic.AddInt64(&info.BytesReceived, -int64(len(phantomPuback)))
	rp.r, rp.w = 0, copy(*rp.buf, phantomPuback)
	rp.give = rp.w
	rp.off = true
}

// reject answers a refused feed publish as OnPublish's caller would:
// counted and logged (s.reject), QoS 0 dropped, MQTT 5 QoS 1 answered
// with a PUBACK carrying the reason, an MQTT 3.1.1 client disconnected.
func (rp *readPath) reject(ss *session, f *pubFrame, id uint16, err error) {
	s, cl := rp.srv, rp.cl
	// The topic may end up in a log kept in memory: not the buffer's.
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: f.qos, Retain: f.retain, Dup: f.dup},
		TopicName:   string(f.topic),
		Payload:     f.payload,
		PacketID:    id,
	}
	ss.drainAcks(f.qos) // the PUBACKs of earlier publishes go first
	rerr := s.reject(cl, ss, pk, err)
	if code, ok := rerr.(packets.Code); ok && f.qos == 1 && rp.v5 {
		// As mochi answers an MQTT 5 QoS 1 publish its OnPublish refused
		// with a code; OnPacketEncode puts the client's packet ID back.
		now := time.Now().Unix()
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Puback},
			PacketID:    id,
			ReasonCode:  code.Code,
			Properties:  packets.Properties{ReasonString: code.Reason},
			Created:     now,
			Expiry:      now + s.mochi.Options.Capabilities.MaximumMessageExpiryInterval,
		})
	}
}

// feedPublishID returns the ID a QoS 1 feed publish with the client's
// packet ID id is handled under (renumberPublish), or false when a QoS 2
// flow of the client holds id: mochi answers that.
func (ss *session) feedPublishID(cl *mqtt.Client, id uint16) (uint16, bool) {
	if _, ok := ss.inboundID(id); ok {
		return 0, false
	}
	if cl.State.Inflight.Len() == 0 {
		return id, true // the usual case, without Get's copy of a Packet (816 bytes)
	}
	held, ok := cl.State.Inflight.Get(id)
	if !ok {
		return id, true
	}
	if held.FixedHeader.Type != packets.Publish && held.FixedHeader.Type != packets.Pubrel {
		return 0, false
	}
	return ss.inboundPublishID(cl, id), true
}
