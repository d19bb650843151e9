package broker

// bindPublish turns a publish on a free topic, already accepted and
// allowed for its publisher, into feed entries of the channels bound to
// the topic, through the same commit path as channels/<id>/publish.
// Called by the free-topic publish path after the publish is accepted.
func (s *Server) bindPublish(device uint64, clientID, topic string, payload []byte) {
}
