package channels

import (
	"fmt"
	"strconv"
	"strings"
)

// Action says whether a topic is written to or read from.
type Action uint8

const (
	Publish   Action = iota + 1 // channels/<id>/publish...
	Subscribe                   // channels/<id>/subscribe...
)

// String returns "publish" or "subscribe".
func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Kind is the form of a topic. It tells which fan-out publishes the topic
// and who may receive it: the canonical kinds go to every subscriber whose
// filter matches and who may read the channel; KindLegacy and
// KindSensorName only to subscribers of exactly that topic.
type Kind uint8

const (
	KindPublish    Kind = iota + 1 // channels/<id>/publish[/fields/field<N>][/<WRITEKEY>]
	KindFeed                       // channels/<id>/subscribe
	KindField                      // channels/<id>/subscribe/fields/field<N> (and the filter .../fields/+)
	KindLegacy                     // channels/<id>/subscribe/json[/<READKEY>], .../fields/field<N>/<READKEY>, .../fields/+/<READKEY>
	KindSensor                     // devices/<id>/sensors/field<N>/value
	KindSensorName                 // devices/<channel>/sensors/<sensor>/value by channel name or field label
)

var kindNames = [...]string{KindPublish: "publish", KindFeed: "feed", KindField: "field",
	KindLegacy: "legacy", KindSensor: "sensor", KindSensorName: "sensor-name"}

// String names the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Topic is a parsed topic of either family, or a one-channel subscribe
// filter (.../fields/+).
type Topic struct {
	Kind      Kind
	Action    Action // Publish or Subscribe for channel topics; 0 for sensor topics, which are both
	ChannelID uint64 // 0 only for a sensor topic that names its channel (Channel)
	Field     int    // 1..8 for a single-field channel topic, 0 for the channel feed
	AllFields bool   // subscribe filter channels/<id>/subscribe/fields/+
	Key       string // API key carried as the last level (legacy forms), "" if none
	Channel   string // sensor topics: the channel level as written (ID or name)
	Sensor    string // sensor topics: the sensor level as written (field<N> or label)
}

// String returns the topic without its key, so that it is safe to log:
// channels/<id>/publish, .../publish/fields/field<N>, channels/<id>/subscribe,
// .../subscribe/json, .../subscribe/fields/field<N>, .../subscribe/fields/+
// or the sensor topic as written.
func (t Topic) String() string {
	if t.Kind == KindSensor || t.Kind == KindSensorName {
		return SensorTopicFor(t.Channel, t.Sensor)
	}
	b := make([]byte, 0, 48)
	b = append(b, "channels/"...)
	b = strconv.AppendUint(b, t.ChannelID, 10)
	b = append(b, '/')
	b = append(b, t.Action.String()...)
	switch {
	case t.AllFields:
		b = append(b, "/fields/+"...)
	case t.Field != 0:
		b = append(b, "/fields/field"...)
		b = strconv.AppendInt(b, int64(t.Field), 10)
	case t.Kind == KindLegacy:
		b = append(b, "/json"...)
	}
	return string(b)
}

// FeedTopic returns the topic a channel's feed JSON is published to:
// channels/<id>/subscribe.
func FeedTopic(id uint64) string {
	return "channels/" + strconv.FormatUint(id, 10) + "/subscribe"
}

// FieldTopic returns the topic the bare value of field n is published to:
// channels/<id>/subscribe/fields/field<n>.
func FieldTopic(id uint64, n int) string {
	return "channels/" + strconv.FormatUint(id, 10) + "/subscribe/fields/field" + strconv.Itoa(n)
}

// LegacyFeedTopic returns channels/<id>/subscribe/json, or with a key
// channels/<id>/subscribe/json/<key>: the legacy forms of the feed topic.
func LegacyFeedTopic(id uint64, key string) string {
	if key == "" {
		return FeedTopic(id) + "/json"
	}
	return FeedTopic(id) + "/json/" + key
}

// LegacyFieldTopic returns channels/<id>/subscribe/fields/field<n>/<key>.
func LegacyFieldTopic(id uint64, n int, key string) string {
	return FieldTopic(id, n) + "/" + key
}

// LegacyFieldsFilter returns the filter channels/<id>/subscribe/fields/+/<key>,
// whose subscribers receive every LegacyFieldTopic of the channel and key.
func LegacyFieldsFilter(id uint64, key string) string {
	return FeedTopic(id) + "/fields/+/" + key
}

