package broker

import (
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Delayed wills. mochi holds an MQTT 5 will that has a Will Delay
// Interval and publishes it when the delay is over without asking the
// hook again: a will whose device lost its write rule, or was deleted,
// during the delay would go out unchecked, and what OnWill did for it at
// the disconnect (its bindings' entries, its retained slot) would stand
// even when a reconnect within the delay cancels it. So feedmq holds such
// wills itself: mochi gets a stand-in it can publish harmlessly, and the
// sweep sends each held will once it is due, vetted then, unless its
// client has come back.

// heldWill is a will waiting for its delay.
type heldWill struct {
	cl     *mqtt.Client
	device uint64
	will   mqtt.Will
	due    time.Time
}

// willHold keeps the delayed wills, one per client ID (a client has one
// session, and a reconnect cancels its will).
type willHold struct {
	mu sync.Mutex
	m  map[string]heldWill
}

func (w *willHold) hold(cl *mqtt.Client, device uint64, will mqtt.Will, due time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]heldWill)
	}
	w.m[cl.ID] = heldWill{cl: cl, device: device, will: will, due: due}
}

// forget drops the wills held for device's clients: its credentials
// were revoked.
func (w *willHold) forget(device uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, h := range w.m {
		if h.device == device {
			delete(w.m, id)
		}
	}
}

// cancel drops the will held for clientID: its client is back.
func (w *willHold) cancel(clientID string) {
	w.mu.Lock()
	delete(w.m, clientID)
	w.mu.Unlock()
}

// takeDue removes and returns the wills due at now.
func (w *willHold) takeDue(now time.Time) []heldWill {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []heldWill
	for id, h := range w.m {
		if !now.Before(h.due) {
			out = append(out, h)
			delete(w.m, id)
		}
	}
	return out
}

// willDelay is how long cl's will waits: its Will Delay Interval, but no
// longer than its session lives, since a will goes out at the latest when
// the session ends (a clean session ends with its connection).
func (s *Server) willDelay(cl *mqtt.Client, will mqtt.Will) time.Duration {
	d := time.Duration(will.WillDelayInterval) * time.Second
	if !persistent(cl) {
		return 0
	}
	if cl.Properties.ProtocolVersion >= 5 {
		d = min(d, time.Duration(cl.Properties.Props.SessionExpiryInterval)*time.Second)
	}
	return min(d, s.opts.SessionExpiry)
}

// sendDueWills publishes the held wills that are due and still allowed.
func (s *Server) sendDueWills(now time.Time) {
	for _, h := range s.wills.takeDue(now) {
		if cur, ok := s.mochi.Clients.Get(h.cl.ID); ok && cur != h.cl {
			// A new connection was made to the session (a takeover
			// hands the old connection's will over after the new one
			// cancelled what was held): [MQTT-3.1.3-9].
			continue
		}
		will, ok := s.vetDueWill(h.cl, h.will)
		if !ok {
			continue
		}
		if err := s.mochi.Publish(will.TopicName, will.Payload, will.Retain, will.Qos); err != nil {
			s.log.Warn("delayed will not sent", "client", h.cl.ID, "topic", safeTopic(will.TopicName), "error", err.Error())
		} else {
			// mochi published it as its inline client's, which the
			// forwarding hook leaves alone.
			s.forwardFree(&packets.Packet{FixedHeader: packets.FixedHeader{Qos: will.Qos}, TopicName: will.TopicName,
				Payload: will.Payload, Properties: packets.Properties{User: will.User}})
		}
		if s.shared != nil {
			// mochi retained it as its inline client's: the shared
			// index reads the topic again instead.
			s.shared.forget(h.cl, will.TopicName)
		}
	}
}
