package broker

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A QoS 1 feed publish whose commit is queued (commitAsync) is
// acknowledged from the fan-out side: fanOutLoop fans the entry out and
// then hands its PUBACK to the publisher's sender, where it goes out in
// the same write as whatever else is queued for that client. The reader
// goes on meanwhile, so a connection has several publishes in the commit
// at once, up to maxUnacked.
//
// The rules that keep this equal to acknowledging on the reader:
//   - PUBACKs go out in the order the PUBLISHes came: each connection
//     keeps its queued publishes in a line, and a PUBACK goes only when
//     those ahead of it went. Anything mochi answers (a refusal, a
//     free-topic publish, a PUBREC) first waits until the connection's
//     PUBACKs are written (drainAcks).
//   - Nothing is acknowledged that is not stored: a failed commit is
//     answered with its reason code (MQTT 5) or, in MQTT 3.1.1, which has
//     no negative PUBACK, by closing the connection once the PUBACKs
//     ahead of it are written; those behind it are not written (their
//     entries may be stored: the client sends them again, at least once).
//   - A connection that closed gets nothing written, and its PUBACKs
//     count as done.

// maxUnacked bounds the QoS 1 publishes of one connection whose PUBACK is
// not written yet; past it the reader waits. feedmq announces no Receive
// Maximum (mochi does not send one), so an MQTT 5 client may send more: it
// is held back by not reading, as an MQTT 3.1.1 client is. Enough for a
// pipelining client to fill a commit with its own entries.
const maxUnacked = 64

// pubAcks is a connection's line of PUBACKs not yet written.
type pubAcks struct {
	mu    sync.Mutex
	slots []*queuedEntry // queued publishes, in the order they came
	head  int            // slots[:head] are gone
	wake  chan struct{}  // made when the reader first waits
	// out counts the PUBACKs reserved and not yet written or dropped:
	// those in slots and those queued in the sender.
	out     atomic.Int32
	waiting atomic.Bool // the reader waits for out to fall
	// stopped is set, on fanOutLoop, when a failed commit closed an
	// MQTT 3.1.1 connection: no later PUBACK is written.
	stopped bool
}

// reserve takes a place in the line for the reader's next publish,
// waiting while maxUnacked are taken.
func (pa *pubAcks) reserve(s *Server) {
	pa.waitFor(maxUnacked - 1)
	pa.out.Add(1)
	s.unacked.Add(1)
}

// unreserve gives back a place no publish took.
func (pa *pubAcks) unreserve(s *Server) { pa.done(s, 1) }

// done counts n PUBACKs written or dropped, and wakes a waiting reader.
func (pa *pubAcks) done(s *Server, n int32) {
	if n == 0 {
		return
	}
	pa.out.Add(-n)
	s.unacked.Add(-int64(n))
	if pa.waiting.Load() {
		pa.mu.Lock()
		w := pa.wake
		pa.mu.Unlock()
		select {
		case w <- struct{}{}:
		default: // already woken
		}
	}
}

// waitFor waits until at most n PUBACKs are out. Every one reserved is
// eventually written or dropped (the store answers every queued append;
// a closed connection drops what it had), so the wait ends.
func (pa *pubAcks) waitFor(n int32) {
	for pa.out.Load() > n {
		pa.mu.Lock()
		if pa.wake == nil {
			pa.wake = make(chan struct{}, 1)
		}
		w := pa.wake
		pa.mu.Unlock()
		// waiting is set before out is read again, and done lowers out
		// before it reads waiting: one of the two sees the other.
		pa.waiting.Store(true)
		if pa.out.Load() > n {
			<-w
		}
		pa.waiting.Store(false)
	}
}

// push puts a queued publish at the end of the line.
func (pa *pubAcks) push(q *queuedEntry) {
	pa.mu.Lock()
	pa.slots = append(pa.slots, q)
	pa.mu.Unlock()
}

// next takes the first publish of the line if it is answered.
func (pa *pubAcks) next() *queuedEntry {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if pa.head == len(pa.slots) || !pa.slots[pa.head].done {
		return nil
	}
	q := pa.slots[pa.head]
	pa.slots[pa.head] = nil
	pa.head++
	if pa.head == len(pa.slots) {
		pa.slots, pa.head = pa.slots[:0], 0
	}
	return q
}

// acksQueued reports whether a QoS 1 publish of ss is queued for commit,
// its PUBACK written after it (true), or committed by the reader. The
// reader commits when no commit is under way (one device at a low
// rate): it waits no longer than the commit, and the entry is fanned
// out and acknowledged without passing to another goroutine. Once
// commits overlap, waiting readers would each be woken after theirs,
// so the publish is queued. A connection with PUBACKs still out queues
// too, so that its PUBACK stays behind them.
func (ss *session) acksQueued(s *Server) bool {
	return ss.acks.out.Load() > 0 || s.inCommit.Load() > 0
}

