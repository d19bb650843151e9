package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// rejection is a refused publish: why (for counters and logs) and what to
// tell an MQTT 5 client in its PUBACK.
type rejection struct {
	reason string
	code   packets.Code
	err    error
}

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

var (
	errShutdown     = errors.New("server is shutting down")
	errTopicTooLong = fmt.Errorf("topic longer than %d bytes: no feedmq topic is", channels.MaxTopicLen)
)

// OnPublish is the publish path for MQTT: parse, authorize, commit, fan
// out. The original packet is never delivered as is (Ignore):
// subscribers get the entry on the subscribe topics. A QoS 1 publish is
// acknowledged by feedmq once its entry is on disk (write, puback.go);
// QoS 2, by mochi after this returns. Whatever mochi answers waits for
// the connection's PUBACKs still on their way, so that acknowledgements
// go out in the order the publishes came.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // our own fan-out
	}
	s := h.srv
	ss := s.session(cl)
	if !channels.Reserved(pk.TopicName) {
		ss.drainAcks(pk.FixedHeader.Qos)
		return h.publishFree(cl, ss, pk)
	}
	if strings.HasPrefix(pk.TopicName, "$") {
		// No client publishes to $ topics; nothing is stored either, so
		// the publish is refused as a free one without a rule is (an
		// MQTT 3.1.1 client acknowledged, not disconnected).
		rj := &rejection{reasonBadTopic, packets.ErrTopicNameInvalid, errors.New("clients may not publish to $ topics")}
		s.stats.rejected[rj.reason].Add(1)
		s.logRejection(cl, ss, pk, rj)
		ss.drainAcks(pk.FixedHeader.Qos)
		return pk, s.refuseFree(cl, pk, rj.code)
	}
	var err error
	if ss == nil {
		err = &rejection{reasonNotAuthorized, packets.ErrNotAuthorized, errors.New("connection is no longer authorized")}
	} else {
		err = s.feedPublish(ss, pk.TopicName, pk.Payload, pk.FixedHeader.Qos, pk.PacketID, false)
	}
	switch {
	case err == nil && pk.FixedHeader.Qos == 1:
		// Stored or queued, and acknowledged by write: mochi must
		// neither acknowledge it again nor route it. (mochi would
		// record the PUBACK in the client's in-flight map and encode it
		// as a generic packet, a third of everything a QoS 1 publish
		// allocated in the fan-in profile.) As an ignored QoS 0 packet
		// it goes through mochi's quiet path; ErrRejectPacket would make
		// mochi build a debug log call that copies the whole packet to
		// the heap, every time.
		pk.FixedHeader.Qos, pk.Ignore = 0, true
		return pk, nil
	case err == nil:
		ss.drainAcks(pk.FixedHeader.Qos) // mochi sends the PUBREC of QoS 2
		return pk, packets.CodeSuccessIgnore
	}
	ss.drainAcks(pk.FixedHeader.Qos)
	return pk, s.reject(cl, ss, pk, err)
}

// feedPublish stores a publish of ss's device to a feed topic (reserved,
// not $); at QoS 1 write acknowledges it once stored (puback.go).
// OnPublish and the read path (readpath.go) both call it; an error is the
// rejection the caller answers, after drainAcks. topic and payload are
// not kept after it returns. idle: the publisher's connection has nothing
// else to read now, so a commit the entry waits for may run on this
// goroutine (channels.CallerIdle).
func (s *Server) feedPublish(ss *session, topic string, payload []byte, qos byte, id uint16, idle bool) error {
	err := s.publish(ss.device, topic, payload, pubMode{qos: qos, ss: ss, id: id, idle: idle})
	if err == nil && ss.act != nil && qos != 1 {
		ss.act.published(s.started) // QoS 1: before its PUBACK (puback.go)
	}
	return err
}

// pubMode is how a publish is written and answered: its QoS and, for
// QoS 1 over a connection, whom the PUBACK goes to.
type pubMode struct {
	qos  byte
	ss   *session // the publisher; nil: nobody to acknowledge
	id   uint16   // the packet ID the publish came under (a stand-in, maybe)
	idle bool     // the publisher has nothing else to read (feedPublish)
}

