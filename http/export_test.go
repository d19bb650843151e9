package httpd

// BodyBytesInFlight is how many request body bytes the server holds
// reserved now.
func (s *Server) BodyBytesInFlight() int64 { return s.bodies.inUse() }
