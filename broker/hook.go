package broker

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// hook is feedmq's single mochi hook: authentication at CONNECT,
// authorization of every subscribe and delivery, and the feed publish path
// (hook_feed.go).
type hook struct {
	mqtt.HookBase
	srv *Server
}

var _ mqtt.Hook = (*hook)(nil)

func (h *hook) ID() string { return "feedmq" }

// Provides is asked for every hook on every event, several times per
// packet: a bit set answers it without building anything.
func (h *hook) Provides(b byte) bool { return feedHookEvents.has(b) }

var feedHookEvents = newHookSet(
	mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished,
	mqtt.OnDisconnect, mqtt.OnACLCheck, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnPublish,
	mqtt.OnPublishDropped, mqtt.OnPacketRead, mqtt.OnPacketEncode,
	mqtt.OnSessionEstablish, mqtt.OnWill, mqtt.OnRetainMessage, mqtt.OnRetainedExpired,
	mqtt.OnClientExpired, mqtt.OnQosPublish,
)

// hookSet is a set of mochi hook events, which are small consecutive
// numbers (fewer than 64 in mochi v2).
type hookSet uint64

func newHookSet(events ...byte) hookSet {
	var s hookSet
	for _, e := range events {
		if e >= 64 {
			panic(fmt.Sprintf("broker: mochi hook event %d does not fit a hookSet", e))
		}
		s |= 1 << e
	}
	return s
}

func (s hookSet) has(e byte) bool { return e < 64 && s&(1<<e) != 0 }

// session is what the broker knows about one live connection.
type session struct {
	cl       *mqtt.Client
	device   uint64         // auth.Anonymous for connections without a username
	listener *listenerStats // counters of cl's listener; nil for a listener Open does not start

	mu         sync.Mutex
	lastLog    time.Time // last rejection or refused filter logged, to keep a looping client from flooding logs
	suppressed int
	extra      map[string]channels.KindSet // granted filters that need extra fan-out (extra.go)
	pending    map[string]bool             // filters of the SUBSCRIBE being processed; true: refused for the quota
	limitLog   uint8                       // limitLogged* bits: subscription limits already logged once
	ended      bool                        // the session is over: start no sender (fanout.go)
	// revoked is set when the device's credentials were revoked or the
	// device deleted: its will is not sent and its session not kept.
	revoked atomic.Bool
	// since is when the session was established, just before its
	// CONNACK (unix nanoseconds; 0 before; set only in a cluster): of two
	// connections with one client ID on two nodes, the newer stays
	// (cluster.go).
	since atomic.Int64

	out  atomic.Pointer[sender] // deliveries to cl, once it gets one (fanout.go)
	acks pubAcks                // PUBACKs of QoS 1 feed publishes not yet written (puback.go)
	// ackID is the packet ID mochi handles the SUBSCRIBE or UNSUBSCRIBE
	// being processed under (high 16 bits) and the client's (low), when
	// renumberAck changed it; 0 otherwise.
	ackID atomic.Uint32
	// inIDs maps the client's packet IDs of its QoS 1/2 publishes that
	// collided with a delivery to the stand-ins they are handled under
	// (renumberPublish); inAliases is its length, read without the lock.
	inIDs     map[uint16]uint16
	inAliases atomic.Int32

	act *deviceActivity // the device's record (activity.go); nil for anonymous connections
	// conn describes the connection once its CONNACK is sent; nil before
	// and for anonymous connections (DeviceActivity lists the others).
	conn atomic.Pointer[auth.Connection]
}

// session returns the session of cl, or nil when cl was never
// authenticated or has gone. Sessions are keyed by client pointer, not ID:
// a reconnect with the same client ID must not orphan a publish that the
// old connection is still committing.
func (s *Server) session(cl *mqtt.Client) *session {
	v, ok := s.sessions.Load(cl)
	if !ok {
		return nil
	}
	return v.(*session)
}

