package broker

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Free topics (everything outside channels/, devices/ and $) are plain
// MQTT: mochi routes them, with QoS 0/1/2, retained messages, wills and
// persistent sessions, and the hook only decides who may do what, by the
// access rules of auth.Registry.FreeAccess. The reserved trees keep their
// own path (hook_feed.go, fanout.go): nothing of theirs goes through
// mochi's routing, is retained, queued or stored in a session.

// maxWritesPending is mochi's per-client send queue, in packets.
const maxWritesPending = 256

// deadWillTopic is where a will refused when it is due goes: mochi sends
// every will OnWill returns, and no client may subscribe to a $ topic.
const deadWillTopic = "$feedmq/refused-will"

// topicLimit is the longest topic or filter accepted in topic's tree.
func (s *Server) topicLimit(topic string) int {
	if channels.Reserved(topic) {
		return channels.MaxTopicLen
	}
	return s.opts.MaxFreeTopicLen
}

// clientDevice returns the device a client acts for, and its username
// for %u: the live session's, or for a persistent session whose client
// is away, the owner of its client ID, or Anonymous for a session opened
// without a username. ok is false when nobody may act for it any more
// (the device was deleted, or anonymous connections disabled).
func (s *Server) clientDevice(cl *mqtt.Client) (device uint64, username string, ok bool) {
	username = string(cl.Properties.Username)
	if ss := s.session(cl); ss != nil {
		return ss.device, username, true
	}
	return s.sessionOwner(cl.ID, username)
}

// sessionOwner returns who a session opened by clientID with username
// belongs to now: the device that owns the client ID, or Anonymous.
func (s *Server) sessionOwner(clientID, username string) (device uint64, _ string, ok bool) {
	id, owned := s.registry.ClientIDOwner(clientID)
	switch {
	case owned && username != "":
		return id, username, true
	case !owned && username == "":
		return auth.Anonymous, "", s.opts.Anonymous
	}
	// A device deleted, or an anonymous session on what is now a
	// device's client ID: nobody's.
	return 0, username, false
}

// anonymousSessionSlot reports whether an anonymous client may open a
// persistent session as clientID: it resumes its own, or fewer than
// MaxAnonymousSessions are held.
func (s *Server) anonymousSessionSlot(clientID string) bool {
	n := 0
	for id, cl := range s.mochi.Clients.GetAll() {
		if id == clientID {
			return true
		}
		if !cl.Net.Inline && len(cl.Properties.Username) == 0 && persistent(cl) {
			n++
		}
	}
	return n < s.opts.MaxAnonymousSessions
}

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion >= 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// publishFree decides a publish on a free topic: allowed by the
// publisher's rules, it goes on through mochi (acknowledged, retained,
// routed) once its bindings have made their entries; refused, it is
// acknowledged and dropped, as Mosquitto does, or answered 0x87 in MQTT 5.
func (h *hook) publishFree(cl *mqtt.Client, ss *session, pk packets.Packet) (packets.Packet, error) {
	s := h.srv
	topic := pk.TopicName
	var rj *rejection
	switch {
	case ss == nil:
		rj = &rejection{reasonNotAuthorized, packets.ErrNotAuthorized, errors.New("connection is no longer authorized")}
	case len(topic) > s.opts.MaxFreeTopicLen:
		rj = &rejection{reasonBadTopic, packets.ErrTopicNameInvalid,
			fmt.Errorf("topic longer than %d bytes (limits.max_free_topic_length)", s.opts.MaxFreeTopicLen)}
	case !s.registry.FreeAccess(ss.device, auth.AccessWrite, topic, cl.ID, string(cl.Properties.Username)):
		rj = &rejection{reasonNotAuthorized, packets.ErrNotAuthorized, errors.New("no access rule allows writing this topic")}
	}
	if rj != nil {
		s.stats.rejected[rj.reason].Add(1)
		s.logRejection(cl, ss, pk, rj)
		return pk, s.refuseFree(cl, pk, rj.code)
	}
	switch {
	case pk.FixedHeader.Retain && s.shared != nil:
		// Kept in the shared store before mochi acknowledges it.
		keep, err := s.shared.commit(cl, retainedFromPublish(cl, &pk))
		if err != nil {
			return pk, s.reject(cl, ss, pk, err)
		}
		pk.FixedHeader.Retain = keep
	case pk.FixedHeader.Retain && len(pk.Payload) > 0 && !s.retained.admit(s, cl, topic, len(pk.Payload)):
		pk.FixedHeader.Retain = false // delivered, not kept
	}
	s.bindPublish(ss.device, cl.ID, topic, pk.Payload)
	s.stats.freePublished.Add(1)
	if ss.act != nil {
		ss.act.published(s.started)
	}
	return pk, nil
}

