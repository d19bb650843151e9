package broker

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

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
// On plain TCP a packet for a client with nothing queued is written at
// once instead, in one non-blocking attempt (writeNow): no goroutine is
// woken, and the goroutine is started only once something has to wait.
type sender struct {
	mu      sync.Mutex
	pend    []byte // packets waiting, back to back
	spare   []byte // the buffer last written, reused for the next backlog
	queued  int    // bytes in pend and in the write in progress
	acks    int32  // PUBACKs in pend (puback.go)
	closed  bool   // the connection is done: queue nothing more
	running bool   // run has been started
	// stop, once set, closes the client after what is queued is written;
	// nothing more is queued.
	stop error
	srv  *Server
	ss   *session
	wake chan struct{}
	done chan struct{}

	// Direct writes on plain TCP; tcp nil for TLS and WebSocket.
	tcp    *net.TCPConn
	raw    syscall.RawConn
	rawFn  func(fd uintptr) bool // one write attempt of wbuf, made once
	wbuf   []byte                // what rawFn writes (mu held)
	wn     int
	werr   error
	wtried bool
}

// send queues an encoded packet for ss's client. Bytes, not packets, are
// bounded: a client with SendQueueBytes waiting (it stopped reading; the
// write timeout will cut it) loses the packet, and so does, once
// SendQueueTotal bytes wait over all subscribers, a client holding more
// than its share of that total (an equal part for every client with
// something waiting), and any client at twice the total; the drop is
// counted. A client with nothing waiting always gets its packet, and one
// under its share keeps a backlog, so clients that do not read cannot
// starve those that do (four stalled subscribers holding the total let a
// reading one get 7 of a 2000-entry burst).
func (ss *session) send(s *Server, pk []byte) { ss.put(s, pk, false) }

// put writes or queues pk for ss's client. A PUBACK (ack) is never
// dropped for the bounds (it is small, and its publisher waits for it),
// and is counted done (ss.acks) once written or lost with the connection.
func (ss *session) put(s *Server, pk []byte, ack bool) {
	var acked int32
	if ack {
		acked = 1
		defer func() { ss.acks.done(s, acked) }()
	}
	q := ss.out.Load()
	if q == nil {
		if q = ss.newSender(s); q == nil {
			return // the session ended
		}
	}
	q.mu.Lock()
	if q.closed || q.stop != nil {
		q.mu.Unlock()
		return
	}
	total, limit := s.queued.Load()+int64(len(pk)), s.opts.SendQueueTotal
	if !ack && q.queued > 0 && (q.queued+len(pk) > s.opts.SendQueueBytes || total > 2*limit ||
		total > limit && int64(q.queued+len(pk)) > limit/max(1, s.backlogged.Load())) {
		q.mu.Unlock()
		s.stats.dropped.Add(1)
		return
	}
	// A delivery is written at once only when no more entries wait to be
	// fanned out: under load the sender goroutine's one write per backlog
	// costs far fewer syscalls than one per delivery (a hundred
	// subscribers of one channel: a write each, per entry). A PUBACK
	// goes to one client and is written at once.
	if q.queued == 0 && q.tcp != nil && (ack || len(s.fanq) == 0) {
		n, err := q.writeNow(pk)
		if err != nil || n == len(pk) {
			if err != nil {
				q.releaseLocked()
			}
			q.mu.Unlock()
			return
		}
		pk = pk[n:] // the rest of the packet must follow: queued whatever the bounds
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
	if ack {
		q.acks++
		acked = 0 // the sender counts it
	}
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.run()
	}
	select {
	case q.wake <- struct{}{}:
	default: // already woken
	}
}

// newSender makes the sender of ss on first use, nil once the session
// ended. Its goroutine starts when first needed (put).
func (ss *session) newSender(s *Server) *sender {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return nil
	}
	if q := ss.out.Load(); q != nil {
		return q
	}
	q := &sender{srv: s, ss: ss, wake: make(chan struct{}, 1), done: make(chan struct{})}
	// Not over WebSocket: each write there must be framed (conn.Write).
	if c, ok := ss.cl.Net.Conn.(*conn); ok && c.ws == nil {
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			if rc, err := tc.SyscallConn(); err == nil {
				q.tcp, q.raw = tc, rc
				q.rawFn = q.writeOnce
			}
		}
	}
	ss.out.Store(q)
	return q
}