// publish turns one MQTT publish into a stored, fanned-out entry.
// A QoS 0 publish is queued for commit without holding up the
// connection: nothing is acknowledged, and fan-out still waits for the
// commit. A QoS 1 publish is acknowledged after its commit (write).
func (s *Server) publish(device uint64, topic string, payload []byte, m pubMode) error {
	if len(topic) > channels.MaxTopicLen {
		return &rejection{reasonBadTopic, packets.ErrTopicNameInvalid, errTopicTooLong}
	}
	t, err := channels.ParseTopic(topic)
	switch {
	case err != nil:
		return &rejection{reasonBadTopic, packets.ErrTopicNameInvalid, err}
	case t.Kind == channels.KindSensor || t.Kind == channels.KindSensorName:
		return s.publishSensor(device, &t, payload, m)
	case t.Kind != channels.KindPublish:
		return &rejection{reasonBadTopic, packets.ErrNotAuthorized,
			errors.New("only the broker publishes to subscribe topics; publish to channels/<id>/publish")}
	}
	if err := s.registry.CanPublish(device, t.ChannelID, t.Key); err != nil {
		return accessRejection(err)
	}
	ch, ok := s.registry.Channel(t.ChannelID)
	if !ok { // deleted between the two lookups
		return &rejection{reasonUnknownChannel, packets.ErrTopicNameInvalid, auth.ErrUnknownChannel}
	}
	q := s.newQueued()
	var dropped channels.FieldSet
	c := valueChunks.Get().(*channels.Chunks)
	q.e, dropped, err = channels.ParsePayloadIn(ch, t.Field, payload, s.opts.Limits, c)
	valueChunks.Put(c)
	if err != nil {
		q.release()
		return payloadRejection(err)
	}
	s.fieldsDropped(ch.ID, dropped)
	return s.write(q, m)
}

// publishSensor handles a Waziup-style devices/<channel>/sensors/<field>/value
// publish of {"value": ..., "timestamp": ...}. Only device rights apply:
// these topics carry no API key.
func (s *Server) publishSensor(device uint64, t *channels.Topic, payload []byte, m pubMode) error {
	ch, n, err := s.resolveSensor(t)
	if err != nil {
		if errors.Is(err, auth.ErrUnknownChannel) {
			return &rejection{reasonUnknownChannel, packets.ErrTopicNameInvalid, err}
		}
		return &rejection{reasonBadTopic, packets.ErrTopicNameInvalid, err}
	}
	if err := s.registry.CanPublish(device, ch.ID, ""); err != nil {
		return accessRejection(err)
	}
	q := s.newQueued()
	q.e, err = channels.ParseSensorPayload(ch, n, payload, s.opts.Limits)
	if err != nil {
		q.release()
		return payloadRejection(err)
	}
	return s.write(q, m)
}

// write commits q's entry, and owns q from here on. QoS 0 is queued for
// the store's next commit when the store can queue appends, and so is
// QoS 1 from a connection when a commit is under way anyway: its PUBACK
// is written by the fan-out side after the commit (puback.go), so the
// connection reads on meanwhile. (A store whose writer has been idle for
// a while may commit a queued append on the reader before it returns:
// at a low rate the entry then crosses no goroutine at all, fan-out
// included.) Otherwise the reader commits, and acknowledges the publish
// itself.
func (s *Server) write(q *queuedEntry, m pubMode) error {
	ap, async := s.store.(channels.AsyncAppender)
	switch {
	case async && m.qos == 0:
		return s.commitAsync(ap, q, nil, m.idle)
	case async && m.qos == 1 && m.ss != nil && m.ss.acksQueued(s):
		return s.commitAsync(ap, q, &m, m.idle)
	}
	if oa, ok := s.store.(channels.OrderedAppender); ok {
		m.ss.drainAcks(m.qos)
		if err := s.commitOrdered(context.Background(), oa, q, nil); err != nil {
			return err
		}
	} else if err := s.commitHere(q, m); err != nil {
		return err
	}
	if m.qos == 1 && m.ss != nil {
		m.ss.ackNow(s, m.id)
	}
	return nil
}

