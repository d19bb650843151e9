package channels

import "strings"

// KindSet is a set of topic kinds.
type KindSet uint8

// Has reports whether k holds kind.
func (k KindSet) Has(kind Kind) bool { return k&(1<<kind) != 0 }

// KindsOf returns the set of the given kinds.
func KindsOf(kinds ...Kind) KindSet {
	var k KindSet
	for _, kind := range kinds {
		k |= 1 << kind
	}
	return k
}

// Filter is a parsed subscribe filter.
type Filter struct {
	// Kinds holds every kind of topic the filter can match.
	Kinds KindSet
	// Wildcard is set for a filter with + or # that can match topics of
	// any channel; it names no channel, so each delivery is authorized on
	// its own. Otherwise Topic is the filter, parsed by ParseTopic: a
	// topic, or the one-channel filter .../subscribe/fields/+[/<READKEY>].
	Wildcard bool
	Topic    Topic
}

// Placeholders of the wildcard shapes; no filter level contains NUL.
const (
	idLevel    = "\x00id"
	fieldLevel = "\x00field"
)

// wildcardShapes are the topics a wildcard filter may match: the canonical
// ones. Legacy and name forms are delivered only to their exact filter (a
// topic with a read key must never reach a # subscriber, and a wildcard
// subscriber gets each value once).
var wildcardShapes = [...]struct {
	kind   Kind
	levels []string
}{
	{KindFeed, []string{"channels", idLevel, "subscribe"}},
	{KindField, []string{"channels", idLevel, "subscribe", "fields", fieldLevel}},
	{KindSensor, []string{"devices", idLevel, "sensors", fieldLevel, "value"}},
}

// ParseFilter parses a subscribe filter and says which kinds of topic it
// can match. A filter without wildcards, or the one-channel filter
// channels/<id>/subscribe/fields/+[/<READKEY>], must be a topic that
// ParseTopic accepts, other than a publish topic. A filter with + or #
// must be able to match a canonical topic (channels/<id>/subscribe,
// .../fields/field<N>, devices/<id>/sensors/field<N>/value): its literal
// levels must be those of the shape, a channel ID as ParseID spells it,
// or field1 to field8. A filter longer than MaxTopicLen is refused before
// any parsing. Errors are *Error values with code EINVALID that wrap
// ErrTopic.
func ParseFilter(s string) (Filter, error) {
	if len(s) > MaxTopicLen {
		return Filter{}, topicError("filter is %d bytes long; no feedmq topic is longer than %d", len(s), MaxTopicLen)
	}
	if strings.HasPrefix(s, "$") {
		return Filter{}, topicError("$SYS and shared subscriptions are not available")
	}
	t, err := ParseTopic(s)
	if err == nil {
		if t.Kind == KindPublish {
			return Filter{}, topicError("publish topics cannot be subscribed to; use channels/<id>/subscribe")
		}
		kinds := KindSet(1 << t.Kind)
		if t.Kind == KindSensor {
			// field<N> may also be the label of another field while
			// field N is disabled (ResolveSensor): a name form then.
			kinds |= 1 << KindSensorName
		}
		return Filter{Kinds: kinds, Topic: t}, nil
	}
	if !strings.ContainsAny(s, "+#") {
		return Filter{}, err
	}
	var kinds KindSet
	for _, shape := range wildcardShapes {
		if matchShape(s, shape.levels) {
			kinds |= 1 << shape.kind
		}
	}
	if kinds == 0 {
		return Filter{}, topicError("filter matches no feedmq topic: wildcards can stand for levels of channels/<id>/subscribe[/fields/field<N>] and devices/<id>/sensors/field<N>/value, with <id> a channel ID without leading zeros")
	}
	return Filter{Kinds: kinds, Wildcard: true}, nil
}

// matchShape reports whether an MQTT filter can match a topic of shape.
func matchShape(filter string, shape []string) bool {
	rest := filter
	for i := 0; ; i++ {
		level, next, more := strings.Cut(rest, "/")
		if level == "#" {
			return !more
		}
		if i >= len(shape) {
			return false
		}
		switch want := shape[i]; {
		case level == "+":
		case want == idLevel:
			if _, ok := parseID(level); !ok {
				return false
			}
		case want == fieldLevel:
			if parseFieldLevel(level) == 0 {
				return false
			}
		case level != want:
			return false
		}
		if !more {
			return i == len(shape)-1
		}
		rest = next
	}
}
