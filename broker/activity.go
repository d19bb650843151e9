package broker

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/auth"
)

// deviceActivity is what the broker remembers of a device beyond its live
// sessions. Sessions of the device share one record (made at CONNECT), so
// an accepted publish costs one atomic store, with no lock and no lookup.
type deviceActivity struct {
	// lastPublish is when the last accepted publish was, as time since the
	// server's start plus 1ns; 0: none yet. A monotonic reading costs
	// half what time.Now does, which reads the wall clock too, and the
	// wall clock may be stepped meanwhile (a board without a real-time
	// clock sets it from NTP after boot): what is kept is how long ago.
	lastPublish atomic.Int64
}

// published notes a publish accepted now; started is the server's start.
// A QoS 0 publish counts once it is queued for commit: its store fails
// only with the disk, which is logged and counted on its own.
func (a *deviceActivity) published(started time.Time) {
	a.lastPublish.Store(int64(time.Since(started)) + 1)
}

// lastPublished returns the time of the last accepted publish.
func (a *deviceActivity) lastPublished(started time.Time) (time.Time, bool) {
	d := a.lastPublish.Load()
	if d == 0 {
		return time.Time{}, false
	}
	ago := time.Since(started) - time.Duration(d-1)
	return time.Now().Add(-ago), true
}

// activityOf returns the record of a device, making it on first use. Only
// authenticated devices get one, so records are bounded by the devices
// that exist (plus any deleted since the last prune).
func (s *Server) activityOf(device uint64) *deviceActivity {
	if v, ok := s.activity.Load(device); ok {
		return v.(*deviceActivity)
	}
	v, _ := s.activity.LoadOrStore(device, new(deviceActivity))
	return v.(*deviceActivity)
}

// pruneActivity drops the records of devices the registry no longer has.
func (s *Server) pruneActivity() {
	s.activity.Range(func(k, _ any) bool {
		if !s.registry.HasDevice(k.(uint64)) {
			s.activity.Delete(k)
		}
		return true
	})
}

// DeviceActivity returns, for each device with a live connection or an
// accepted publish since the server started, its connections (oldest
// first) and the time of its last accepted publish. Times are UTC, to the
// second, like every other time feedmq shows. Connections count once their
// CONNACK is sent and stop counting when they end, however they end
// (disconnect, takeover, revoked credentials, a failed handshake).
// Anonymous connections belong to no device and are not listed.
func (s *Server) DeviceActivity() map[uint64]auth.Activity {
	s.pruneActivity()
	out := make(map[uint64]auth.Activity)
	s.sessions.Range(func(_, v any) bool {
		ss := v.(*session)
		c := ss.conn.Load()
		if c == nil || !s.registry.HasDevice(ss.device) {
			return true // not yet established, anonymous, or its device is gone
		}
		a := out[ss.device]
		a.Connections = append(a.Connections, *c)
		out[ss.device] = a
		return true
	})
	s.activity.Range(func(k, v any) bool {
		t, ok := v.(*deviceActivity).lastPublished(s.started)
		if !ok {
			return true
		}
		t = t.UTC().Truncate(time.Second)
		a := out[k.(uint64)]
		a.LastPublish = &t
		out[k.(uint64)] = a
		return true
	})
	for id, a := range out {
		if a.Connections == nil {
			a.Connections = []auth.Connection{}
		}
		slices.SortFunc(a.Connections, func(x, y auth.Connection) int {
			return cmp.Or(x.Since.Compare(y.Since), cmp.Compare(x.ClientID, y.ClientID))
		})
		out[id] = a
	}
	return out
}
