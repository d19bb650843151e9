package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
// acknowledged here, once its entry is on disk (ackPublish); QoS 2, by
// mochi after this returns.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // our own fan-out
	}
	s := h.srv
	ss := s.session(cl)
	if !channels.Reserved(pk.TopicName) {
		return h.publishFree(cl, ss, pk)
	}
	if strings.HasPrefix(pk.TopicName, "$") {
		// No client publishes to $ topics; nothing is stored either, so
		// the publish is refused as a free one without a rule is (an
		// MQTT 3.1.1 client acknowledged, not disconnected).
		rj := &rejection{reasonBadTopic, packets.ErrTopicNameInvalid, errors.New("clients may not publish to $ topics")}
		s.stats.rejected[rj.reason].Add(1)
		s.logRejection(cl, ss, pk, rj)
		return pk, s.refuseFree(cl, pk, rj.code)
	}
	var err error
	if ss == nil {
		err = &rejection{reasonNotAuthorized, packets.ErrNotAuthorized, errors.New("connection is no longer authorized")}
	} else {
		err = s.feedPublish(ss, pk.TopicName, pk.Payload, pk.FixedHeader.Qos, pk.PacketID)
	}
	switch {
	case err == nil && pk.FixedHeader.Qos == 1:
		// Stored and acknowledged by feedPublish.
		// Answered: mochi must neither acknowledge it again nor route
		// it. As an ignored QoS 0 packet it goes through mochi's quiet
		// path; ErrRejectPacket would make mochi build a debug log
		// call that copies the whole packet to the heap, every time.
		pk.FixedHeader.Qos, pk.Ignore = 0, true
		return pk, nil
	case err == nil:
		return pk, packets.CodeSuccessIgnore
	}
	return pk, s.reject(cl, ss, pk, err)
}

// feedPublish stores a publish of ss's device to a feed topic (reserved,
// not $) and, at QoS 1, acknowledges it once stored. OnPublish and the
// read path (readpath.go) both call it; an error is the rejection the
// caller answers. The PUBACK is written here, not by mochi: mochi would
// record it in the client's in-flight map and encode it as a generic
// packet, a third of everything a QoS 1 publish allocated in the fan-in
// profile. topic and payload are not kept after it returns.
func (s *Server) feedPublish(ss *session, topic string, payload []byte, qos byte, id uint16) error {
	if err := s.publish(ss.device, topic, payload, qos == 0); err != nil {
		return err
	}
	if ss.act != nil {
		ss.act.published(s.started)
	}
	if qos == 1 {
		ss.ackPublish(id)
	}
	return nil
}

// ackPublish sends a successful PUBACK, the same four bytes in MQTT 3.1.1
// and 5 (reason code 0 without properties may be left out). Only the
// connection's reader calls it, so the session's buffer is free.
func (ss *session) ackPublish(id uint16) {
	id = ss.clientID(id, true)
	ss.ack = [4]byte{packets.Puback << 4, 2, byte(id >> 8), byte(id)}
	_ = writeRaw(ss.cl, ss.ack[:])
}

// publish turns one MQTT publish into a stored, fanned-out entry.
// A QoS 0 publish (noWait) is queued for commit without holding up the
// connection: nothing is acknowledged, and fan-out still waits for the
// commit.
func (s *Server) publish(device uint64, topic string, payload []byte, noWait bool) error {
	if len(topic) > channels.MaxTopicLen {
		return &rejection{reasonBadTopic, packets.ErrTopicNameInvalid, errTopicTooLong}
	}
	t, err := channels.ParseTopic(topic)
	switch {
	case err != nil:
		return &rejection{reasonBadTopic, packets.ErrTopicNameInvalid, err}
	case t.Kind == channels.KindSensor || t.Kind == channels.KindSensorName:
		return s.publishSensor(device, &t, payload, noWait)
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
	e, dropped, err := channels.ParsePayloadDropped(ch, t.Field, payload, s.opts.Limits)
	if err != nil {
		return payloadRejection(err)
	}
	s.fieldsDropped(ch.ID, dropped)
	return s.write(&e, noWait)
}

// publishSensor handles a Waziup-style devices/<channel>/sensors/<field>/value
// publish of {"value": ..., "timestamp": ...}. Only device rights apply:
// these topics carry no API key.
func (s *Server) publishSensor(device uint64, t *channels.Topic, payload []byte, noWait bool) error {
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
	e, err := channels.ParseSensorPayload(ch, n, payload, s.opts.Limits)
	if err != nil {
		return payloadRejection(err)
	}
	return s.write(&e, noWait)
}

// write commits e, waiting for the commit unless noWait is set and the
// store can queue appends.
func (s *Server) write(e *channels.Entry, noWait bool) error {
	if ap, ok := s.store.(channels.AsyncAppender); ok && noWait {
		return s.commitAsync(ap, e)
	}
	return s.commit(context.Background(), e)
}

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
func (s *Server) commit(ctx context.Context, e *channels.Entry) error {
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
// commit, afterCommit hands it to the fan-out goroutine. Entries keep
// their order: the store commits in queue order and one goroutine fans
// out. Close waits for every queued entry (pending).
func (s *Server) commitAsync(ap channels.AsyncAppender, e *channels.Entry) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if err := s.admit(e); err != nil {
		return err
	}
	own := new(channels.Entry) // e lives on the reader's stack
	*own = *e
	s.pending.Add(1)
	if err := ap.AppendEntryAsync(context.Background(), own, s.then); err != nil {
		s.pending.Done()
		return storeRejection(err)
	}
	return nil
}

// afterCommit runs on the store's writer goroutine: it must not block for
// long, so fan-out happens on fanOutLoop.
func (s *Server) afterCommit(e *channels.Entry, err error) {
	if err != nil {
		rj := storeRejection(err)
		s.stats.rejected[rj.reason].Add(1)
		s.log.Warn("publish rejected", "channel", e.ChannelID, "qos", 0, "reason", rj.reason, "error", err.Error())
		s.pending.Done()
		return
	}
	s.stats.accepted.Add(1)
	s.fanq <- e
}

// fanOutLoop fans out the entries committed asynchronously, in order.
func (s *Server) fanOutLoop() {
	for e := range s.fanq {
		s.committed(e)
		s.pending.Done()
	}
}

// fanOut publishes the entry JSON to channels/<id>/subscribe and each set
// field's bare value to its field topic, at QoS 0. Every delivery is
// checked against the subscriber's rights (see deliver).
func (s *Server) fanOut(e *channels.Entry) {
	buf := e.AppendJSON(make([]byte, 0, 384))
	s.deliver(dest{topic: channels.FeedTopic(e.ChannelID), channel: e.ChannelID}, buf)
	// Field topics cost a publish each, and most brokers have no field
	// subscriber at all: the gate counts filters that could match one.
	for n := 1; n <= channels.NumFields && s.fieldCount.Load() > 0; n++ {
		if v, ok := e.Field(n); ok {
			s.deliver(dest{topic: channels.FieldTopic(e.ChannelID, n), channel: e.ChannelID}, []byte(v))
		}
	}
	s.fanOutExtra(e, buf)
	s.notifyWatchers(e, buf)
}

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