// commitHere commits q's entry with AppendEntry and fans it out on this
// goroutine, for a store that cannot hand it on in commit order.
func (s *Server) commitHere(q *queuedEntry, m pubMode) error {
	// Nothing holds the entry after.
	defer q.release()
	if m.qos == 1 {
		s.inCommit.Add(1)
		defer s.inCommit.Add(-1)
	}
	// The reader fans this entry out itself: the connection's queued QoS 1
	// entries, which fanOutLoop fans out before their PUBACKs are written,
	// go first, so that subscribers get one client's entries in the order
	// it sent them. (A QoS 1 publish gets here only with none queued.)
	m.ss.drainAcks(m.qos)
	return s.commitStore(context.Background(), &q.e)
}

// commitOrdered commits q's entry and waits for the outcome, like
// commit; the goroutine that ran the commit hands the entry to fan-out
// (queuedCommitted) in commit order, as it does commitAsync's entries,
// so that no entry committed after it, by anyone, reaches subscribers
// first. After a commit it returns once the entry is fanned out, so
// that what the caller answers (a PUBACK, an HTTP response) follows the
// entry's deliveries, as it does when the caller fans out itself. It
// owns q: fan-out releases it after a commit, this after a failure.
// orig, when set, is given the entry's ID and time.
func (s *Server) commitOrdered(ctx context.Context, oa channels.OrderedAppender, q *queuedEntry, orig *channels.Entry) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if err := s.admit(&q.e); err != nil {
		q.release()
		return err
	}
	fanned := fannedChans.Get().(chan struct{})
	defer fannedChans.Put(fanned)
	q.waited, q.orig, q.fanned = true, orig, fanned
	s.pending.Add(1)
	s.inCommit.Add(1)
	if err := oa.AppendEntryThen(ctx, &q.e, queuedCommitted); err != nil {
		// Not fanned out: committed left q to this goroutine, or was
		// not called.
		s.dequeued()
		q.release()
		return storeRejection(err)
	}
	<-fanned
	return nil
}

// fannedChans holds the channels on which fanOutQueued tells a waiting
// committer (commitOrdered, commitBatchOrdered) that its entry is fanned
// out. Each is buffered, so that fan-out on the committer's own goroutine
// does not wait, and empty when put back.
var fannedChans = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

// resolveSensor finds the channel (by ID or by name) and field (field<N>
// or label) of a parsed sensor topic.
func (s *Server) resolveSensor(t *channels.Topic) (*channels.Channel, int, error) {
	var ch *channels.Channel
	if t.ChannelID != 0 {
		c, ok := s.registry.Channel(t.ChannelID)
		if !ok {
			return nil, 0, fmt.Errorf("channel %d: %w", t.ChannelID, auth.ErrUnknownChannel)
		}
		ch = c
	} else {
		c, err := s.registry.ChannelByName(t.Channel)
		if err != nil {
			return nil, 0, err
		}
		ch = c
	}
	n, err := channels.ResolveSensor(ch, t.Sensor)
	if err != nil {
		return nil, 0, err
	}
	return ch, n, nil
}

func accessRejection(err error) *rejection {
	if errors.Is(err, auth.ErrUnknownChannel) {
		return &rejection{reasonUnknownChannel, packets.ErrTopicNameInvalid, err}
	}
	return &rejection{reasonNotAuthorized, packets.ErrNotAuthorized, err}
}

func payloadRejection(err error) *rejection {
	if errors.Is(err, channels.ErrTooLarge) {
		return &rejection{reasonTooLarge, packets.ErrPacketTooLarge, err}
	}
	return &rejection{reasonBadPayload, packets.ErrPayloadFormatInvalid, err}
}

// commit stores an entry durably and then fans it out. It is the one write
// path shared by every transport: nothing is delivered that is not stored.
// e is given its ID and time.
func (s *Server) commit(ctx context.Context, e *channels.Entry) error {
	if oa, ok := s.store.(channels.OrderedAppender); ok {
		q := s.newQueued()
		q.e = *e
		return s.commitOrdered(ctx, oa, q, e)
	}
	return s.commitStore(ctx, e)
}