// writeNow makes one non-blocking attempt to write b to the socket, with
// q.mu held, so no other packet of this client can pass it. It returns
// how much was written; an error means the connection is closed (as
// conn.Write does after a failed write). When mochi is writing to the
// client, or the write deadline conn.Write set has passed, nothing is
// tried: the sender goroutine writes it (through conn.Write).
func (q *sender) writeNow(b []byte) (int, error) {
	cl := q.ss.cl
	if !cl.TryLock() { // the client's lock serializes whole packets with mochi's
		return 0, nil
	}
	defer cl.Unlock()
	q.wbuf, q.wn, q.werr, q.wtried = b, 0, nil, false
	// An error without an attempt (a passed deadline, a closed socket)
	// is left to conn.Write on the sender goroutine.
	_ = q.raw.Write(q.rawFn)
	n, werr, tried := q.wn, q.werr, q.wtried
	q.wbuf, q.werr = nil, nil
	switch {
	case !tried:
		return 0, nil
	case werr == nil:
		return n, nil
	case werr == syscall.EAGAIN || werr == syscall.EINTR:
		return 0, nil
	}
	// A failed write: the stream may hold part of a packet.
	_ = q.tcp.Close()
	return 0, werr
}

// writeOnce is the syscall.RawConn write function: exactly one attempt,
// never a wait for the socket to become writable.
func (q *sender) writeOnce(fd uintptr) bool {
	q.wtried = true
	n, err := syscall.Write(int(fd), q.wbuf)
	q.wn, q.werr = max(n, 0), err
	return true
}

// stopAfterWrites closes ss's client once what is queued for it is
// written (PUBACKs ahead of a refusal), at once when nothing is.
func (ss *session) stopAfterWrites(err error) {
	if q := ss.out.Load(); q != nil {
		q.mu.Lock()
		if q.queued > 0 && !q.closed {
			q.stop = err
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
	ss.cl.Stop(err)
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
		q.mu.Lock()
		if !q.running {
			q.releaseLocked()
		}
		q.mu.Unlock()
	}
}

// run writes the backlog to the client whenever there is one. A failed
// write has closed the connection (see conn.Write): run gives back what
// was queued and waits for the session to end.
func (q *sender) run() {
	cl, s := q.ss.cl, q.srv
	for {
		select {
		case <-q.wake:
		case <-q.done:
			q.release()
			return
		}
		for {
			q.mu.Lock()
			buf, acks := q.pend, q.acks
			if len(buf) == 0 {
				q.mu.Unlock()
				break
			}
			q.pend, q.spare, q.acks = q.spare[:0], nil, 0
			q.mu.Unlock()
			err := writeRaw(cl, buf)
			q.ss.acks.done(s, acks) // written, or lost with the connection
			n := len(buf)
			if cap(buf) > keptSendBuffer {
				buf = nil // a burst should not pin its memory
			}
			q.mu.Lock()
			if err != nil {
				q.releaseLocked()
				q.mu.Unlock()
				<-q.done
				return
			}
			q.spare = buf
			q.queued -= n
			s.queued.Add(-int64(n))
			var stop error
			if q.queued == 0 {
				s.backlogged.Add(-1)
				stop, q.stop = q.stop, nil
			}
			q.mu.Unlock()
			if stop != nil {
				cl.Stop(stop)
			}
		}
	}
}

// release gives back what an ended sender still counted as queued.
func (q *sender) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked()
}

func (q *sender) releaseLocked() {
	if q.closed {
		return
	}
	q.closed = true
	q.srv.queued.Add(-int64(q.queued))
	if q.queued > 0 {
		q.srv.backlogged.Add(-1)
	}
	q.ss.acks.done(q.srv, q.acks)
	q.queued, q.acks, q.pend, q.spare, q.stop = 0, 0, nil, nil, nil
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