// drainAcks waits, before mochi answers a publish of QoS qos, until the
// PUBACKs ahead of its answer are written.
func (ss *session) drainAcks(qos byte) {
	if ss != nil && qos > 0 {
		ss.acks.waitFor(0)
	}
}

// ackNow acknowledges a publish the reader committed itself, behind any
// PUBACK still queued for the connection.
func (ss *session) ackNow(s *Server, id uint16) {
	ss.acks.out.Add(1)
	s.unacked.Add(1)
	id = ss.clientID(id, true)
	ss.noteAccepted(s)
	ss.putAck(s, id)
}

// ackBufs holds the 4-byte buffers PUBACKs are encoded into: put copies
// what it queues and does not keep pk, so a buffer is free again when it
// returns (a literal would be allocated for every PUBACK, since put may
// hand pk to the socket through the sender).
var ackBufs = sync.Pool{New: func() any { return new([4]byte) }}

// putAck writes or queues the PUBACK of packet ID id (see put).
func (ss *session) putAck(s *Server, id uint16) {
	b := ackBufs.Get().(*[4]byte)
	*b = [4]byte{packets.Puback << 4, 2, byte(id >> 8), byte(id)}
	ss.put(s, b[:], true)
	ackBufs.Put(b)
}

// noteAccepted records an accepted publish in the device's activity
// before its PUBACK goes: whoever has the PUBACK sees it.
func (ss *session) noteAccepted(s *Server) {
	if ss.act != nil {
		ss.act.published(s.started)
	}
}

// finishAck marks q answered and writes the PUBACKs now due, in order,
// releasing each publish that leaves the line: q is not used after this
// (it may leave the line only in a later call, once those ahead of it
// are answered). It runs on the fan-out side, one entry at a time
// (fanOutQueued).
func (ss *session) finishAck(s *Server, q *queuedEntry) {
	pa := &ss.acks
	pa.mu.Lock()
	q.done = true
	pa.mu.Unlock()
	for q := pa.next(); q != nil; q = pa.next() {
		switch {
		case pa.stopped:
			pa.done(s, 1)
		case q.fail == nil:
			ss.noteAccepted(s)
			ss.putAck(s, q.id)
		case ss.cl.Properties.ProtocolVersion == 5:
			ss.put(s, refusalAck(ss.cl, q.id, q.fail.code), true)
		default:
			// MQTT 3.1.1 has no negative PUBACK: the connection closes
			// once the PUBACKs ahead of this one are written. As when the
			// reader refuses a publish, that is no cause for the will;
			// closed from here, mochi's read would end with an error and
			// send it.
			atomic.StoreUint32(&ss.cl.Properties.Will.Flag, 0)
			pa.stopped = true
			pa.done(s, 1)
			ss.stopAfterWrites(q.fail)
		}
		q.release()
	}
}

// refusalAck encodes an MQTT 5 PUBACK with a failure reason code as mochi
// does (with the reason string, unless the client asked for no problem
// information or it would pass the client's maximum packet size).
func refusalAck(cl *mqtt.Client, id uint16, code packets.Code) []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id,
		ReasonCode: code.Code, ProtocolVersion: 5}
	pk.Properties.ReasonString = code.Reason
	if cl.Properties.Props.RequestProblemInfoFlag && cl.Properties.Props.RequestProblemInfo == 0 {
		pk.Mods.DisallowProblemInfo = true
	}
	pk.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
	var buf bytes.Buffer
	if err := pk.PubackEncode(&buf); err != nil || (pk.Mods.MaxSize > 0 && uint32(buf.Len()) > pk.Mods.MaxSize) {
		return []byte{packets.Puback << 4, 3, byte(id >> 8), byte(id), code.Code}
	}
	return buf.Bytes()
}

// logStoreFailure logs a queued QoS 1 publish whose commit failed, as a
// refused publish is logged (at most one line per rejectLogEvery).
func (ss *session) logStoreFailure(s *Server, channel uint64, rj *rejection) {
	suppressed, ok := ss.logAllowed()
	if !ok {
		return
	}
	s.log.Warn("publish rejected", "client", ss.cl.ID, "device", ss.device, "channel", channel,
		"qos", 1, "reason", rj.reason, "error", rj.err.Error(), "suppressed_since_last", suppressed)
}

// flushAcks waits, at shutdown, until the PUBACKs of committed publishes
// are written, for at most d: the clients are disconnected next.
func (s *Server) flushAcks(d time.Duration) {
	deadline := time.Now().Add(d)
	for s.unacked.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