// ParseTopic parses a topic of either family, the one grammar of feedmq's
// topics. With <id> a channel ID (ParseID) and <N> from 1 to 8 it accepts
// the channel topics
//
//	channels/<id>/publish                             KindPublish
//	channels/<id>/publish/fields/field<N>             KindPublish
//	channels/<id>/publish/<WRITEKEY>                  KindPublish (legacy)
//	channels/<id>/publish/fields/field<N>/<WRITEKEY>  KindPublish (legacy)
//	channels/<id>/subscribe                           KindFeed
//	channels/<id>/subscribe/fields/field<N>           KindField
//	channels/<id>/subscribe/fields/+                  KindField (a filter)
//	channels/<id>/subscribe/json                      KindLegacy
//	channels/<id>/subscribe/json/<READKEY>            KindLegacy
//	channels/<id>/subscribe/fields/field<N>/<READKEY> KindLegacy
//	channels/<id>/subscribe/fields/+/<READKEY>        KindLegacy (a filter)
//
// and the sensor topics devices/<channel>/sensors/<sensor>/value
// (ParseSensorTopic): KindSensor for devices/<id>/sensors/field<N>/value,
// else KindSensorName, with ChannelID 0 when <channel> is a name.
//
// A key must have the shape ValidKey checks; whether it is the channel's
// key is for the caller to decide. Anything else, including filters with
// other wildcards such as channels/+/subscribe (see ParseFilter), is an
// *Error with code EINVALID that wraps ErrTopic. ParseTopic does not
// allocate unless it fails.
func ParseTopic(s string) (Topic, error) {
	if strings.HasPrefix(s, "devices/") {
		st, err := ParseSensorTopic(s)
		if err != nil {
			return Topic{}, err
		}
		t := Topic{Kind: KindSensorName, ChannelID: st.ChannelID, Channel: st.Channel, Sensor: st.Sensor}
		if st.ChannelID != 0 {
			if t.Field = parseFieldLevel(st.Sensor); t.Field != 0 {
				t.Kind = KindSensor
			}
		}
		return t, nil
	}
	t, err := parseTopic(s)
	if err != nil {
		return Topic{}, explain(s, err)
	}
	return t, nil
}

// explain replaces the error of parsing s with a clearer one when s has an
// empty level or a wildcard, the likelier causes. Checking for them only
// after a failure keeps the common path fast.
func explain(s string, err error) error {
	switch {
	case hasEmptyLevel(s):
		return topicError("topic has an empty level (a doubled, leading or trailing /)")
	case !strings.HasPrefix(s, "channels/") || !strings.ContainsAny(s, "+#"):
		return err
	case isPublish(s):
		return topicError("wildcards (+, #) are not allowed in a publish topic")
	case strings.IndexByte(s, '#') >= 0:
		return topicError("the # wildcard is not supported in channel topics; subscribe to channels/<id>/subscribe or channels/<id>/subscribe/fields/+")
	}
	return topicError("the only wildcard supported in channel topics is + in channels/<id>/subscribe/fields/+")
}

// isPublish reports whether s starts channels/<level>/publish.
func isPublish(s string) bool {
	_, rest, _ := strings.Cut(s, "/")
	_, rest, _ = strings.Cut(rest, "/")
	action, _, _ := strings.Cut(rest, "/")
	return action == "publish"
}

func parseTopic(s string) (Topic, error) {
	rest, ok := strings.CutPrefix(s, "channels/")
	if !ok {
		return Topic{}, topicError("topic must start with channels/<id>/ or devices/<channel>/")
	}
	level, rest, more := strings.Cut(rest, "/")
	id, err := ParseID(level)
	if err != nil {
		return Topic{}, err
	}
	if !more {
		return Topic{}, topicError("topic must continue after the channel ID with /publish or /subscribe")
	}
	t := Topic{ChannelID: id}
	level, rest, more = strings.Cut(rest, "/")
	switch level {
	case "publish":
		t.Action, t.Kind = Publish, KindPublish
	case "subscribe":
		t.Action, t.Kind = Subscribe, KindFeed
	default:
		return Topic{}, topicError("level after the channel ID must be publish or subscribe, not %s", quoteShort(level))
	}
	if !more {
		return t, nil
	}
	return t.parseSuffix(rest)
}

