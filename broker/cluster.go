package broker

import (
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/feedmq/feedmq/channels"
)

// Cluster links this node to other nodes sharing its database (package
// cluster over NATS). Options.Cluster is nil on one node, and then
// nothing here runs.
type Cluster interface {
	// Attach is called once, by New: deliver fans an entry out to this
	// node's subscribers, in the order the cluster hands them over (entry
	// id order per channel); takeover closes this node's connection with
	// a client ID that connected on another node at at, if it is older
	// (winsTie: the other node's wins when they connected at the same
	// time; a zero at closes it whatever its age), and reports whether
	// it closed one.
	Attach(deliver func(*channels.Entry), takeover func(clientID string, at time.Time, winsTie bool) bool) error
	// Published takes an entry this node committed, instead of fanning
	// it out here directly: the cluster delivers it in order with the
	// other nodes' entries and sends it to them. It must not block on
	// the network: a PUBACK waits for it.
	Published(e *channels.Entry)
	// Connected announces that a client connected here at at.
	Connected(clientID string, at time.Time)
}

// committed hands a committed entry on: to the cluster when there is
// one, else straight to fan-out.
func (s *Server) committed(e *channels.Entry) {
	if c := s.opts.Cluster; c != nil {
		c.Published(e)
		return
	}
	s.fanOut(e)
}

var errTakenOver = errors.New("client ID connected on another node")

// takeoverRemote closes the connection with clientID if another node's,
// which connected at at, is newer: MQTT allows one connection per client
// ID. Its persistent session, if any, stays here (sessions are per node).
// The notice of an older connection can arrive after a newer one
// connected here (both nodes hear of each other); that one stays, and the
// other node closes its own when told of it.
func (s *Server) takeoverRemote(clientID string, at time.Time, winsTie bool) bool {
	cl, ok := s.mochi.Clients.Get(clientID)
	if !ok || cl.Net.Inline || cl.Closed() {
		return false
	}
	if !at.IsZero() && !s.olderThan(cl, at.UnixNano(), winsTie) {
		s.log.Info("keeping connection: newer than the same client ID's on another node", "client", clientID)
		return false
	}
	s.log.Info("closing connection: client ID connected on another node", "client", clientID)
	cl.Stop(errTakenOver)
	return true
}

// olderThan reports whether cl connected before the time at (unix
// nanoseconds), or at the same time when the other side wins ties. A
// connection still in its CONNECT is newer than any notice.
func (s *Server) olderThan(cl *mqtt.Client, at int64, winsTie bool) bool {
	ss := s.session(cl)
	if ss == nil {
		return true // not one of ours to keep: mochi's inline or a gone session
	}
	since := ss.since.Load()
	switch {
	case since == 0:
		return false
	case since == at:
		return winsTie
	}
	return since < at
}

var errFailClosed = errors.New("node failed closed")

// SetFailClosed turns fail-closed on or off. A cluster node that cannot
// confirm its state with the shared database for too long turns it on:
// every connection is closed and CONNECTs are refused (server
// unavailable), so that a credential revoked meanwhile is not honoured
// and the load balancer moves devices to nodes that can confirm. Off
// accepts connections again.
func (s *Server) SetFailClosed(on bool) {
	switch was := s.failClosed.Swap(on); {
	case was == on:
		return
	case !on:
		s.log.Info("accepting connections again: state confirmed")
		return
	}
	n := 0
	s.sessions.Range(func(_, v any) bool {
		v.(*session).cl.Stop(errFailClosed)
		n++
		return true
	})
	// One line, not one per connection.
	s.log.Warn("failed closed: state not confirmed with the shared database; connections closed, new ones refused",
		"closed", n)
}

// FreeCluster is a Cluster that also carries live free-topic messages
// between nodes (everything mochi routes outside the reserved trees), at
// most once: a message lost on the way is not sent again. New uses it
// when Options.Cluster implements it.
type FreeCluster interface {
	// AttachFree is called once, by New, after Attach: deliver hands a
	// message another node published to this node's subscribers;
	// maxPacket is this node's MQTT packet limit, which bounds what the
	// cluster accepts from the others.
	AttachFree(deliver func(*channels.Message), maxPacket int) error
	// ForwardFree sends a message this node accepted and routed to the
	// other nodes. It must not block on the network.
	ForwardFree(m *channels.Message)
}
