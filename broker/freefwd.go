package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/feedmq/feedmq/channels"
)

// Free-topic messages in a cluster: what mochi routed here to this node's
// subscribers goes to the other nodes too (forwardHook), and what the
// other nodes routed is routed here as if an inline client had published
// it (deliverRemoteFree). The inline path is what keeps a message from
// going round: forwardHook ignores inline publishes, and the feed hook
// lets them through without access rules for the publisher, bindings,
// retained bookkeeping or publish counts, all done on the origin node.
// Subscribers are vetted per delivery (OnACLCheck) and get the QoS of
// their subscription at most, as for a local publish.

// forwardHook is added to mochi only in a cluster that carries free
// messages: one node pays nothing for it.
type forwardHook struct {
	mqtt.HookBase
	srv *Server
}

func (h *forwardHook) ID() string { return "feedmq-cluster" }

func (h *forwardHook) Provides(b byte) bool { return forwardHookEvents.has(b) }

var forwardHookEvents = newHookSet(mqtt.OnPublished, mqtt.OnWillSent)

// OnPublished forwards a client's free-topic publish mochi has just
// routed. Reserved topics never get here routed (the feed hook keeps
// them from mochi: Ignore), nor do refused publishes.
func (h *forwardHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.Ignore {
		return
	}
	h.srv.forwardFree(&pk)
}

// OnWillSent forwards a will mochi has just routed; a refused or delayed
// will went to a $ topic instead and stays here (a delayed one is
// forwarded when sendDueWills publishes it).
func (h *forwardHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.srv.forwardFree(&pk)
}

// forwardFree hands a routed publish to the cluster, without its retain
// flag: the other nodes deliver it live, and a shared store keeps it
// retained for every node.
func (s *Server) forwardFree(pk *packets.Packet) {
	if s.free == nil || channels.Reserved(pk.TopicName) {
		return
	}
	m := &channels.Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos,
		PayloadFormat: pk.Properties.PayloadFormat, PayloadFormatFlag: pk.Properties.PayloadFormatFlag,
		ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
		CorrelationData: pk.Properties.CorrelationData, MessageExpiry: pk.Properties.MessageExpiryInterval}
	if len(pk.Properties.User) > 0 {
		m.User = make([]channels.UserProperty, len(pk.Properties.User))
		for i, u := range pk.Properties.User {
			m.User[i] = channels.UserProperty{Key: u.Key, Val: u.Val}
		}
	}
	s.free.ForwardFree(m)
}

// deliverRemoteFree routes a message another node published to this
// node's subscribers, through mochi's own publish path as an inline
// client's: mochi applies each subscription's QoS and the per-delivery
// check, and queues it for persistent sessions whose client is away.
func (s *Server) deliverRemoteFree(m *channels.Message) {
	if s.closing.Load() || channels.Reserved(m.Topic) {
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(m.QoS, 2)},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		Properties: packets.Properties{
			PayloadFormat: m.PayloadFormat, PayloadFormatFlag: m.PayloadFormatFlag,
			ContentType: m.ContentType, ResponseTopic: m.ResponseTopic,
			CorrelationData: m.CorrelationData, MessageExpiryInterval: m.MessageExpiry,
		},
	}
	if pk.FixedHeader.Qos > 0 {
		pk.PacketID = 1 // mochi's validity check wants one; an inline publish is never acknowledged
	}
	for _, u := range m.User {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Val})
	}
	if err := s.mochi.InjectPacket(s.remote, pk); err != nil {
		s.log.Warn("message from another node not delivered", "topic", safeTopic(m.Topic), "error", err.Error())
	}
}
