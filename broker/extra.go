package broker

import (
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/feedmq/feedmq/channels"
)

// Besides the canonical topics (channels/<id>/subscribe[/fields/field<N>]),
// an entry can be delivered on extra topics that only some subscribers use:
//
//   - legacy ThingSpeak forms: channels/<id>/subscribe/json[/<READKEY>],
//     .../fields/field<N>/<READKEY> and .../fields/+/<READKEY>;
//   - Waziup sensor topics: devices/<id>/sensors/field<N>/value, and the
//     same with the channel's name or the field's label in place of the
//     number ("name forms").
//
// Publishing them costs a topic lookup each, so fan-out publishes a kind
// only while some filter of that kind is subscribed, and a name form only
// while that exact filter is. Legacy and name forms are delivered only to
// clients that subscribed to exactly that form: a topic carrying a read key
// must never reach a "#" subscriber, and a wildcard subscriber should get
// one copy of each value (the canonical one), not one per spelling.

// filterKind tells which optional fan-out topics a subscribe filter may
// match; a wildcard can match several kinds.
type filterKind uint8

const (
	kindLegacy     filterKind = 1 << iota // a legacy channels/... form
	kindSensor                            // canonical sensor topics
	kindSensorName                        // an exact sensor topic using names
	kindField                             // channels/<id>/subscribe/fields/field<N>

	kindCanonical filterKind = 0 // only channels/<id>/subscribe
)

func classify(filter string) filterKind {
	if t, err := channels.ParseTopic(filter); err == nil {
		switch {
		case t.Action == channels.Subscribe && t.String() != filter:
			return kindLegacy
		case t.Field > 0 || t.AllFields:
			return kindField
		}
		return kindCanonical
	}
	if st, err := channels.ParseSensorTopic(filter); err == nil {
		if isDigits(st.Channel) && isFieldLevel(st.Sensor) {
			return kindSensor
		}
		return kindSensorName
	}
	kind := kindCanonical
	if strings.ContainsAny(filter, "+#") {
		if filterMatches(filter, sensorShape) {
			kind |= kindSensor
		}
		if filterMatches(filter, fieldShape) {
			kind |= kindField
		}
	}
	return kind
}