// refuseFree answers a refused free-topic publish and keeps mochi from
// routing it. MQTT 5 gets the reason code in its PUBACK or PUBREC (mochi
// would answer a QoS 2 publish with a PUBACK); MQTT 3.1.1 has no such
// code, so the publish is acknowledged as if delivered, as Mosquitto
// does: disconnecting would only make the client publish it again.
func (s *Server) refuseFree(cl *mqtt.Client, pk packets.Packet, code packets.Code) error {
	if pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if cl.Properties.ProtocolVersion >= 5 {
		ack.ReasonCode = code.Code
	}
	_ = cl.WritePacket(ack)
	return packets.ErrRejectPacket
}

// freeFilterAllowed decides a filter of a SUBSCRIBE that is not in the
// reserved trees. A filter that also reaches them (#, +/...) is granted
// when either side allows it: each delivery is checked again, by the
// rules for free topics (OnACLCheck) and by channel grants for entries
// (deliver).
func (s *Server) freeFilterAllowed(cl *mqtt.Client, ss *session, filter string) bool {
	if s.registry.FreeAccess(ss.device, auth.AccessRead, filter, cl.ID, string(cl.Properties.Username)) {
		return true
	}
	return channels.FilterReaches(filter) && s.readDenied(ss.device, filter) == nil
}

// freeDeliveryAllowed decides one delivery of a free topic by mochi: to a
// live client, or queued for a persistent session whose client is away.
// Rules are read on every delivery, so a removed rule stops deliveries at
// once.
func (s *Server) freeDeliveryAllowed(cl *mqtt.Client, topic string) bool {
	if channels.Reserved(topic) || len(topic) > s.opts.MaxFreeTopicLen {
		return false // mochi routes no reserved topic: nothing to vet here
	}
	device, username, ok := s.clientDevice(cl)
	return ok && s.registry.FreeAccess(device, auth.AccessRead, topic, cl.ID, username)
}

// OnWill vets a will when it is due: its topic must still be writable by
// the device (the rule may have gone since CONNECT) and the connection
// not revoked. A refused will is sent to a topic nobody can read. A will
// with a delay is held (willdelay.go) and vetted when its delay is over.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	s := h.srv
	// mochi would hold what this returns for the delay and then publish it
	// unchecked: it publishes now, the real will being held here if due
	// later.
	cl.Properties.Will.WillDelayInterval = 0
	if d := s.willDelay(cl, will); d > 0 {
		if device, ok := s.vetWillTopic(cl, will); ok {
			s.wills.hold(cl, device, will, time.Now().Add(d))
		}
		return mqtt.Will{TopicName: deadWillTopic, Flag: 1}, nil
	}
	if will, ok := s.vetDueWill(cl, will); ok {
		return will, nil
	}
	return mqtt.Will{TopicName: deadWillTopic, Flag: 1}, nil
}

// vetWillTopic reports whether cl's will may go out now, logging why not.
func (s *Server) vetWillTopic(cl *mqtt.Client, will mqtt.Will) (device uint64, ok bool) {
	device, username, ok := s.clientDevice(cl)
	ss := s.session(cl)
	if !ok || (ss != nil && ss.revoked.Load()) || channels.Reserved(will.TopicName) || !willTopicName(will.TopicName) ||
		!s.registry.FreeAccess(device, auth.AccessWrite, will.TopicName, cl.ID, username) {
		s.log.Info("will not sent", "client", cl.ID, "device", device, "topic", safeTopic(will.TopicName),
			"reason", "no access rule allows writing its topic any more")
		return device, false
	}
	return device, true
}