// commitStore is commit through AppendEntry: e is fanned out here after
// the store's answer.
func (s *Server) commitStore(ctx context.Context, e *channels.Entry) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if err := s.admit(e); err != nil {
		return err
	}
	if err := s.store.AppendEntry(ctx, e); err != nil {
		return storeRejection(err)
	}
	s.stats.accepted.Add(1)
	s.committed(e)
	return nil
}

// commitBatch is commit for a batch of one channel's entries.
func (s *Server) commitBatch(ctx context.Context, es []*channels.Entry) error {
	if len(es) == 0 {
		return nil
	}
	ba, ok := s.store.(channels.BatchAppender)
	if !ok {
		return &rejection{reasonStore, packets.ErrUnspecifiedError, errors.New("the store cannot append a batch")}
	}
	s.gate.RLock()
	defer s.gate.RUnlock()
	if err := s.admit(es[0]); err != nil {
		return err
	}
	if oa, ok := s.store.(channels.OrderedBatchAppender); ok {
		return s.commitBatchOrdered(ctx, oa, es)
	}
	if err := ba.AppendEntries(ctx, es); err != nil {
		if channels.ErrorCode(err) == channels.EINVALID {
			return err
		}
		return storeRejection(err)
	}
	s.stats.accepted.Add(uint64(len(es)))
	for _, e := range es {
		s.committed(e)
	}
	return nil
}

// commitBatchOrdered commits a batch admitted by commitBatch, whose
// caller holds gate for reading, and waits for the outcome; the goroutine
// that ran the commit hands its entries to fan-out in commit order, as
// commitOrdered does one entry, so that no entry committed after them
// reaches subscribers first, and returns once they are fanned out. Each
// entry goes through a queuedEntry of its own, which gives the caller's
// entry its ID and time.
func (s *Server) commitBatchOrdered(ctx context.Context, oa channels.OrderedBatchAppender, es []*channels.Entry) error {
	qs := make([]*queuedEntry, len(es))
	own := make([]*channels.Entry, len(es))
	for i, e := range es {
		q := s.newQueued()
		q.e = *e
		q.waited, q.orig = true, e
		qs[i], own[i] = q, &q.e
	}
	// Fanned out in order: once the last is, all are.
	fanned := fannedChans.Get().(chan struct{})
	defer fannedChans.Put(fanned)
	qs[len(qs)-1].fanned = fanned
	s.pending.Add(len(qs))
	s.inCommit.Add(int64(len(qs)))
	err := oa.AppendEntriesThen(ctx, own, func(err error) {
		if err != nil {
			return // answered below
		}
		for _, q := range qs {
			q.committed(&q.e, nil)
		}
	})
	if err != nil {
		// Not fanned out: then left them to this goroutine, or was not
		// called.
		for _, q := range qs {
			s.dequeued()
			q.release()
		}
		if channels.ErrorCode(err) == channels.EINVALID {
			return err
		}
		return storeRejection(err)
	}
	<-fanned
	return nil
}

// admit applies the checks every write passes before it is stored; the
// caller holds gate for reading.
func (s *Server) admit(e *channels.Entry) error {
	if s.closing.Load() {
		return &rejection{reasonShutdown, packets.ErrServerShuttingDown, errShutdown}
	}
	if err := s.rates.allow(e.ChannelID, s.rateLimit(e.ChannelID), time.Now()); err != nil {
		return &rejection{reasonRateLimited, packets.ErrQuotaExceeded, err}
	}
	return nil
}

// storeRejection is the answer to a write the store refused. A store
// shared by several servers checks the rate limit itself, by the
// database's clock, and is answered as the local check is. A commit
// whose outcome is unknown (the entry may be stored) is a failure like
// any other store error: nothing may claim the entry is stored, so MQTT 5
// gets a PUBACK error code and MQTT 3.1.1 at QoS 1 a disconnect, after
// which the device sends it again (at least once, never lost).
func storeRejection(err error) *rejection {
	switch channels.ErrorCode(err) {
	case channels.ENOTFOUND:
		return &rejection{reasonUnknownChannel, packets.ErrTopicNameInvalid, err}
	case channels.ERATELIMIT:
		return &rejection{reasonRateLimited, packets.ErrQuotaExceeded, err}
	}
	return &rejection{reasonStore, packets.ErrUnspecifiedError, err}
}