// OnPacketRead sees every packet as soon as it is decoded, before mochi
// acts on it.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Connect && pk.ProtocolVersion < 5 && !pk.Connect.Clean && pk.Connect.ClientIdentifier == "" {
		// 3.1.1 requires return code 0x02 here [MQTT-3.1.3-8]; mochi
		// would send 0x80, which 3.1.1 does not have.
		h.srv.log.Info("connection refused", "remote", cl.Net.Remote,
			"reason", "an empty client ID needs CleanSession=1")
		h.srv.stats.conns.refused[refusedClientID].Add(1)
		_ = writeRaw(cl, []byte{packets.Connack << 4, 2, 0, 0x02})
		return pk, packets.ErrRejectPacket
	}
	switch pk.FixedHeader.Type {
	case packets.Subscribe, packets.Unsubscribe:
		h.srv.renumberAck(cl, &pk)
	case packets.Publish:
		if pk.FixedHeader.Qos > 0 {
			h.srv.renumberPublish(cl, &pk)
		}
	case packets.Pubrel:
		if ss := h.srv.session(cl); ss != nil {
			if sub, ok := ss.inboundID(pk.PacketID); ok {
				pk.PacketID = sub
			}
		}
	}
	if pk.FixedHeader.Type == packets.Publish && len(pk.TopicName) > h.srv.topicLimit(pk.TopicName) &&
		pk.Properties.TopicAlias <= maxTopicAliases {
		// Too long for its tree: OnPublish refuses it. mochi must not
		// keep it as a topic alias first, pinning the packet. (An alias
		// beyond the maximum is left for mochi to refuse, 0x94.)
		pk.Properties.TopicAliasFlag, pk.Properties.TopicAlias = false, 0
	}
	if pk.FixedHeader.Type == packets.Publish && pk.Properties.TopicAliasFlag {
		// mochi keeps the topic of an alias, which shares the packet's
		// buffer (payload included): keep a copy of the topic alone.
		pk.TopicName = strings.Clone(pk.TopicName)
	}
	return pk, nil
}

// OnPacketEncode completes a successful MQTT 5 CONNACK with the limits
// the server enforces, which mochi leaves out.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode == 0 {
			pk.Properties.TopicAliasMaximum = maxTopicAliases
			pk.Properties.MaximumPacketSize = uint32(h.srv.opts.MaxPacketSize)
		}
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
		// Answers to the client's own publishes: in its packet IDs.
		if ss := h.srv.session(cl); ss != nil {
			pk.PacketID = ss.clientID(pk.PacketID, pk.FixedHeader.Type != packets.Pubrec)
		}
	case packets.Suback, packets.Unsuback:
		if ss := h.srv.session(cl); ss != nil {
			if a := ss.ackID.Load(); a != 0 && uint16(a>>16) == pk.PacketID {
				pk.PacketID = uint16(a)
				ss.ackID.Store(0)
			}
		}
	}
	return pk
}

// renumberPublish gives a QoS 1 or 2 PUBLISH whose packet ID one of the
// server's deliveries to cl holds another ID while mochi and feedmq
// handle it; the acknowledgements go out with the client's
// (OnPacketEncode, puback.go). mochi keeps both sides' IDs in one table:
// it would take the client's publish for the answer to its delivery and
// forget the delivery, which a persistent session then never gets again
// if the connection drops before the client acknowledges it. A QoS 2
// publish keeps its stand-in until its PUBCOMP, on this connection: one
// resumed on the next connection is completed as mochi does.
func (s *Server) renumberPublish(cl *mqtt.Client, pk *packets.Packet) {
	if ss := s.session(cl); ss != nil {
		pk.PacketID = ss.inboundPublishID(cl, pk.PacketID)
	}
}

// inboundPublishID returns the ID the client's QoS 1 or 2 publish with
// packet ID id is handled under: a stand-in when one of the server's
// deliveries holds id (see renumberPublish), else id.
func (ss *session) inboundPublishID(cl *mqtt.Client, id uint16) uint16 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if sub, ok := ss.inIDs[id]; ok {
		return sub // a QoS 2 publish sent again
	}
	held, ok := cl.State.Inflight.Get(id)
	if !ok || (held.FixedHeader.Type != packets.Publish && held.FixedHeader.Type != packets.Pubrel) {
		return id // free, or the client's own QoS 2 publish in progress
	}
	for sub := uint16(math.MaxUint16); sub > 0; sub-- {
		if _, used := cl.State.Inflight.Get(sub); used || ss.isStandIn(sub) {
			continue
		}
		if ss.inIDs == nil {
			ss.inIDs = make(map[uint16]uint16)
		}
		ss.inIDs[id] = sub
		ss.inAliases.Store(int32(len(ss.inIDs)))
		return sub
	}
	return id
}

