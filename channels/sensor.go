package channels

// This file maps channels onto Waziup-style sensor topics (REFERENCE §3):
// devices/<channel>/sensors/<sensor>/value, where <channel> is a channel ID
// or name and <sensor> is field<N> or a field's label. A publish carries
// {"value": ..., "timestamp": ...}; subscribers receive
// {"value":"...","timestamp":"..."} for each entry that sets the field.
// Resolving a channel name against the live channels is the broker's job.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxTopicLevel is the longest topic level, in bytes, that ValidTopicLevel
// accepts: as long as the longest channel name or field label.
const MaxTopicLevel = 255

// MaxTopicLen is the longest topic or filter, in bytes, that any feedmq
// topic form can have: a sensor topic with a channel name and a field
// label of MaxTopicLevel bytes each. The channel forms are far shorter
// (20-digit ID, field<N>, 16-character key). A longer topic names nothing
// and can be refused before anything is looked up or kept.
const MaxTopicLen = len("devices/") + MaxTopicLevel + len("/sensors/") + MaxTopicLevel + len("/value")

// sensorForm is the shape of a sensor topic, for error messages.
const sensorForm = "devices/<channel>/sensors/<sensor>/value"

// SensorTopic is a parsed Waziup-style topic devices/<channel>/sensors/<sensor>/value.
type SensorTopic struct {
	Channel   string // channel ID (decimal) or channel name, as written
	ChannelID uint64 // the ID when Channel is one (ParseID), else 0 and Channel is a name
	Sensor    string // "field<N>" or a field label, as written
}

// SensorTopicFor returns the topic devices/<channel>/sensors/<sensor>/value.
// ParseSensorTopic accepts it when both names satisfy ValidTopicLevel.
func SensorTopicFor(channel, sensor string) string {
	return "devices/" + channel + "/sensors/" + sensor + "/value"
}

// ValidTopicLevel reports whether a name can stand as one topic level: not
// empty, valid UTF-8, at most MaxTopicLevel bytes, and free of '/', '+',
// '#' and NUL. A channel name or field label that fails it cannot be
// addressed in a sensor topic.
func ValidTopicLevel(s string) bool {
	return s != "" && len(s) <= MaxTopicLevel && utf8.ValidString(s) &&
		!strings.ContainsAny(s, "/+#\x00")
}

// ParseSensorTopic parses a publish topic devices/<channel>/sensors/<sensor>/value.
// The channel and sensor levels are returned as written; each must satisfy
// ValidTopicLevel. A channel level that looks like an ID (LooksLikeID) is
// an ID and must pass ParseID: devices/01/... is refused, never read as
// channel 1 or as a channel named "01". Wildcards, empty levels and any other shape are an
// *Error with code EINVALID that wraps ErrTopic. ParseSensorTopic does not
// allocate unless it fails.
func ParseSensorTopic(s string) (SensorTopic, error) {
	switch {
	case strings.ContainsAny(s, "+#"):
		return SensorTopic{}, topicError("wildcards (+, #) are not allowed in a sensor topic")
	case hasEmptyLevel(s):
		return SensorTopic{}, topicError("topic has an empty level (a doubled, leading or trailing /)")
	}
	rest, ok := strings.CutPrefix(s, "devices/")
	if !ok {
		return SensorTopic{}, topicError("sensor topic must start with devices/: %s", sensorForm)
	}
	channel, rest, more := strings.Cut(rest, "/")
	kind, rest, more2 := strings.Cut(rest, "/")
	if !more || !more2 {
		return SensorTopic{}, topicError("sensor topic is too short: %s", sensorForm)
	}
	switch kind {
	case "sensors":
	case "actuators":
		return SensorTopic{}, topicError("actuator topics are not supported; channels have sensors only: %s", sensorForm)
	default:
		return SensorTopic{}, topicError("level after the channel must be sensors, not %s", quoteShort(kind))
	}
	sensor, last, more := strings.Cut(rest, "/")
	if !more {
		return SensorTopic{}, topicError("sensor topic must end with /value: %s", sensorForm)
	}
	if last, _, more = strings.Cut(last, "/"); last != "value" {
		return SensorTopic{}, topicError("level after the sensor must be value, not %s", quoteShort(last))
	}
	if more {
		return SensorTopic{}, topicError("sensor topic must end with /value, but it goes on")
	}
	if err := checkLevel("channel", channel); err != nil {
		return SensorTopic{}, err
	}
	if err := checkLevel("sensor", sensor); err != nil {
		return SensorTopic{}, err
	}
	st := SensorTopic{Channel: channel, Sensor: sensor}
	if LooksLikeID(channel) {
		// Never a name: names that look like IDs are not allowed.
		id, err := ParseID(channel)
		if err != nil {
			return SensorTopic{}, err
		}
		st.ChannelID = id
	}
	return st, nil
}