// vetDueWill vets a will that is due and, allowed, applies the retained
// bounds and its bindings: it is about to be published.
func (s *Server) vetDueWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, bool) {
	device, ok := s.vetWillTopic(cl, will)
	if !ok {
		return will, false
	}
	switch {
	case will.Retain && s.shared != nil:
		// A will cannot be refused: one the store cannot keep goes out
		// without being retained.
		keep, err := s.shared.commit(cl, retainedFromWill(cl, &will))
		if err != nil {
			s.log.Warn("will not retained: the store failed", "client", cl.ID, "topic", safeTopic(will.TopicName),
				"error", err.Error())
		}
		will.Retain = keep
	case will.Retain && len(will.Payload) > 0 && !s.retained.admit(s, cl, will.TopicName, len(will.Payload)):
		will.Retain = false
	}
	s.bindPublish(device, cl.ID, will.TopicName, will.Payload)
	s.stats.freePublished.Add(1)
	return will, true
}

// vetWill keeps a CONNECT's will only on a free topic the device may
// write; wills on the reserved trees are dropped, as they always were
// (they would publish, unchecked, when the device drops).
func (s *Server) vetWill(cl *mqtt.Client, device uint64) {
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		cl.Properties.Will = mqtt.Will{}
		return
	}
	topic := cl.Properties.Will.TopicName
	reason := "wills are kept only on free topics an access rule lets the client write"
	switch {
	case !willTopicName(topic):
		reason = "a will topic is a topic name: + and # have no place in it"
	case !channels.Reserved(topic) && len(topic) <= s.opts.MaxFreeTopicLen &&
		s.registry.FreeAccess(device, auth.AccessWrite, topic, cl.ID, string(cl.Properties.Username)):
		return
	}
	s.log.Info("will ignored", "client", cl.ID, "device", device, "topic", safeTopic(topic), "reason", reason)
	cl.Properties.Will = mqtt.Will{}
}

// willTopicName reports whether topic can be a will's topic: a topic
// name, without the wildcards a rule's match would read as levels (a rule
// on home/# matches "home/#" itself). mochi checks a PUBLISH's topic but
// not a will's, and a wildcard topic, once retained, could never be
// cleared.
func willTopicName(topic string) bool {
	return topic != "" && !strings.ContainsAny(topic, "+#")
}

// retainedIndex tracks the payload size of every retained message, to
// bound them in number and bytes. mochi keeps the messages themselves.
type retainedIndex struct {
	mu      sync.Mutex
	sizes   map[string]int
	bytes   int64
	refused atomic.Uint64
	lastLog time.Time
}

// admit reports whether a retained message of size bytes on topic fits
// the bounds (replacing what topic retains now); a refusal is counted and
// logged at most every rejectLogEvery.
func (x *retainedIndex) admit(s *Server, cl *mqtt.Client, topic string, size int) bool {
	x.mu.Lock()
	old, had := x.sizes[topic]
	ok := (had || len(x.sizes) < s.opts.RetainedMax) && x.bytes-int64(old)+int64(size) <= s.opts.RetainedMaxBytes
	x.mu.Unlock()
	if !ok {
		x.refuse(s, cl, topic, size)
	}
	return ok
}

// refuse counts a retained message refused for the bounds and logs it at
// most every rejectLogEvery (the bounds of a shared store are checked by
// the store, over every node).
func (x *retainedIndex) refuse(s *Server, cl *mqtt.Client, topic string, size int) {
	x.mu.Lock()
	x.refused.Add(1)
	logIt := false
	if now := time.Now(); now.Sub(x.lastLog) >= rejectLogEvery {
		x.lastLog, logIt = now, true
	}
	count, bytes := len(x.sizes), x.bytes
	x.mu.Unlock()
	if logIt {
		s.log.Warn("retained message refused (delivered, not retained)", "client", cl.ID, "topic", safeTopic(topic),
			"bytes", size, "retained", count, "retained_bytes", bytes,
			"limits", fmt.Sprintf("retained.max_messages=%d retained.max_bytes=%d", s.opts.RetainedMax, s.opts.RetainedMaxBytes),
			"refused_total", x.refused.Load())
	}
}