// isStandIn reports whether id stands in for a client's packet ID; ss.mu held.
func (ss *session) isStandIn(id uint16) bool {
	for _, sub := range ss.inIDs {
		if sub == id {
			return true
		}
	}
	return false
}

// inboundID returns the stand-in of the client's packet ID id, if any.
func (ss *session) inboundID(id uint16) (uint16, bool) {
	if ss.inAliases.Load() == 0 {
		return 0, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sub, ok := ss.inIDs[id]
	return sub, ok
}

// clientID returns the client's packet ID for id, a stand-in or its own,
// and forgets the stand-in when done (its flow is over).
func (ss *session) clientID(id uint16, done bool) uint16 {
	if ss.inAliases.Load() == 0 {
		return id
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for orig, sub := range ss.inIDs {
		if sub == id {
			if done {
				delete(ss.inIDs, orig)
				ss.inAliases.Store(int32(len(ss.inIDs)))
			}
			return orig
		}
	}
	return id
}

// renumberAck gives a SUBSCRIBE or UNSUBSCRIBE whose packet ID one of the
// server's deliveries to cl holds (awaiting its PUBACK) another ID while
// mochi handles it, and OnPacketEncode puts the client's back in the
// answer. The client's and the server's packet IDs are separate, but
// mochi keeps both in one table and would refuse every filter with
// 0x91: a client resuming a session with queued messages, which its
// first SUBSCRIBE often overlaps, would be told it may not subscribe.
func (s *Server) renumberAck(cl *mqtt.Client, pk *packets.Packet) {
	if _, held := cl.State.Inflight.Get(pk.PacketID); !held {
		return
	}
	ss := s.session(cl)
	if ss == nil {
		return
	}
	// From the top: mochi numbers its deliveries from the bottom up.
	for id := uint16(math.MaxUint16); id > 0; id-- {
		if _, held := cl.State.Inflight.Get(id); !held {
			ss.ackID.Store(uint32(id)<<16 | uint32(pk.PacketID))
			pk.PacketID = id
			return
		}
	}
}

// OnConnect authenticates the CONNECT and answers refusals itself, so that
// each gets its proper CONNACK code (mochi only knows 0x04) and one log
// line with the reason.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	s := h.srv
	if p, ok := cl.Net.Conn.(interface{ settle() }); ok {
		p.settle() // the socket has sent its CONNECT
	}
	username := string(pk.Connect.Username)
	refuse := func(code packets.Code, kind, reason string) error {
		shown := username
		if username != "" && !s.registry.HasUsername(username) {
			// Not a device's: maybe its password, in the wrong field.
			shown = fmt.Sprintf("(unknown, %d bytes)", len(username))
		}
		s.log.Info("connection refused", "client", pk.Connect.ClientIdentifier, "username", shown,
			"remote", cl.Net.Remote, "listener", cl.Net.Listener, "reason", reason)
		s.stats.conns.refused[kind].Add(1)
		s.refuseConnect(cl, code)
		return code
	}
	if until, ok := s.throttle.blocked(cl.Net.Remote); ok {
		s.throttle.fail(cl.Net.Remote)
		return refuse(packets.ErrServerUnavailable, refusedThrottled, "too many failed logins from this address; retry after "+until.UTC().Format(time.RFC3339))
	}
	switch {
	case s.closing.Load():
		return refuse(packets.ErrServerUnavailable, refusedShutdown, "server is shutting down")
	case s.failClosed.Load():
		return refuse(packets.ErrServerUnavailable, refusedFailClosed, "this node cannot confirm its state with the shared database")
	case cl.ID == mqtt.InlineClientId:
		return refuse(packets.ErrClientIdentifierNotValid, refusedClientID, `client ID "inline" is reserved`)
	}
	device := auth.Anonymous
	if username == "" {
		if !s.opts.Anonymous {
			return refuse(packets.ErrNotAuthorized, refusedAnonymous, "anonymous connections are disabled")
		}
		// Only anonymous connections are capped: anyone may open them,
		// and at the cap they must not lock the devices out. A device
		// holds one connection at most (one client ID), so devices are
		// bounded by their number.
		if s.opts.MaxConnections > 0 && s.live.Load() >= int64(s.opts.MaxConnections) {
			return refuse(packets.ErrServerUnavailable, refusedMaxConns, "connection limit reached (max_connections)")
		}
		// A device's client ID names its session: only the device may
		// use it, or an anonymous client could take the device over.
		if _, ok := s.registry.ClientIDOwner(pk.Connect.ClientIdentifier); ok {
			return refuse(packets.ErrClientIdentifierNotValid, refusedClientID,
				"client ID belongs to a device: connect with the device's credentials")
		}
		// Anyone may open an anonymous session that outlives its
		// connection: their number is capped, as connections are.
		if persistent(cl) && !s.anonymousSessionSlot(cl.ID) {
			return refuse(packets.ErrQuotaExceeded, refusedPersistent,
				"anonymous persistent session limit reached (sessions.max_anonymous): connect with a clean session or a device's credentials")
		}
	} else {
		id, err := s.registry.Authenticate(pk.Connect.ClientIdentifier, username, string(pk.Connect.Password))
		if err != nil {
			s.throttle.fail(cl.Net.Remote)
			if errors.Is(err, auth.ErrClientID) {
				// Another device's client ID gets the same answer an
				// anonymous CONNECT with it gets: that session is not
				// this device's to take.
				if _, owned := s.registry.ClientIDOwner(pk.Connect.ClientIdentifier); owned {
					return refuse(packets.ErrClientIdentifierNotValid, refusedClientID,
						"client ID belongs to another device: connect with that device's credentials")
				}
				return refuse(packets.ErrNotAuthorized, refusedClientID, err.Error())
			}
			return refuse(packets.ErrBadUsernameOrPassword, refusedCredentials, err.Error())
		}
		s.throttle.succeed(cl.Net.Remote)
		device = id
	}
	s.awaitPrevious(pk.Connect.ClientIdentifier)
	s.vetWill(cl, device)
	// mochi would send a free topic once and then only its alias, also
	// in messages it queues for a persistent session: resent on the next
	// connection, where the alias means nothing, they would have no
	// topic. feedmq sends whole topics (fan-out never used aliases).
	cl.Properties.Props.TopicAliasMaximum = 0
	// mochi's flow control for an MQTT 5 client's Receive Maximum is
	// broken: it holds the QoS 1/2 messages past the quota, sends them
	// later in no set order and drops them from flight before they are
	// acknowledged (lost with the connection, and their quota never
	// comes back: the client stalls), and it takes one read lock inside
	// another, which a concurrent publish can deadlock. Without a quota
	// mochi sends at once, as to MQTT 3.1.1 clients; the queue stays
	// bounded by sessions.max_queued_per_client. Zeroed in Props too,
	// because a resumed session's quota is reset from it.
	cl.Properties.Props.ReceiveMaximum = 0
	cl.State.Inflight.ResetSendQuota(0)
	if cl.State.Keepalive == 0 {
		cl.State.Keepalive = idleKeepalive(s.opts.IdleTimeout)
	}
	ls := s.stats.conns.listener(cl.Net.Listener)
	ss := &session{cl: cl, device: device, listener: ls}
	if device != auth.Anonymous {
		ss.act = s.activityOf(device)
	}
	s.sessions.Store(cl, ss)
	s.byConn.Store(cl.Net.Conn, cl)
	s.live.Add(1)
	ls.connected()
	return nil
}

// v3Connack maps MQTT 5 CONNACK reason codes to MQTT 3 return codes.
// mochi maps "bad username or password" to 0x05; 3.1.1 clients expect 0x04.
var v3Connack = map[byte]byte{
	packets.ErrUnsupportedProtocolVersion.Code: 0x01,
	packets.ErrClientIdentifierNotValid.Code:   0x02,
	packets.ErrServerUnavailable.Code:          0x03,
	packets.ErrBadUsernameOrPassword.Code:      0x04,
	packets.ErrNotAuthorized.Code:              0x05,
	packets.ErrQuotaExceeded.Code:              0x03, // server unavailable (for this session)
}

// refuseConnect sends a refusing CONNACK in the client's protocol version.
func (s *Server) refuseConnect(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion >= 5 {
		_ = s.mochi.SendConnack(cl, code, false, nil)
		return
	}
	v3, ok := v3Connack[code.Code]
	if !ok {
		v3 = 0x05
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: v3})
}