// checkLevel explains why a level with no '/', '+' or '#' fails ValidTopicLevel.
func checkLevel(what, s string) error {
	switch {
	case len(s) > MaxTopicLevel:
		return topicError("%s level is %d bytes long; the limit is %d", what, len(s), MaxTopicLevel)
	case !utf8.ValidString(s):
		return topicError("%s level is not valid UTF-8", what)
	case strings.IndexByte(s, 0) >= 0:
		return topicError("%s level contains a NUL character", what)
	}
	return nil
}

// TopicName returns the name of ch as it stands in sensor topics, and
// false when the name cannot stand there: it fails ValidTopicLevel, or it
// looks like a channel ID (LooksLikeID), which a sensor topic always reads
// as an ID. Such a channel is still addressed by its ID.
func TopicName(ch *Channel) (string, bool) {
	if !ValidTopicLevel(ch.Name) || LooksLikeID(ch.Name) {
		return "", false
	}
	return ch.Name, true
}

// ResolveSensor returns the field of ch that a sensor level names:
// "field<N>" when field N is enabled, else the enabled field whose label
// equals sensor exactly (case-sensitive). It returns 0 and an error with
// code ENOTFOUND when no enabled field matches, and with ECONFLICT when
// several enabled fields share the label; both errors wrap ErrTopic and
// name the channel.
func ResolveSensor(ch *Channel, sensor string) (int, error) {
	if n := parseFieldLevel(sensor); n != 0 && ch.FieldEnabled(n) {
		return n, nil
	}
	found, other := 0, 0
	for i, l := range ch.Fields {
		if l == "" || l != sensor {
			continue
		}
		if found == 0 {
			found = i + 1
		} else if other == 0 {
			other = i + 1
		}
	}
	switch {
	case other != 0:
		return 0, &Error{Code: ECONFLICT, Err: ErrTopic, Message: fmt.Sprintf(
			"sensor %s of channel %d is ambiguous: field%d and field%d share that label; use field<N>",
			quoteShort(sensor), ch.ID, found, other)}
	case found != 0:
		return found, nil
	case parseFieldLevel(sensor) != 0:
		return 0, &Error{Code: ENOTFOUND, Err: ErrTopic, Message: fmt.Sprintf(
			"%s is not enabled on channel %d", sensor, ch.ID)}
	}
	return 0, &Error{Code: ENOTFOUND, Err: ErrTopic, Message: fmt.Sprintf(
		"channel %d has no enabled field labelled %s; name a sensor field1..field8 or by its label",
		ch.ID, quoteShort(sensor))}
}

// SensorLabel returns the label of field n when it addresses field n in a
// sensor topic as well as field<n> does: the field is enabled, its label
// satisfies ValidTopicLevel, differs from "field<n>", and ResolveSensor
// maps it back to n (no other field shares it and it does not spell the
// name of another enabled field). The broker should publish a field's
// values to the label's topic only when ok is true, so that a topic never
// carries a field that ResolveSensor would not write to.
func SensorLabel(ch *Channel, n int) (label string, ok bool) {
	if !ch.FieldEnabled(n) {
		return "", false
	}
	label = ch.Fields[n-1]
	if !ValidTopicLevel(label) || parseFieldLevel(label) == n {
		return "", false
	}
	if m, err := ResolveSensor(ch, label); err != nil || m != n {
		return "", false
	}
	return label, true
}

