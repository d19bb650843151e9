package broker

import "sync/atomic"

// MochiClientsConnected is mochi's $SYS count of connected clients.
func (s *Server) MochiClientsConnected() int64 {
	return atomic.LoadInt64(&s.mochi.Info.ClientsConnected)
}