// set records that topic retains size bytes; size 0 removes it.
func (x *retainedIndex) set(topic string, size int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.sizes == nil {
		x.sizes = make(map[string]int)
	}
	x.bytes -= int64(x.sizes[topic])
	delete(x.sizes, topic)
	if size > 0 {
		x.sizes[topic] = size
		x.bytes += int64(size)
	}
}

func (x *retainedIndex) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.sizes)
}

// OnRetainMessage follows what mochi retains.
func (h *hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	h.srv.retained.set(pk.TopicName, len(pk.Payload))
	if h.srv.shared != nil {
		h.srv.shared.retained(cl, pk.TopicName)
	}
}

// OnRetainedExpired follows retained messages mochi let expire; a shared
// store deletes its copy when its own clock agrees.
func (h *hook) OnRetainedExpired(topic string) {
	h.srv.retained.set(topic, 0)
	if h.srv.shared != nil {
		h.srv.shared.schedule(topic, workExpire)
	}
}

// dropReservedFilters removes cl's filters in the reserved trees: they
// carry channel grants (read keys even) that belong to one connection,
// so no persistent session keeps or hands them on.
func (s *Server) dropReservedFilters(cl *mqtt.Client) {
	dropped := false
	for filter := range cl.State.Subscriptions.GetAll() {
		if !channels.Reserved(filter) {
			continue
		}
		cl.State.Subscriptions.Delete(filter)
		if s.mochi.Topics.Unsubscribe(filter, cl.ID) {
			atomic.AddInt64(&s.mochi.Info.Subscriptions, -1)
			dropped = true
		}
	}
	if dropped {
		s.router.invalidate()
	}
}

// dropUnreadable drops the queued publishes of old, the session cl is
// about to resume, that cl may not read now.
func (s *Server) dropUnreadable(old, cl *mqtt.Client) {
	for _, pk := range old.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish || s.freeDeliveryAllowed(cl, pk.TopicName) {
			continue
		}
		if old.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&s.mochi.Info.Inflight, -1)
			if s.sessStore != nil {
				s.sessStore.OnQosDropped(old, pk)
			}
		}
	}
}

// discardSession forgets a persistent session: its subscriptions, its
// queued messages and its stored copy.
func (s *Server) discardSession(cl *mqtt.Client) {
	s.mochi.UnsubscribeClient(cl)
	cl.ClearInflights()
	if cur, ok := s.mochi.Clients.Get(cl.ID); ok && cur == cl {
		s.mochi.Clients.Delete(cl.ID)
	}
	if s.sessStore != nil {
		s.sessStore.forgetClient(cl)
	}
	s.router.invalidate()
}

// discardSessions discards the persistent sessions of clients that are
// away and belong to device or to nobody any more (a deleted device).
func (s *Server) discardSessions(device uint64) {
	for _, cl := range s.mochi.Clients.GetAll() {
		if !cl.Closed() || cl.Net.Inline {
			continue
		}
		if owner, _, ok := s.sessionOwner(cl.ID, string(cl.Properties.Username)); ok && owner != device {
			continue
		}
		s.log.Info("persistent session discarded: credentials revoked or device deleted", "client", cl.ID)
		s.discardSession(cl)
	}
}

// OnClientExpired clears a persistent session mochi let expire: mochi
// only forgets the client, leaving its filters in the topic index and its
// queued messages in memory.
func (h *hook) OnClientExpired(cl *mqtt.Client) {
	h.srv.log.Info("persistent session expired", "client", cl.ID)
	h.srv.mochi.UnsubscribeClient(cl)
	cl.ClearInflights()
	h.srv.router.invalidate()
}