// ParseSensorPayload turns the payload of a sensor topic into an entry for
// field (1..8) of ch, which must not be nil. The payload is a JSON
// object {"value": <string, number or boolean>, "timestamp": "<ISO 8601>"};
// keys match exactly, other keys (such as Waziup's "date_received") are
// ignored, and a repeated key overrides earlier ones. Trailing data after
// the object is refused.
//
// The value is kept as text: a string's content, a number's literal exactly
// as written (23.50 stays "23.50"), true or false. null, objects, arrays and
// "" are refused. The value obeys the rules of ParsePayload's values: valid
// UTF-8, no control characters but tab, CR and LF, at most lim.MaxValueLen
// characters. The timestamp, when present and not null or "", is parsed
// like ParsePayload's created_at and sets CreatedAt; otherwise CreatedAt is
// left zero for the store to fill in. The entry's ID is left 0.
//
// Errors are *Error values with code EINVALID that wrap ErrTooLarge for a
// payload over lim.MaxPayload bytes and ErrPayload otherwise.
func ParseSensorPayload(ch *Channel, field int, payload []byte, lim Limits) (Entry, error) {
	lim = lim.withDefaults()
	if err := lim.checkSize(payload); err != nil {
		return Entry{}, err
	}
	if field < 1 || field > NumFields {
		return Entry{}, payloadError("field%d does not exist: fields are numbered 1 to %d", field, NumFields)
	}
	if !ch.FieldEnabled(field) {
		return Entry{}, notEnabled(ch, field)
	}
	e := Entry{ChannelID: ch.ID}
	if err := parseSensorJSON(&e, field, payload, lim); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// parseSensorJSON fills field n and CreatedAt of e from a sensor payload.
func parseSensorJSON(e *Entry, n int, payload []byte, lim Limits) error {
	doc, err := decodeSensorObject(payload)
	if err != nil {
		return err
	}
	raw, ok := doc["value"]
	if !ok {
		return payloadError(`payload has no "value": send {"value":"23.5"}`)
	}
	v, err := sensorValue(raw)
	if err != nil {
		return err
	}
	if err := checkText("value", v, lim.MaxValueLen); err != nil {
		return err
	}
	e.SetValue(n-1, v)
	if raw, ok := doc["timestamp"]; ok {
		return setSensorTime(e, raw)
	}
	return nil
}

// decodeSensorObject decodes a payload that must be exactly one JSON object.
// json.Unmarshal refuses trailing data and bounds nesting depth; the raw
// messages it keeps are copies, so nothing aliases the payload.
func decodeSensorObject(payload []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(payload) {
		return nil, payloadError("payload is not valid UTF-8")
	}
	p := bytes.TrimLeft(payload, " \t\r\n")
	if len(p) == 0 {
		return nil, payloadError(`payload is empty: send {"value":"23.5"}`)
	}
	if p[0] != '{' {
		return nil, payloadError(`payload must be a JSON object such as {"value":"23.5"}`)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(p, &doc); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, payloadError("payload is not valid JSON: %s", se.Error())
		}
		return nil, payloadError("payload is not a valid JSON object")
	}
	return doc, nil
}

// sensorValue returns the text of a raw JSON value: a string's content, a
// number's literal or true/false.
func sensorValue(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", payloadError(`payload has no "value": send {"value":"23.5"}`)
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", payloadError("value is not a valid JSON string")
		}
		if s == "" {
			return "", payloadError("value is empty")
		}
		return s, nil
	case 'n':
		return "", payloadError("value is null: send a string, number or boolean")
	case '{', '[':
		return "", payloadError("value must be a string, number or boolean, not an object or array")
	}
	// true, false or a number, as the decoder validated it.
	return string(raw), nil
}

// setSensorTime parses the raw timestamp into e.CreatedAt; null and ""
// leave it zero.
func setSensorTime(e *Entry, raw json.RawMessage) error {
	if string(raw) == "null" {
		return nil
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return payloadError(`timestamp must be a string such as "2016-06-08T18:20:27Z"`)
	}
	if err := setCreatedAt(e, strings.TrimSpace(s)); err != nil {
		// The parser speaks of the form key created_at; the JSON key is timestamp.
		return payloadError("%s", timestampWords.Replace(ErrorMessage(err)))
	}
	return nil
}

var timestampWords = strings.NewReplacer("created_at", "timestamp", ": write + as %2B", "")

// AppendSensorJSON appends the message subscribers of a sensor topic
// receive for field n of e: {"value":"<v>","timestamp":"<created_at>"},
// compact, in this key order, with the value always a JSON string and the
// timestamp in TimeFormat. An unset field or an n outside 1..8 gives "".
func AppendSensorJSON(b []byte, e *Entry, n int) []byte {
	var v string
	if n >= 1 && n <= NumFields {
		v, _ = e.Field(n)
	}
	b = append(b, `{"value":`...)
	b = AppendJSONString(b, v)
	b = append(b, `,"timestamp":"`...)
	b = e.CreatedAt.UTC().AppendFormat(b, TimeFormat)
	return append(b, `"}`...)
}
