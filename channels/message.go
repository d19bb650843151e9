package channels

// Message is a live MQTT message on a free topic, as one server of a
// cluster hands it to the others for their subscribers: the publish
// without its retain flag (a shared store keeps retained messages) and
// with the MQTT 5 properties that travel to subscribers.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	// MQTT 5 properties of the publish; zero values are absent ones.
	PayloadFormat     byte
	PayloadFormatFlag bool
	ContentType       string
	ResponseTopic     string
	CorrelationData   []byte
	User              []UserProperty
	// MessageExpiry is the message expiry interval in seconds, 0 for none.
	MessageExpiry uint32
}