// commitAsync queues e for the store's next commit and returns; after the
// commit, the entry goes to the fan-out goroutine (committedAsync).
// Entries keep their order: the store commits in queue order and one
// goroutine fans out. Close waits for every queued entry (pending). With
// ack (QoS 1), the PUBACK is written after the entry is fanned out; the
// connection holds at most maxUnacked publishes unacknowledged, and
// waits here for room. idle lets the store commit on this goroutine
// (channels.CallerIdle).
func (s *Server) commitAsync(ap channels.AsyncAppender, q *queuedEntry, ack *pubMode, idle bool) error {
	if ack != nil {
		ack.ss.acks.reserve(s) // before the gate: Close takes it
	}
	s.gate.RLock()
	defer s.gate.RUnlock()
	if err := s.admit(&q.e); err != nil {
		if ack != nil {
			ack.ss.acks.unreserve(s)
		}
		q.release()
		return err
	}
	if ack != nil {
		q.ss, q.id = ack.ss, ack.ss.clientID(ack.id, true)
		q.ss.acks.push(q)
	}
	s.pending.Add(1)
	s.inCommit.Add(1)
	ctx := context.Background()
	if idle {
		ctx = callerIdle
	}
	if err := ap.AppendEntryAsync(ctx, &q.e, queuedCommitted); err != nil {
		if ack != nil {
			// Its PUBACK is in line behind the connection's earlier
			// ones: the failure is answered there, in order.
			q.committed(&q.e, err)
			return nil
		}
		s.dequeued()
		q.release() // the store did not take it
		return storeRejection(err)
	}
	return nil
}

// callerIdle marks the appends of a reader that has nothing else to read.
var callerIdle = channels.CallerIdle(context.Background())

// dequeued counts off an entry queued with commitAsync: fanned out, or
// failed.
func (s *Server) dequeued() {
	s.inCommit.Add(-1)
	s.pending.Done()
}

// queuedEntry is a publish's entry on its way through commit and
// fan-out, with the publisher to acknowledge (ss nil for QoS 0). Each
// comes from queuedEntries and goes back once nothing refers to it any
// more (release): the entry is stored and fanned out and, at QoS 1 from
// a connection, its PUBACK is answered and it left the connection's
// line.
type queuedEntry struct {
	e    channels.Entry // first: queuedCommitted finds the entry from it
	srv  *Server
	ss   *session
	id   uint16     // the client's packet ID
	fail *rejection // the commit failed
	done bool       // committed or failed: its PUBACK may go (ss.acks.mu)
	// waited marks an entry of commitOrdered, whose caller waits for
	// the outcome and answers a failure itself; orig is its caller's
	// entry, to be given the ID and time.
	waited bool
	orig   *channels.Entry
	// fanned, when set, is told once the entry is fanned out: its
	// committer waits for that.
	fanned chan struct{}
}

// committed runs after the commit on whichever goroutine ran it (the
// store's writer goroutine, a caller of a synchronous append that led
// the commit, or the reader that queued the entry, before
// AppendEntryAsync returns), one entry at a time, in commit order. It
// must not block, so fan-out happens on fanOutLoop, which also writes the PUBACKs, in
// order, after the entry is fanned out; but an entry that is the only one
// queued (inlineFanOut) is fanned out and acknowledged here, which spares
// waking fanOutLoop for every entry at a low rate. A failure is counted
// and logged as a refused publish.
// queuedCommitted is committed as a plain function: a method value
// (q.committed) would be allocated on every publish. e is the e field of
// a queuedEntry, its first, so its address is the queuedEntry's.
func queuedCommitted(e *channels.Entry, err error) {
	(*queuedEntry)(unsafe.Pointer(e)).committed(e, err)
}

