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

// Topic is a parsed channel topic or subscribe filter.
type Topic struct {
	Action    Action
	ChannelID uint64
	Field     int    // 1..8 for a single-field topic, 0 for the channel feed
	AllFields bool   // subscribe filter channels/<id>/subscribe/fields/+
	Key       string // API key carried as the last level (legacy forms), "" if none
}

// String returns the topic in its canonical form without the key, so that
// it is safe to log: channels/<id>/publish, .../publish/fields/field<N>,
// channels/<id>/subscribe, .../subscribe/fields/field<N> or
// .../subscribe/fields/+. ParseTopic(t.String()) returns t with Key "".
func (t Topic) String() string {
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

// ParseTopic parses a channel topic (publish) or subscribe filter. It
// accepts, with <id> a decimal channel ID from 1 and <N> from 1 to 8:
//
//	channels/<id>/publish
//	channels/<id>/publish/fields/field<N>
//	channels/<id>/publish/<WRITEKEY>                  (legacy)
//	channels/<id>/publish/fields/field<N>/<WRITEKEY>  (legacy)
//	channels/<id>/subscribe
//	channels/<id>/subscribe/fields/field<N>
//	channels/<id>/subscribe/fields/+
//	channels/<id>/subscribe/json                      (legacy)
//	channels/<id>/subscribe/json/<READKEY>            (legacy)
//	channels/<id>/subscribe/fields/field<N>/<READKEY> (legacy)
//	channels/<id>/subscribe/fields/+/<READKEY>        (legacy)
//
// A key must have the shape ValidKey checks; whether it is the channel's
// key is for the caller to decide. Anything else, including filters with
// other wildcards such as channels/+/subscribe, is an *Error with code
// EINVALID that wraps ErrTopic. ParseTopic does not allocate unless it
// fails.
func ParseTopic(s string) (Topic, error) {
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
		return Topic{}, topicError("topic must start with channels/<id>/")
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
		t.Action = Publish
	case "subscribe":
		t.Action = Subscribe
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
	case t.Action == Subscribe && level == "json":
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
	if s == "" {
		return 0, topicError("channel ID is missing: use channels/<id>/...")
	}
	if s[0] == '0' {
		return 0, topicError("channel ID must be a number from 1 without leading zeros, not %s", quoteShort(s))
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, topicError("channel ID must be a decimal number, not %s", quoteShort(s))
		}
		if n > (1<<64-1-uint64(d))/10 {
			return 0, topicError("channel ID %s is too large", quoteShort(s))
		}
		n = n*10 + uint64(d)
	}
	return n, nil
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