// OnQosPublish bounds the messages queued for one client: past
// QueuedPerClient, its oldest are dropped and counted (mochi would refuse
// the newest).
func (h *hook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if excess := cl.State.Inflight.Len() - h.srv.opts.QueuedPerClient; excess > 0 {
		h.srv.dropOldest(cl, excess, pk.PacketID)
	}
}

// dropOldest drops up to n of cl's oldest queued publishes, never keep.
func (s *Server) dropOldest(cl *mqtt.Client, n int, keep uint16) int {
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	all := cl.State.Inflight.GetAll(false)
	// mochi sorts by uint16(Created) (seconds, wrapping every 18 hours):
	// order by the full time, packet IDs breaking ties.
	slices.SortStableFunc(all, queuedBefore)
	dropped := 0
	for _, pk := range all {
		if dropped == n {
			break
		}
		if pk.FixedHeader.Type != packets.Publish || pk.PacketID == keep {
			continue
		}
		if s.dropQueued(cl, pk) {
			dropped++
		}
	}
	return dropped
}

// queuedBefore orders queued messages by the time they were queued:
// mochi's Created (seconds), then the packet ID, which mochi gives in
// increasing order (wrapping at 65535, rarely within one second).
func queuedBefore(a, b packets.Packet) int {
	if a.Created != b.Created {
		return cmp.Compare(a.Created, b.Created)
	}
	return cmp.Compare(a.PacketID, b.PacketID)
}

// orderQueued renumbers the Created of the messages queued for old, a
// session whose client has gone and is about to resume it, 1, 2, ... in
// the order they were queued: mochi resends them sorted by
// uint16(Created), seconds wrapping every 18 hours and in no set order
// within one second, and the order must hold (a state topic's last
// message stays the last). Created means nothing else to feedmq or mochi
// here: no message expiry is enforced, and the ranks keep the order for
// dropOldest. A session still connected is left alone: its connection
// may be settling a message concurrently, and Set would put it back.
func (s *Server) orderQueued(old *mqtt.Client) {
	if !old.Closed() {
		return
	}
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	all := old.State.Inflight.GetAll(false)
	if len(all) < 2 {
		return
	}
	slices.SortStableFunc(all, queuedBefore)
	for i, pk := range all {
		if pk.Created != int64(i+1) {
			pk.Created = int64(i + 1)
			old.State.Inflight.Set(pk)
		}
	}
}

// queuedMessages returns the QoS 1/2 messages held for clients, and per client.
func (s *Server) queuedMessages() (total int, per map[*mqtt.Client]int) {
	return queuedIn(s.mochi.Clients.AppendAll(nil))
}

// queuedIn returns the QoS 1/2 messages held for clients, and per client
// (nil when none is).
func queuedIn(clients []*mqtt.Client) (total int, per map[*mqtt.Client]int) {
	for _, cl := range clients {
		if n := cl.State.Inflight.Len(); n > 0 {
			if per == nil {
				per = make(map[*mqtt.Client]int)
			}
			per[cl] = n
			total += n
		}
	}
	return total, per
}

// sweepEvery is how often the total of queued messages is checked.
const sweepEvery = time.Second

func (s *Server) startSweep() {
	s.sweepStop, s.sweepDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.sweepDone)
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		// The clients, listed into one reused slice: a new list (mochi's
		// GetAll map) every second was most of what an idle broker
		// allocated, growing its heap by megabytes a minute.
		var clients []*mqtt.Client
		for {
			select {
			case <-s.sweepStop:
				return
			case now := <-t.C:
				clients = s.mochi.Clients.AppendAll(clients[:0])
				s.sweepQueues(clients)
				s.sendDueWills(now)
				s.sweepQueuedBytes(clients)
				clear(clients) // keep no ended client alive
			}
		}
	}()
}

func (s *Server) stopSweep() {
	if s.sweepStop != nil {
		close(s.sweepStop)
		<-s.sweepDone
	}
}

