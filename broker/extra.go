package broker

import (
	"strconv"

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

// extraKinds are the kinds of topic fan-out publishes only while some
// granted filter may match them.
var extraKinds = channels.KindsOf(channels.KindLegacy, channels.KindSensor, channels.KindSensorName, channels.KindField)

// noteFilter records a granted filter of ss.
func (s *Server) noteFilter(ss *session, filter string) {
	f, err := channels.ParseFilter(filter)
	if err != nil || f.Kinds&extraKinds == 0 {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, dup := ss.extra[filter]; dup {
		return
	}
	if ss.extra == nil {
		ss.extra = make(map[string]channels.KindSet)
	}
	ss.extra[filter] = f.Kinds
	s.countFilter(filter, f.Kinds, 1)
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

func (s *Server) countFilter(filter string, kinds channels.KindSet, delta int64) {
	if kinds.Has(channels.KindLegacy) {
		s.legacyCount.Add(delta)
	}
	if kinds.Has(channels.KindSensor) {
		s.sensorCount.Add(delta)
	}
	if kinds.Has(channels.KindField) {
		s.fieldCount.Add(delta)
	}
	if kinds.Has(channels.KindSensorName) {
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
	id, key := e.ChannelID, ch.ReadKey
	s.deliver(dest{topic: channels.LegacyFeedTopic(id, ""), channel: id, exact: true}, feed)
	s.deliver(dest{topic: channels.LegacyFeedTopic(id, key), channel: id, key: key, exact: true}, feed)
	var fields string // the filter .../fields/+/<KEY>, which gets every field
	for n := 1; n <= channels.NumFields; n++ {
		if v, ok := e.Field(n); ok {
			if fields == "" {
				fields = channels.LegacyFieldsFilter(id, key)
			}
			d := dest{topic: channels.LegacyFieldTopic(id, n, key), channel: id, key: key, exact: true, alt: fields}
			s.deliver(d, []byte(v))
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
			s.deliver(dest{topic: channels.SensorTopicFor(id, field), channel: ch.ID}, buf)
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
					s.deliver(dest{topic: t, channel: ch.ID, exact: true}, append([]byte(nil), buf...))
				}
			}
		}
	}
}

// exactDeliveryAllowed reports whether a delivery to d may go to cl:
// always for the canonical kinds; for legacy and name forms only when cl
// holds that exact filter, or d.alt (.../fields/+/<KEY> for a legacy
// field topic).
func exactDeliveryAllowed(cl *mqtt.Client, d *dest) bool {
	if !d.exact {
		return true
	}
	if _, ok := cl.State.Subscriptions.Get(d.topic); ok {
		return true
	}
	if d.alt == "" {
		return false
	}
	_, ok := cl.State.Subscriptions.Get(d.alt)
	return ok
}

// markPending notes a filter of the SUBSCRIBE being processed. A filter
// longer than limit (any topic of its tree) is refused unparsed and not
// kept.
func (ss *session) markPending(filter string, limit int) {
	if len(filter) > limit {
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