// takeoverGrace is how long a new connection waits for an older one with
// the same client ID to finish on its own before mochi takes it over.
const takeoverGrace = 250 * time.Millisecond

// awaitPrevious gives an older connection with the same client ID a moment
// to end by itself. A device that publishes, disconnects and reconnects at
// once (umqtt.simple in a loop) would otherwise lose the publish still
// unread in the old socket, because a takeover closes it immediately. It
// returns as soon as the old session has ended (endSession wakes it), not
// on a polling tick: a device reconnecting in a loop must not pay a sleep
// for every connect.
func (s *Server) awaitPrevious(clientID string) {
	old, ok := s.mochi.Clients.Get(clientID)
	if !ok {
		return
	}
	timer := time.NewTimer(takeoverGrace)
	defer timer.Stop()
	for {
		ended := s.sessionEnds()
		if s.session(old) == nil {
			return
		}
		select {
		case <-ended:
		case <-timer.C:
			return
		}
	}
}

// sessionEnds returns a channel closed when the next session ends. It is
// made only while someone waits, so connections that never wait for a
// takeover cost nothing.
func (s *Server) sessionEnds() <-chan struct{} {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	if s.ends == nil {
		s.ends = make(chan struct{})
	}
	return s.ends
}

// endSession forgets a connection's session, once.
func (s *Server) endSession(cl *mqtt.Client) {
	s.byConn.Delete(cl.Net.Conn)
	if v, ok := s.sessions.LoadAndDelete(cl); ok {
		s.live.Add(-1)
		v.(*session).listener.gone()
		v.(*session).stopSender()
		s.endMu.Lock()
		if s.ends != nil {
			close(s.ends) // wake awaitPrevious
			s.ends = nil
		}
		s.endMu.Unlock()
	}
}

