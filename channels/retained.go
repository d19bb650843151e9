package channels

import (
	"crypto/sha256"
	"errors"
	"time"
)

// Retained is the retained MQTT message of a free topic, as a store shared
// by several servers keeps it: what a new subscriber on any server must be
// sent, with the MQTT 5 properties that travel with the message.
type Retained struct {
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
	// MessageExpiry is the publish's message expiry interval in seconds,
	// 0 for none; a store counts it from when it stores the message and
	// reports the end in Expires (zero: never).
	MessageExpiry uint32
	Expires       time.Time
	// Created is when the store took the message, by its clock.
	Created time.Time
	// ProtocolVersion is the MQTT version of the publish (expiry applies
	// to MQTT 5 messages only).
	ProtocolVersion byte
	// Version orders the changes of every retained message in the store:
	// each set or delete takes the next one.
	Version int64
}

// UserProperty is one MQTT 5 user property (a name may repeat).
type UserProperty struct{ Key, Val string }

// RetainedChange announces that the retained message of Topic changed at
// Version; the receiver reads the message itself. A topic too long to
// announce is named by its Key instead (Topic empty). Resync (neither)
// means changes may have been missed: reload them all.
type RetainedChange struct {
	Version int64
	Topic   string
	Key     [32]byte
	Resync  bool
}

// RetainedKey is the key a store keeps topic's retained message under,
// and names it by when the topic is too long to announce: its SHA-256.
func RetainedKey(topic string) [32]byte { return sha256.Sum256([]byte(topic)) }

// ErrRetainedFull is wrapped (Error.Err, code ELIMIT) by a store refusing
// a retained message past its bounds in number or bytes.
var ErrRetainedFull = errors.New("retained messages full")
