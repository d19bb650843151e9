package broker

import (
	"slices"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Fan-out does not go through mochi's Publish. Profiles of fan-in showed
// it spending more than a third of the broker's CPU there: for every
// entry it gathers the subscribers of the topic into fresh maps, copies
// the packet and payload for each subscriber and encodes each copy. Here
// the subscribers of a topic are looked up once and kept until any
// subscription changes, the PUBLISH is encoded once per protocol flavour
// and shared by every subscriber, and each subscriber's sender goroutine
// writes whatever is queued for it in one write.
//
// mochi still owns subscriptions (SUBSCRIBE, SUBACK, its topic index) and
// every other packet; its writes and ours are whole packets, serialized by
// the client's lock.

const (
	// keptSendBuffer is the largest buffer a sender keeps between bursts:
	// every subscriber that ever had a backlog holds one.
	keptSendBuffer = 16 << 10
	// maxRoutes bounds the topic cache; it is emptied when full (topics
	// are per channel, so this is far above normal use).
	maxRoutes = 8192
)

// router caches the subscribers of each delivered topic. gen changes with
// every subscription change; a route of an older gen is looked up again.
type router struct {
	gen    atomic.Uint64
	mu     sync.RWMutex
	routes map[string]*route
}

type route struct {
	gen     uint64
	targets []target
}

// target is one subscriber of a topic.
type target struct {
	cl  *mqtt.Client
	ids []int // MQTT 5 subscription identifiers, sorted
}

// invalidate drops every cached route; call it after mochi's topic index
// changed.
func (r *router) invalidate() { r.gen.Add(1) }

// routeFor returns the subscribers of topic.
func (s *Server) routeFor(topic string) *route {
	r := &s.router
	// gen is read before the index: a change after this point bumps gen
	// again, so a route built from an older index is never kept as new.
	g := r.gen.Load()
	r.mu.RLock()
	rt := r.routes[topic]
	r.mu.RUnlock()
	if rt != nil && rt.gen == g {
		return rt
	}
	rt = &route{gen: g}
	for id, sub := range s.mochi.Topics.Subscribers(topic).Subscriptions {
		cl, ok := s.mochi.Clients.Get(id)
		if !ok {
			continue
		}
		t := target{cl: cl}
		// mochi records 0 for a filter subscribed without an identifier;
		// identifiers run from 1, and sending 0 is a protocol error.
		for _, n := range sub.Identifiers {
			if n > 0 {
				t.ids = append(t.ids, n)
			}
		}
		slices.Sort(t.ids)
		rt.targets = append(rt.targets, t)
	}
	r.mu.Lock()
	if r.routes == nil || len(r.routes) >= maxRoutes {
		r.routes = make(map[string]*route)
	}
	r.routes[topic] = rt
	r.mu.Unlock()
	return rt
}

// packetBufs recycles the buffers deliver encodes a PUBLISH into: every
// subscriber's queue copies the bytes, so none outlives the call.
var packetBufs = sync.Pool{New: func() any { return new([]byte) }}

// encodeOnce encodes a PUBLISH into a pooled buffer the first time it is
// needed (*buf nil) and returns the bytes.
func encodeOnce(buf **[]byte, topic string, payload []byte, v5 bool) []byte {
	if *buf == nil {
		b := packetBufs.Get().(*[]byte)
		*b = appendPublish((*b)[:0], topic, payload, v5, nil)
		*buf = b
	}
	return **buf
}

// dest is a topic fan-out delivers to, with what each subscriber's check
// needs: fan-out knows the entry's channel and the topic's form, so no
// delivery parses the topic again or resolves a name in it.
type dest struct {
	topic   string
	channel uint64 // the entry's channel: readers must be allowed to read it
	key     string // the read key the topic carries, "" if none
	exact   bool   // legacy and name forms: only subscribers of exactly topic (or alt)
	alt     string // another filter that gets an exact topic, "" if none
}

// deliver sends payload on d.topic at QoS 0 to every subscriber allowed
// to read it.
func (s *Server) deliver(d dest, payload []byte) {
	topic := d.topic
	s.stats.delivered.Add(1)
	rt := s.routeFor(topic)
	var v4, v5 *[]byte // encoded on first use, then shared
	defer func() {
		for _, b := range []*[]byte{v4, v5} {
			if b != nil && cap(*b) <= keptSendBuffer {
				packetBufs.Put(b)
			}
		}
	}()
	for _, t := range rt.targets {
		ss := s.session(t.cl)
		if ss == nil || t.cl.Closed() {
			continue
		}
		// Rights are checked on every delivery, not cached: revoking a
		// grant stops deliveries at once.
		if !s.registry.MayRead(ss.device, d.channel, d.key) || !exactDeliveryAllowed(t.cl, &d) {
			continue
		}
		var pk []byte
		switch {
		case t.cl.Properties.ProtocolVersion < 5:
			pk = encodeOnce(&v4, topic, payload, false)
		case len(t.ids) > 0:
			pk = appendPublish(nil, topic, payload, true, t.ids)
		default:
			pk = encodeOnce(&v5, topic, payload, true)
		}
		if max := t.cl.Properties.Props.MaximumPacketSize; max > 0 && uint32(len(pk)) > max {
			s.stats.dropped.Add(1) // [MQTT-3.1.2-25]: too large for the client
			continue
		}
		ss.send(s, pk)
	}
}

// sender is the delivery queue of one subscriber: encoded packets are
// appended to pend, and the sender goroutine swaps it for an empty buffer
// and writes it whole, so a backlog costs one write, not one per packet.
type sender struct {
	mu     sync.Mutex
	pend   []byte        // packets waiting, back to back
	spare  []byte        // the buffer last written, reused for the next backlog
	queued int           // bytes in pend and in the write in progress
	closed bool          // run has returned: queue nothing more
	total  *atomic.Int64 // Server.queued
	// backlogged is Server.backlogged, counting senders with queued > 0.
	backlogged *atomic.Int64
	wake       chan struct{}
	done       chan struct{}
}

// send queues an encoded packet for ss's client, starting its sender on
// first use. Bytes, not packets, are bounded: a client with
// SendQueueBytes waiting (it stopped reading; the write timeout will cut
// it) loses the packet, and so does, once SendQueueTotal bytes wait over
// all subscribers, a client holding more than its share of that total
// (an equal part for every client with something waiting), and any
// client at twice the total; the drop is counted. A client with nothing
// waiting always gets its packet, and one under its share keeps a
// backlog, so clients that do not read cannot starve those that do
// (four stalled subscribers holding the total let a reading one get 7
// of a 2000-entry burst).
func (ss *session) send(s *Server, pk []byte) {
	q := ss.out.Load()
	if q == nil {
		if q = ss.startSender(s); q == nil {
			return // the session ended
		}
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	total, limit := s.queued.Load()+int64(len(pk)), s.opts.SendQueueTotal
	if q.queued > 0 && (q.queued+len(pk) > s.opts.SendQueueBytes || total > 2*limit ||
		total > limit && int64(q.queued+len(pk)) > limit/max(1, s.backlogged.Load())) {
		q.mu.Unlock()
		s.stats.dropped.Add(1)
		return
	}
	if q.queued == 0 {
		s.backlogged.Add(1)
	}
	if need := len(q.pend) + len(pk); need > cap(q.pend) {
		// Grow by doubling, but never past the queue's bound: append's
		// own growth could leave a stuck client twice the bytes it may
		// queue.
		grown := make([]byte, len(q.pend), min(max(2*cap(q.pend), need), max(s.opts.SendQueueBytes, need)))
		copy(grown, q.pend)
		q.pend = grown
	}
	q.pend = append(q.pend, pk...)
	q.queued += len(pk)
	s.queued.Add(int64(len(pk)))
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default: // already woken
	}
}

func (ss *session) startSender(s *Server) *sender {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return nil
	}
	if q := ss.out.Load(); q != nil {
		return q
	}
	q := &sender{wake: make(chan struct{}, 1), done: make(chan struct{}), total: &s.queued, backlogged: &s.backlogged}
	ss.out.Store(q)
	go q.run(ss.cl)
	return q
}