// release runs when a connection's handler returns. mochi skips
// OnDisconnect when it fails after OnConnect (say the CONNACK cannot be
// written), so a session that is still registered is ended here.
func (s *Server) release(c net.Conn) {
	if v, ok := s.byConn.Load(c); ok {
		s.endSession(v.(*mqtt.Client))
	}
}

// idleKeepalive converts the idle timeout into the keepalive mochi
// enforces as 1.5 x keepalive.
func idleKeepalive(idle time.Duration) uint16 {
	k := (idle*2/3 + time.Second - 1) / time.Second
	return uint16(min(max(k, 1), 65535))
}

// OnConnectAuthenticate accepts what OnConnect let through.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return h.srv.session(cl) != nil
}

// OnSessionEstablish runs before mochi hands a resumed session to cl:
// the filters of the reserved trees the previous connection still holds
// are dropped first, so that they never pass to another connection, and
// so are queued messages whose topic cl may no longer read (a rule
// removed while it was away): mochi resends them unchecked.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if ss := h.srv.session(cl); ss != nil && h.srv.opts.Cluster != nil {
		// Before the CONNACK: the client may connect again elsewhere as
		// soon as it has it, and that connection must count as newer.
		ss.since.Store(time.Now().UnixNano())
	}
	h.srv.wills.cancel(cl.ID) // [MQTT-3.1.3-9]: the client is back
	if old, ok := h.srv.mochi.Clients.Get(cl.ID); ok && old != cl {
		h.srv.dropReservedFilters(old)
		h.srv.dropUnreadable(old, cl)
		h.srv.orderQueued(old)
	}
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.srv.router.invalidate() // a takeover may have replaced a subscriber
	ss := h.srv.session(cl)
	if ss == nil {
		return
	}
	// A resumed session's filters count for fan-out as granted ones do
	// (a "#" also reaches the field topics).
	for filter := range cl.State.Subscriptions.GetAll() {
		h.srv.noteFilter(ss, filter)
	}
	if ss.device != auth.Anonymous {
		ss.conn.Store(&auth.Connection{ClientID: cl.ID, RemoteAddr: cl.Net.Remote, Listener: cl.Net.Listener,
			Since: time.Now().UTC().Truncate(time.Second)})
	}
	h.srv.log.Info("client connected", "client", cl.ID, "device", ss.device, "remote", cl.Net.Remote,
		"listener", cl.Net.Listener, "protocol", pk.ProtocolVersion, "keepalive", pk.Connect.Keepalive)
	if c := h.srv.opts.Cluster; c != nil {
		c.Connected(cl.ID, time.Unix(0, ss.since.Load())) // another node's older connection with this ID closes
	}
	// mochi reads the client's packets from here on, on this goroutine.
	if rc, ok := cl.Net.Conn.(interface {
		startReadPath(*Server, *mqtt.Client)
	}); ok && !h.srv.mochiReads {
		rc.startReadPath(h.srv, cl)
	}
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if cl.Net.Conn == nil {
		return // a persistent session mochi restored from the store
	}
	ss := h.srv.session(cl)
	if ss != nil {
		h.srv.forgetFilters(ss)
	}
	if !expire && !cl.IsTakenOver() {
		// The session outlives the connection: only its free-topic
		// filters stay (and are queued for), unless the device's
		// credentials were revoked meanwhile.
		h.srv.dropReservedFilters(cl)
		if ss != nil && ss.revoked.Load() {
			h.srv.discardSession(cl)
		}
	}
	h.srv.router.invalidate()
	h.srv.endSession(cl)
	if errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		h.srv.dropLeftovers(cl)
	}
	if cause := cl.StopCause(); cause != nil && err == nil {
		err = cause
	}
	h.srv.log.Info("client disconnected", "client", cl.ID, "remote", cl.Net.Remote, "reason", disconnectReason(err))
}