// parseSuffix parses the levels after publish or subscribe.
func (t Topic) parseSuffix(rest string) (Topic, error) {
	level, rest, more := strings.Cut(rest, "/")
	switch {
	case level == "fields":
		if !more {
			return Topic{}, topicError("fields must be followed by field<N> (N from 1 to 8)")
		}
		level, rest, more = strings.Cut(rest, "/")
		if level == "+" && t.Action == Subscribe {
			t.AllFields = true
		} else if t.Field = parseFieldLevel(level); t.Field == 0 {
			return Topic{}, topicError("level after fields must be field1 to field8, not %s", quoteShort(level))
		}
		if t.Action == Subscribe {
			t.Kind = KindField
		}
	case t.Action == Subscribe && level == "json":
		t.Kind = KindLegacy
	case t.Action == Subscribe && (level == "xml" || level == "csv"):
		return Topic{}, topicError("subscribe format %s is not supported: only the json format is supported", level)
	case t.Action == Publish:
		// Legacy: the write key is the level right after publish.
		if !ValidKey(level) {
			return Topic{}, topicError("level after publish must be fields or a write API key (%d characters from A-Z and 0-9)", KeyLen)
		}
		return t.withKey(level, more)
	case ValidKey(level):
		return Topic{}, topicError("a read key goes after json: channels/%d/subscribe/json/<READKEY>", t.ChannelID)
	default:
		return Topic{}, topicError("level after subscribe must be fields or json, not %s", quoteShort(level))
	}
	if !more {
		return t, nil
	}
	level, _, more = strings.Cut(rest, "/")
	return t.withKey(level, more)
}

// withKey finishes a topic whose last level must be an API key.
func (t Topic) withKey(key string, more bool) (Topic, error) {
	if !ValidKey(key) {
		return Topic{}, topicError("API key in the topic must be %d characters from A-Z and 0-9", KeyLen)
	}
	if more {
		return Topic{}, topicError("topic must end with the API key, but it goes on")
	}
	t.Key = key
	if t.Action == Subscribe {
		t.Kind = KindLegacy
	}
	return t, nil
}

// hasEmptyLevel reports whether s has an empty topic level.
func hasEmptyLevel(s string) bool {
	return s == "" || s[0] == '/' || s[len(s)-1] == '/' || strings.Contains(s, "//")
}

// ParseID parses a channel ID as every interface spells it (MQTT topics,
// sensor topics, REST paths, the dashboard): decimal digits only, no sign,
// no leading zero, from 1 to the largest uint64. There is one spelling per
// channel, so "01" is never channel 1: a topic or path a subscriber
// authorizes is always the one fan-out and the store use. Errors are
// *Error values with code EINVALID that wrap ErrTopic. ParseID does not
// allocate unless it fails.
func ParseID(s string) (uint64, error) {
	if n, ok := parseID(s); ok {
		return n, nil
	}
	switch {
	case s == "":
		return 0, topicError("channel ID is missing: use channels/<id>/...")
	case s[0] == '0':
		return 0, topicError("channel ID must be a number from 1 without leading zeros, not %s", quoteShort(s))
	case !LooksLikeID(s):
		return 0, topicError("channel ID must be a decimal number, not %s", quoteShort(s))
	}
	return 0, topicError("channel ID %s is too large", quoteShort(s))
}

// parseID is ParseID without the error, for matching filter levels.
func parseID(s string) (uint64, bool) {
	if s == "" || s[0] == '0' || len(s) > len("18446744073709551615") {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 || n > (1<<64-1-uint64(d))/10 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	return n, true
}

// LooksLikeID reports whether s is spelled like a channel ID: one or more
// ASCII digits, whether or not ParseID accepts it ("01", "0" and numbers
// past uint64 included). A topic level that looks like an ID always means
// an ID, never a channel name, so names that look like IDs are refused
// (Channel.Validate) and never resolved or published.
func LooksLikeID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseFieldLevel returns N for "field<N>" with N from 1 to 8, else 0.
func parseFieldLevel(s string) int {
	if len(s) != len("field1") || s[:5] != "field" || s[5] < '1' || s[5] > '0'+NumFields {
		return 0
	}
	return int(s[5] - '0')
}

// maxQuoted bounds how much of bad input an error message quotes.
const maxQuoted = 32

// quoteShort quotes a piece of a topic or payload for an error message,
// shortened so that hostile input cannot blow up a log line.
func quoteShort(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

func topicError(format string, args ...any) error {
	return &Error{Code: EINVALID, Message: fmt.Sprintf(format, args...), Err: ErrTopic}
}