func (q *queuedEntry) committed(e *channels.Entry, err error) {
	s := q.srv
	if q.waited {
		if err != nil {
			return // commitOrdered answers it and counts it off
		}
		if q.orig != nil {
			q.orig.ID, q.orig.CreatedAt = e.ID, e.CreatedAt
			q.orig = nil // the caller may go on with it once answered
		}
	}
	if err != nil {
		rj := storeRejection(err)
		s.stats.rejected[rj.reason].Add(1)
		if q.ss == nil {
			s.log.Warn("publish rejected", "channel", e.ChannelID, "qos", 0, "reason", rj.reason, "error", err.Error())
			s.dequeued()
			q.release()
			return
		}
		q.ss.logStoreFailure(s, e.ChannelID, rj)
		q.fail = rj
	} else {
		s.stats.accepted.Add(1)
	}
	if s.inlineFanOut(q) {
		s.fanOutQueued(q, true)
		return
	}
	s.fanq <- q
}

// inlineFanOut reports whether q, just committed, may be fanned out on
// the committing goroutine instead of fanOutLoop. Only when it is the one
// entry committed and not yet fanned out (inCommit counts it, every
// entry of commitAsync, commitOrdered and commitBatchOrdered until it is
// fanned out, and every QoS 1 commit of commitHere): then nothing committed before it waits to be fanned out, so
// subscribers and the publisher get it in the same order as on the
// loop, and no entry queued behind it waits for its fan-out. Under load
// more are queued and fan-out stays on fanOutLoop, batched, beside the
// next commit. Fan-out must not block the commit: deliveries only queue
// or try one non-blocking write (deliver), watchers get non-blocking
// sends, and the locks taken (router, registry, topic index, sender,
// session, watchers) are never held across a wait. Two paths stay on
// fanOutLoop: a failed commit, which may close an MQTT 3.1.1 connection
// (a TLS close may wait to write), and a cluster, whose Published hands
// the entry to NATS.
func (s *Server) inlineFanOut(q *queuedEntry) bool {
	return q.fail == nil && s.opts.Cluster == nil && s.inCommit.Load() == 1
}

// fanOutLoop fans out the entries committed asynchronously, in order, and
// then acknowledges them.
func (s *Server) fanOutLoop() {
	for q := range s.fanq {
		s.fanOutQueued(q, false)
	}
}

// fanOutHook, set by tests only, is called with each queued entry before
// it is fanned out, and whether that happens on the committing goroutine.
var fanOutHook atomic.Pointer[func(e *channels.Entry, inline bool)]

// fanOutQueued fans out a committed queued entry, writes the PUBACKs it
// makes due, and counts it off. Entries go through it one at a time, in
// commit order: on fanOutLoop, or on the committing goroutine when no
// other is queued (inlineFanOut).
func (s *Server) fanOutQueued(q *queuedEntry, inline bool) {
	if f := fanOutHook.Load(); f != nil {
		(*f)(&q.e, inline)
	}
	if q.fail == nil {
		s.committed(&q.e)
	}
	fanned := q.fanned
	if q.ss != nil {
		q.ss.finishAck(s, q) // releases q once it leaves the line
	} else {
		q.release()
	}
	s.dequeued()
	if fanned != nil {
		fanned <- struct{}{}
	}
}

// valueChunks holds the chunks publishes' values are parsed into: one
// allocation for many entries' strings rather than one each. A chunk is
// written once and never reused, so a value stays valid however long its
// entry is kept (a cluster's gap buffer, say); such an entry keeps its
// chunk (8 KiB) in memory. Pooled, so that readers parse in parallel.
var valueChunks = sync.Pool{New: func() any { return new(channels.Chunks) }}

// queuedEntries recycles queuedEntry values: one per publish otherwise,
// the entry copied off the reader's stack included.
var queuedEntries = sync.Pool{New: func() any { return new(queuedEntry) }}

// newQueued returns an empty queuedEntry of s for a publish.
func (s *Server) newQueued() *queuedEntry {
	q := queuedEntries.Get().(*queuedEntry)
	q.srv = s
	return q
}

// release gives q back once nothing refers to it. It clears q, which
// also lets go of the entry's strings and the session; a late use would
// find it cleared (and the race detector would report the write).
func (q *queuedEntry) release() {
	*q = queuedEntry{}
	queuedEntries.Put(q)
}