// dropLeftovers removes from mochi's topic index the filters a
// taken-over client was still granted after the takeover had unsubscribed
// it: mochi finishes the SUBSCRIBE in hand after stopping a client, and it
// keys its index by client ID, so such a filter would stay for good,
// outside every client's subscription limit, and route deliveries to the
// next client with that ID. mochi registers the new client once the
// takeover has unsubscribed this one, so what this one holds after that
// is left over; a filter the new client holds is its own.
func (s *Server) dropLeftovers(cl *mqtt.Client) {
	var owner *mqtt.Client
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		o, ok := s.mochi.Clients.Get(cl.ID)
		if ok && o != cl {
			owner = o
		}
		if !ok || o != cl || time.Now().After(deadline) {
			break
		}
	}
	dropped := false
	for filter := range cl.State.Subscriptions.GetAll() {
		cl.State.Subscriptions.Delete(filter)
		if owner != nil {
			if _, held := owner.State.Subscriptions.Get(filter); held {
				continue
			}
		}
		if s.mochi.Topics.Unsubscribe(filter, cl.ID) {
			atomic.AddInt64(&s.mochi.Info.Subscriptions, -1)
			dropped = true
		}
	}
	if dropped {
		s.router.invalidate()
	}
}

// OnPublishDropped counts a delivery mochi dropped because the
// subscriber's outbound queue was full (a client that does not read).
func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.srv.stats.dropped.Add(1)
}

func disconnectReason(err error) string {
	if err == nil {
		return "client disconnected"
	}
	return err.Error()
}

// OnACLCheck decides the filters of a SUBSCRIBE, and each delivery
// mochi makes: of free topics only (deliver checks the entries of the
// reserved trees itself). Writes are decided in OnPublish, where a
// rejection can be explained.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return true
	}
	if len(topic) > h.srv.topicLimit(topic) {
		return false // refused before any parsing
	}
	ss := h.srv.session(cl)
	if ss == nil || !ss.isPending(topic) {
		// Not a filter of this client's SUBSCRIBE: a delivery through
		// mochi's publish path, live or queued for a session whose
		// client is away.
		return h.srv.freeDeliveryAllowed(cl, topic)
	}
	if cl.Closed() {
		// Stopped (taken over, say) while mochi works through its
		// SUBSCRIBE: a filter granted now could outlive the connection
		// (dropLeftovers).
		return false
	}
	if channels.Reserved(topic) {
		if h.srv.readDenied(ss.device, topic) != nil {
			return false
		}
	} else if !h.srv.freeFilterAllowed(cl, ss, topic) {
		return false
	}
	if !h.srv.subscriptionSlot(cl, topic) {
		ss.refuseForQuota(topic)
		return false
	}
	return true
}

// subscriptionSlot reports whether cl may hold filter: it holds it already
// (a re-SUBSCRIBE replaces it), or holds fewer than MaxSubscriptions.
// mochi adds each granted filter of a SUBSCRIBE before checking the next,
// so the count includes the packet's earlier filters.
func (s *Server) subscriptionSlot(cl *mqtt.Client, filter string) bool {
	if s.opts.MaxSubscriptions < 0 {
		return true
	}
	if _, held := cl.State.Subscriptions.Get(filter); held {
		return true
	}
	return cl.State.Subscriptions.Len() < s.opts.MaxSubscriptions
}