// stopSender ends the sender of a closing session.
func (ss *session) stopSender() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return
	}
	ss.ended = true
	if q := ss.out.Load(); q != nil {
		close(q.done)
	}
}

// run writes the backlog to cl whenever there is one. A failed write has
// closed the connection (see conn.Write); the session then ends and so
// does run.
func (q *sender) run(cl *mqtt.Client) {
	defer q.release()
	for {
		select {
		case <-q.wake:
		case <-q.done:
			return
		}
		for {
			q.mu.Lock()
			buf := q.pend
			q.pend, q.spare = q.spare[:0], nil
			q.mu.Unlock()
			if len(buf) == 0 {
				q.spare = buf
				break
			}
			if err := writeRaw(cl, buf); err != nil {
				<-q.done
				return
			}
			n := len(buf)
			if cap(buf) > keptSendBuffer {
				buf = nil // a burst should not pin its memory
			}
			q.mu.Lock()
			q.spare = buf
			q.queued -= n
			q.total.Add(-int64(n))
			if q.queued == 0 {
				q.backlogged.Add(-1)
			}
			q.mu.Unlock()
		}
	}
}

// release gives back what an ended sender still counted as queued.
func (q *sender) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.total.Add(-int64(q.queued))
	if q.queued > 0 {
		q.backlogged.Add(-1)
	}
	q.queued, q.pend, q.spare = 0, nil, nil
}

// writeRaw writes whole encoded packets to cl beside mochi's own writes,
// which hold the same lock. A failed write has closed the connection
// (conn.Write).
func writeRaw(cl *mqtt.Client, b []byte) error {
	cl.Lock()
	defer cl.Unlock()
	_, err := cl.Net.Conn.Write(b)
	return err
}

// appendPublish appends a QoS 0 PUBLISH of payload on topic. MQTT 5 adds
// a property section: empty, or the subscription identifiers.
func appendPublish(b []byte, topic string, payload []byte, v5 bool, ids []int) []byte {
	var props []byte
	if v5 {
		for _, id := range ids {
			props = append(props, 0x0B) // Subscription Identifier
			props = appendVarint(props, id)
		}
	}
	n := 2 + len(topic) + len(payload)
	if v5 {
		n += varintLen(len(props)) + len(props)
	}
	b = append(b, 0x30) // PUBLISH, QoS 0, no DUP, no RETAIN
	b = appendVarint(b, n)
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	if v5 {
		b = appendVarint(b, len(props))
		b = append(b, props...)
	}
	return append(b, payload...)
}

// appendVarint appends MQTT's variable byte integer.
func appendVarint(b []byte, n int) []byte {
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func varintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}