// fanOut publishes the entry JSON to channels/<id>/subscribe and each set
// field's bare value to its field topic, at QoS 0. Every delivery is
// checked against the subscriber's rights (see deliver).
func (s *Server) fanOut(e *channels.Entry) {
	bp := feedBufs.Get().(*[]byte)
	buf := e.AppendJSON((*bp)[:0])
	topics := s.topics.get(e.ChannelID)
	s.deliver(dest{topic: topics.feed, channel: e.ChannelID}, buf)
	// Field topics cost a publish each, and most brokers have no field
	// subscriber at all: the gate counts filters that could match one.
	for n := 1; n <= channels.NumFields && s.fieldCount.Load() > 0; n++ {
		if v, ok := e.Field(n); ok {
			// deliver copies the payload and never writes to it: the
			// value's own bytes do, without a copy per field.
			s.deliver(dest{topic: topics.fields[n-1], channel: e.ChannelID}, unsafe.Slice(unsafe.StringData(v), len(v)))
		}
	}
	s.fanOutExtra(e, buf)
	if !s.notifyWatchers(e, buf) && cap(buf) <= keptFeedBuffer {
		*bp = buf
		feedBufs.Put(bp)
	}
}

// feedBufs recycles the buffers fanOut writes an entry's JSON into. Every
// subscriber's queue copies the packet made from it (deliver), so once
// fanOut is done only a watcher can still hold it: a buffer handed to a
// watcher is left to it, never recycled.
var feedBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// keptFeedBuffer is the largest JSON buffer recycled: entries with long
// values are rare, and a pooled buffer should not hold on to one.
const keptFeedBuffer = 4 << 10

// reject counts and logs a refused publish and picks the MQTT answer:
// QoS 0 is dropped; MQTT 5 at QoS 1 gets a PUBACK reason code; an MQTT 3
// client at QoS > 0 is disconnected, since any PUBACK would claim the entry
// was stored.
func (s *Server) reject(cl *mqtt.Client, ss *session, pk packets.Packet, err error) error {
	var rj *rejection
	if !errors.As(err, &rj) {
		rj = &rejection{reasonStore, packets.ErrUnspecifiedError, err}
	}
	s.stats.rejected[rj.reason].Add(1)
	s.logRejection(cl, ss, pk, rj)
	switch {
	case pk.FixedHeader.Qos == 0:
		return packets.ErrRejectPacket
	case cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1:
		return rj.code
	case cl.Properties.ProtocolVersion == 5:
		_ = s.mochi.DisconnectClient(cl, rj.code)
	default:
		cl.Stop(rj)
	}
	return packets.ErrRejectPacket
}

// rejectLogEvery bounds rejection logs per connection: a device stuck in a
// loop must not fill the disk with the same line.
const rejectLogEvery = 10 * time.Second

func (s *Server) logRejection(cl *mqtt.Client, ss *session, pk packets.Packet, rj *rejection) {
	device := auth.Anonymous
	suppressed := 0
	if ss != nil {
		device = ss.device
		var ok bool
		if suppressed, ok = ss.logAllowed(); !ok {
			return
		}
	}
	s.log.Warn("publish rejected", "client", cl.ID, "device", device, "topic", safeTopic(pk.TopicName),
		"qos", pk.FixedHeader.Qos, "bytes", len(pk.Payload), "reason", rj.reason, "error", rj.err.Error(),
		"suppressed_since_last", suppressed)
}

// logAllowed reports whether the connection may log a rejection now (one
// every rejectLogEvery), and how many it was refused since the last.
func (ss *session) logAllowed() (suppressed int, ok bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := time.Now()
	if now.Sub(ss.lastLog) < rejectLogEvery {
		ss.suppressed++
		return 0, false
	}
	ss.lastLog, suppressed, ss.suppressed = now, ss.suppressed, 0
	return suppressed, true
}

// safeTopic hides an API key carried in a topic so logs do not leak it.
func safeTopic(topic string) string {
	if t, err := channels.ParseTopic(topic); err == nil && t.Key != "" {
		return t.String() + "/<key>"
	}
	if len(topic) > 256 {
		return topic[:256] + "..."
	}
	return topic
}
