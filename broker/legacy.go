package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/feedmq/feedmq/channels"
)

// Legacy ThingSpeak subscribe filters (channels/<id>/subscribe/json,
// .../json/<READKEY>, .../fields/field<N>/<READKEY>, .../fields/+/<READKEY>)
// are distinct MQTT topics, so fan-out must publish to them as well. Most
// brokers never see one, so the extra publishes happen only while at least
// one legacy filter is subscribed (legacyCount), and each is delivered only
// to clients that subscribed to exactly that form: a topic carrying a read
// key must never reach a "#" subscriber.

// isLegacyFilter reports whether filter is a legacy subscribe form.
func isLegacyFilter(filter string) (channels.Topic, bool) {
	t, err := channels.ParseTopic(filter)
	if err != nil || t.Action != channels.Subscribe {
		return t, false
	}
	return t, t.String() != filter
}

func (s *Server) noteLegacy(ss *session, filter string) {
	if _, ok := isLegacyFilter(filter); !ok {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, dup := ss.legacy[filter]; dup {
		return
	}
	if ss.legacy == nil {
		ss.legacy = make(map[string]struct{})
	}
	ss.legacy[filter] = struct{}{}
	s.legacyCount.Add(1)
}

func (s *Server) dropLegacy(ss *session, filter string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.legacy[filter]; ok {
		delete(ss.legacy, filter)
		s.legacyCount.Add(-1)
	}
}

// forgetLegacy drops every legacy filter of a closing session.
func (s *Server) forgetLegacy(ss *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.legacyCount.Add(-int64(len(ss.legacy)))
	ss.legacy = nil
}

// fanOutLegacy publishes an entry on the legacy topics of its channel.
func (s *Server) fanOutLegacy(e *channels.Entry, feed []byte) {
	ch, ok := s.registry.Channel(e.ChannelID)
	if !ok {
		return
	}
	base := channels.FeedTopic(e.ChannelID)
	s.deliver(base+"/json", feed)
	s.deliver(base+"/json/"+ch.ReadKey, feed)
	for n := 1; n <= channels.NumFields; n++ {
		if v, ok := e.Field(n); ok {
			s.deliver(channels.FieldTopic(e.ChannelID, n)+"/"+ch.ReadKey, []byte(v))
		}
	}
}

func (ss *session) markPending(filter string) {
	if _, ok := isLegacyFilter(filter); !ok {
		return
	}
	ss.mu.Lock()
	if ss.pending == nil {
		ss.pending = make(map[string]struct{})
	}
	ss.pending[filter] = struct{}{}
	ss.mu.Unlock()
}

func (ss *session) clearPending(filter string) {
	ss.mu.Lock()
	delete(ss.pending, filter)
	ss.mu.Unlock()
}

func (ss *session) isPending(filter string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.pending[filter]
	return ok
}

// legacyDeliveryAllowed reports whether a delivery on topic may go to cl:
// always for the canonical topics, and for legacy ones only when cl holds
// that exact filter (or .../fields/+/<KEY> for a field topic), or is
// subscribing to it right now (the ACL check of the filter itself).
func legacyDeliveryAllowed(cl *mqtt.Client, ss *session, topic string) bool {
	t, legacy := isLegacyFilter(topic)
	if !legacy {
		return true
	}
	if _, ok := cl.State.Subscriptions.Get(topic); ok || ss.isPending(topic) {
		return true
	}
	if t.Field > 0 && t.Key != "" {
		plus := strings.TrimSuffix(channels.FieldTopic(t.ChannelID, t.Field), channels.FieldName(t.Field)) + "+/" + t.Key
		_, ok := cl.State.Subscriptions.Get(plus)
		return ok
	}
	return false
}