// sweepQueues bounds the queued messages over all clients: past
// QueuedTotal, the largest queues lose their oldest messages first, so
// one client that never comes back cannot starve the others.
func (s *Server) sweepQueues(clients []*mqtt.Client) {
	total, per := queuedIn(clients)
	excess := total - s.opts.QueuedTotal
	if excess <= 0 {
		return
	}
	queued := make([]*mqtt.Client, 0, len(per))
	for cl := range per {
		queued = append(queued, cl)
	}
	slices.SortFunc(queued, func(a, b *mqtt.Client) int { return per[b] - per[a] })
	dropped := 0
	for i := 0; excess > 0 && i < len(queued); i++ {
		// Cut this queue down to the next one's length (or by what is
		// left over), then move on.
		next := 0
		if i+1 < len(queued) {
			next = per[queued[i+1]]
		}
		n := min(excess, max(1, per[queued[i]]-next))
		d := s.dropOldest(queued[i], n, 0)
		excess -= d
		dropped += d
	}
	if dropped > 0 {
		s.log.Warn("queued messages dropped: total over sessions.max_queued_total", "dropped", dropped,
			"limit", s.opts.QueuedTotal, "dropped_total", s.stats.queueDropped.Load())
	}
}

// sweepQueuedBytes bounds the payload bytes of the queued messages over
// all clients: past QueuedMaxBytes, the queues holding the most bytes
// lose their oldest messages first (each is copied per client, so a
// count bound alone lets large payloads take gigabytes).
func (s *Server) sweepQueuedBytes(clients []*mqtt.Client) {
	type queue struct {
		cl    *mqtt.Client
		bytes int64
	}
	var queues []queue
	var total int64
	for _, cl := range clients {
		if cl.State.Inflight.Len() == 0 {
			continue // GetAll would allocate to say so
		}
		var n int64
		for _, pk := range cl.State.Inflight.GetAll(false) {
			n += int64(len(pk.Payload))
		}
		if n > 0 {
			queues = append(queues, queue{cl, n})
			total += n
		}
	}
	excess := total - s.opts.QueuedMaxBytes
	if excess <= 0 {
		return
	}
	slices.SortFunc(queues, func(a, b queue) int { return cmp.Compare(b.bytes, a.bytes) })
	dropped := 0
	for i := 0; excess > 0 && i < len(queues); i++ {
		// Cut this queue down to the next one's size (or by what is left
		// over), then move on.
		var next int64
		if i+1 < len(queues) {
			next = queues[i+1].bytes
		}
		cut := min(excess, max(1, queues[i].bytes-next))
		d, freed := s.dropOldestBytes(queues[i].cl, cut)
		excess -= freed
		dropped += d
	}
	if dropped > 0 {
		s.log.Warn("queued messages dropped: payload bytes over sessions.max_queued_bytes", "dropped", dropped,
			"limit", s.opts.QueuedMaxBytes, "dropped_total", s.stats.queueDropped.Load())
	}
}

// dropOldestBytes drops cl's oldest queued publishes until at least n
// payload bytes are freed; it returns how many it dropped and freed.
func (s *Server) dropOldestBytes(cl *mqtt.Client, n int64) (dropped int, freed int64) {
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	all := cl.State.Inflight.GetAll(false)
	slices.SortStableFunc(all, queuedBefore)
	for _, pk := range all {
		if freed >= n {
			break
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		if s.dropQueued(cl, pk) {
			dropped++
			freed += int64(len(pk.Payload))
		}
	}
	return dropped, freed
}

// dropQueued drops one queued publish of cl; queueMu held.
func (s *Server) dropQueued(cl *mqtt.Client, pk packets.Packet) bool {
	if !cl.State.Inflight.Delete(pk.PacketID) {
		return false
	}
	cl.State.Inflight.IncreaseSendQuota()
	atomic.AddInt64(&s.mochi.Info.Inflight, -1)
	if s.sessStore != nil {
		s.sessStore.OnQosDropped(cl, pk)
	}
	s.stats.queueDropped.Add(1)
	return true
}
