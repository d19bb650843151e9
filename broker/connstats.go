package broker

import "sync/atomic"

// Reasons a CONNECT is refused, as counted (Stats.Refused).
const (
	refusedThrottled   = "throttled"          // too many failed logins from the address
	refusedShutdown    = "shutting_down"      // Close has begun
	refusedMaxConns    = "max_connections"    // Options.MaxConnections reached
	refusedClientID    = "bad_client_id"      // reserved ID, or not the device's
	refusedPersistent  = "persistent_session" // anonymous persistent session over sessions.max_anonymous
	refusedAnonymous   = "anonymous_disabled" // no username, Options.Anonymous off
	refusedCredentials = "bad_credentials"    // unknown username or wrong password
	refusedFailClosed  = "fail_closed"        // a cluster node that cannot confirm its state (SetFailClosed)
)

var refusals = []string{refusedThrottled, refusedShutdown, refusedMaxConns, refusedClientID,
	refusedPersistent, refusedAnonymous, refusedCredentials, refusedFailClosed}

// listenerIDs are the IDs of the listeners Open may start.
var listenerIDs = []string{"mqtt", "mqtts", "ws", "wss"}

// ListenerStats counts the connections of one listener.
type ListenerStats struct {
	Live     int64  // connections authenticated and not yet gone
	Accepted uint64 // CONNECTs accepted since the server started
}

type listenerStats struct {
	live     atomic.Int64
	accepted atomic.Uint64
}

// connStats are the connection counters. Their maps have fixed keys, set
// up by init, so they are read and updated without a lock.
type connStats struct {
	listeners map[string]*listenerStats // by listener ID
	refused   map[string]*atomic.Uint64 // by refusal reason
}

func (c *connStats) init() {
	c.listeners = make(map[string]*listenerStats, len(listenerIDs))
	for _, id := range listenerIDs {
		c.listeners[id] = new(listenerStats)
	}
	c.refused = make(map[string]*atomic.Uint64, len(refusals))
	for _, r := range refusals {
		c.refused[r] = new(atomic.Uint64)
	}
}

// listener returns the counters of listener id, or nil for a listener
// Open does not start (a test's own).
func (c *connStats) listener(id string) *listenerStats { return c.listeners[id] }

// connected counts an accepted connection of ls (which may be nil).
func (ls *listenerStats) connected() {
	if ls != nil {
		ls.accepted.Add(1)
		ls.live.Add(1)
	}
}

// gone counts the end of a connection of ls (which may be nil).
func (ls *listenerStats) gone() {
	if ls != nil {
		ls.live.Add(-1)
	}
}

// connSnapshot fills the connection fields of a Stats: listeners that are
// running, and every refusal reason.
func (s *Server) connSnapshot(out *Stats) {
	out.Connections = make(map[string]ListenerStats, len(s.listeners))
	for id := range s.listeners {
		if ls := s.stats.conns.listener(id); ls != nil {
			out.Connections[id] = ListenerStats{Live: ls.live.Load(), Accepted: ls.accepted.Load()}
		}
	}
	out.Refused = make(map[string]uint64, len(refusals))
	for r, c := range s.stats.conns.refused {
		out.Refused[r] = c.Load()
	}
}