// readDenied returns why device may not subscribe to filter, or nil.
func (s *Server) readDenied(device uint64, filter string) error {
	f, err := channels.ParseFilter(filter)
	switch {
	case err != nil:
		return err
	case f.Wildcard:
		return nil // it names no channel: each delivery is checked on its own
	case f.Topic.Kind == channels.KindSensor || f.Topic.Kind == channels.KindSensorName:
		ch, _, err := s.resolveSensor(&f.Topic)
		if err != nil {
			return err
		}
		return s.registry.CanSubscribe(device, ch.ID, "")
	}
	return s.registry.CanSubscribe(device, f.Topic.ChannelID, f.Topic.Key)
}

// OnSubscribe marks the filters of a SUBSCRIBE as pending: OnACLCheck
// then tells its checks of them from any other, and each takes a
// subscription slot.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if ss := h.srv.session(cl); ss != nil {
		for _, f := range pk.Filters {
			ss.markPending(f.Filter, h.srv.topicLimit(f.Filter))
		}
	}
	return pk
}

// limitLogged* are the session's limitLog bits.
const (
	limitLoggedQuota uint8 = 1 << iota
	limitLoggedLength
)

// OnSubscribed logs each refused filter once, with its reason, and notes
// granted legacy filters so fan-out publishes their topics. Filters
// refused for a limit (MaxSubscriptions, topic length) are logged
// once per connection, without the filter: a client may send thousands.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.srv.router.invalidate()
	ss := h.srv.session(cl)
	if ss == nil {
		return
	}
	quota, long := 0, 0
	for i, code := range codes {
		if i >= len(pk.Filters) {
			continue
		}
		f := pk.Filters[i].Filter
		if code < 0x80 {
			h.srv.noteFilter(ss, f)
			continue
		}
		// mochi writes the SUBACK from codes after this hook returns, so
		// an MQTT 5 client learns the real reason (3.1.1 has only 0x80).
		v5 := cl.Properties.ProtocolVersion >= 5
		switch {
		case len(f) > h.srv.topicLimit(f):
			long++
			if v5 {
				codes[i] = packets.ErrTopicFilterInvalid.Code
			}
		case ss.refusedForQuota(f):
			quota++
			if v5 {
				codes[i] = packets.ErrQuotaExceeded.Code
			}
		default:
			if suppressed, ok := ss.logAllowed(); ok {
				h.srv.log.Info("subscription refused", "client", cl.ID, "device", ss.device, "filter", f,
					"reason", h.srv.filterRefusal(ss.device, f), "suppressed_since_last", suppressed)
			}
		}
	}
	ss.clearPending()
	if quota > 0 && ss.logLimitOnce(limitLoggedQuota) {
		h.srv.log.Warn("subscriptions refused", "client", cl.ID, "device", ss.device, "filters", quota,
			"reason", "subscription limit reached (limits.max_subscriptions_per_client)", "limit", h.srv.opts.MaxSubscriptions,
			"note", "logged once per connection")
	}
	if long > 0 && ss.logLimitOnce(limitLoggedLength) {
		h.srv.log.Warn("subscriptions refused", "client", cl.ID, "device", ss.device, "filters", long,
			"reason", "filter too long", "limit_reserved", channels.MaxTopicLen,
			"limit_free", h.srv.opts.MaxFreeTopicLen,
			"note", "logged once per connection")
	}
}

// logLimitOnce reports whether the limit bit has not been logged yet on
// this connection, and marks it logged.
func (ss *session) logLimitOnce(bit uint8) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	first := ss.limitLog&bit == 0
	ss.limitLog |= bit
	return first
}

func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.srv.router.invalidate()
	if ss := h.srv.session(cl); ss != nil {
		for _, f := range pk.Filters {
			h.srv.dropFilter(ss, f.Filter)
		}
	}
}

// filterRefusal says why a filter was refused.
func (s *Server) filterRefusal(device uint64, filter string) string {
	if !channels.Reserved(filter) {
		return "no access rule allows reading it"
	}
	return reasonText(s.readDenied(device, filter))
}

func reasonText(err error) string {
	if err == nil {
		return "invalid filter"
	}
	return err.Error()
}