// noteFilter records a granted filter of ss.
func (s *Server) noteFilter(ss *session, filter string) {
	kind := classify(filter)
	if kind == kindCanonical {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, dup := ss.extra[filter]; dup {
		return
	}
	if ss.extra == nil {
		ss.extra = make(map[string]filterKind)
	}
	ss.extra[filter] = kind
	s.countFilter(filter, kind, 1)
}

// dropFilter forgets an unsubscribed filter of ss.
func (s *Server) dropFilter(ss *session, filter string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if kind, ok := ss.extra[filter]; ok {
		delete(ss.extra, filter)
		s.countFilter(filter, kind, -1)
	}
}

// forgetFilters drops every filter of a closing session.
func (s *Server) forgetFilters(ss *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for f, kind := range ss.extra {
		s.countFilter(f, kind, -1)
	}
	ss.extra = nil
}

func (s *Server) countFilter(filter string, kind filterKind, delta int64) {
	if kind&kindLegacy != 0 {
		s.legacyCount.Add(delta)
	}
	if kind&kindSensor != 0 {
		s.sensorCount.Add(delta)
	}
	if kind&kindField != 0 {
		s.fieldCount.Add(delta)
	}
	if kind&kindSensorName != 0 {
		s.namesMu.Lock()
		if s.sensorNames[filter] += int(delta); s.sensorNames[filter] <= 0 {
			delete(s.sensorNames, filter)
		}
		s.namesMu.Unlock()
	}
}

func (s *Server) nameSubscribed(topic string) bool {
	s.namesMu.Lock()
	defer s.namesMu.Unlock()
	return s.sensorNames[topic] > 0
}

// fanOutExtra publishes an entry on the extra topics someone listens to.
func (s *Server) fanOutExtra(e *channels.Entry, feed []byte) {
	legacy, sensor := s.legacyCount.Load() > 0, s.sensorCount.Load() > 0
	s.namesMu.Lock()
	names := len(s.sensorNames) > 0
	s.namesMu.Unlock()
	if !legacy && !sensor && !names {
		return
	}
	ch, ok := s.registry.Channel(e.ChannelID)
	if !ok {
		return
	}
	if legacy {
		s.fanOutLegacy(ch, e, feed)
	}
	if sensor || names {
		s.fanOutSensors(ch, e, sensor, names)
	}
}

func (s *Server) fanOutLegacy(ch *channels.Channel, e *channels.Entry, feed []byte) {
	base := channels.FeedTopic(e.ChannelID)
	s.deliver(base+"/json", feed)
	s.deliver(base+"/json/"+ch.ReadKey, feed)
	for n := 1; n <= channels.NumFields; n++ {
		if v, ok := e.Field(n); ok {
			s.deliver(channels.FieldTopic(e.ChannelID, n)+"/"+ch.ReadKey, []byte(v))
		}
	}
}

func (s *Server) fanOutSensors(ch *channels.Channel, e *channels.Entry, canonical, names bool) {
	id := strconv.FormatUint(ch.ID, 10)
	var buf []byte
	for n := 1; n <= channels.NumFields; n++ {
		if _, ok := e.Field(n); !ok {
			continue
		}
		buf = channels.AppendSensorJSON(buf[:0], e, n)
		field := channels.FieldName(n)
		if canonical {
			s.deliver(channels.SensorTopicFor(id, field), buf)
		}
		if !names {
			continue
		}
		label, hasLabel := channels.SensorLabel(ch, n)
		chans := []string{id}
		if name, ok := channels.TopicName(ch); ok {
			chans = append(chans, name)
		}
		for _, c := range chans {
			for _, f := range []string{field, label} {
				if (f == label && !hasLabel) || (c == id && f == field) {
					continue
				}
				if t := channels.SensorTopicFor(c, f); s.nameSubscribed(t) {
					s.deliver(t, append([]byte(nil), buf...))
				}
			}
		}
	}
}

// exactDeliveryAllowed reports whether a delivery on topic may go to cl:
// always for canonical topics; for legacy and name forms only when cl holds
// that exact filter (or .../fields/+/<KEY> for a legacy field topic), or is
// subscribing to it right now (the ACL check of the filter itself).
func exactDeliveryAllowed(cl *mqtt.Client, ss *session, topic string) bool {
	if canonicalTopic(topic) {
		return true // the common case, decided without parsing
	}
	kind := classify(topic)
	if kind&(kindLegacy|kindSensorName) == 0 {
		return true
	}
	if _, ok := cl.State.Subscriptions.Get(topic); ok || ss.isPending(topic) {
		return true
	}
	if kind&kindLegacy == 0 {
		return false
	}
	t, _ := channels.ParseTopic(topic)
	if t.Field == 0 || t.Key == "" {
		return false
	}
	plus := channels.FeedTopic(t.ChannelID) + "/fields/+/" + t.Key
	_, ok := cl.State.Subscriptions.Get(plus)
	return ok
}

// markPending notes a filter of the SUBSCRIBE being processed. A filter
// longer than any topic is refused unparsed and not kept.
func (ss *session) markPending(filter string) {
	if len(filter) > channels.MaxTopicLen {
		return
	}
	ss.mu.Lock()
	if ss.pending == nil {
		ss.pending = make(map[string]bool)
	}
	ss.pending[filter] = false
	ss.mu.Unlock()
}

// clearPending forgets the SUBSCRIBE that has been answered.
func (ss *session) clearPending() {
	ss.mu.Lock()
	ss.pending = nil
	ss.mu.Unlock()
}

func (ss *session) isPending(filter string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.pending[filter]
	return ok
}

// refuseForQuota marks a pending filter refused for the subscription limit.
func (ss *session) refuseForQuota(filter string) {
	ss.mu.Lock()
	if _, ok := ss.pending[filter]; ok {
		ss.pending[filter] = true
	}
	ss.mu.Unlock()
}

func (ss *session) refusedForQuota(filter string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.pending[filter]
}

// canonicalTopic reports, cheaply, whether a delivered topic is one of the
// canonical fan-out topics. It runs for every delivery to every
// subscriber, so it only counts levels: the canonical channel topics have
// at most five levels and no "json"; a canonical sensor topic names the
// channel by number and the field as field<N>.
func canonicalTopic(topic string) bool {
	if rest, ok := strings.CutPrefix(topic, "channels/"); ok {
		return strings.Count(rest, "/") <= 3 && !strings.Contains(rest, "/json")
	}
	if rest, ok := strings.CutPrefix(topic, "devices/"); ok {
		id, rest, _ := strings.Cut(rest, "/")
		rest, _ = strings.CutPrefix(rest, "sensors/")
		field, _, _ := strings.Cut(rest, "/")
		return isDigits(id) && isFieldLevel(field)
	}
	return false
}
