package channels

import "strings"

// Reserved reports whether a topic lies in a tree feedmq governs itself:
// channels/..., devices/... and the $ topics ($SYS and the like). Every
// other topic is a free topic: a plain MQTT topic governed by access rules,
// with retained messages, wills and persistent sessions.
func Reserved(topic string) bool {
	return topic == "channels" || topic == "devices" ||
		strings.HasPrefix(topic, "channels/") || strings.HasPrefix(topic, "devices/") ||
		strings.HasPrefix(topic, "$")
}

// FilterReaches reports whether a subscription filter can match a topic in
// the reserved trees (other than $ topics, which no filter starting with a
// wildcard matches): such a filter is checked against both the channel
// grants and the access rules, each for the topics it governs.
func FilterReaches(filter string) bool {
	if Reserved(filter) {
		return true
	}
	first, _, _ := strings.Cut(filter, "/")
	return first == "+" || first == "#"
}
