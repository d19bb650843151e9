package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Binding turns publishes on free topics into feed entries of a channel:
// every publish on a topic matching Topic (an MQTT filter of free topics)
// becomes an entry whose values are extracted from the payload by the
// paths given (a JSONPath subset: $, $.a.b, $.a[0]; "$" alone is the
// whole payload as a plain number or string).
type Binding struct {
	ID        uint64
	ChannelID uint64
	Topic     string            // MQTT filter, free topics only
	Fields    [NumFields]string // path per field1..field8; "" not bound
	Status    string            // path or ""
	Latitude  string
	Longitude string
	Elevation string
	CreatedAt string    // path of the entry's timestamp; "" for the time received
	Created   time.Time // when the binding was made
}

// BindingStore keeps bindings. Implemented by storage.DB.
type BindingStore interface {
	// Bindings returns every binding, in ID order.
	Bindings(ctx context.Context) ([]Binding, error)
	// CreateBinding assigns b.ID and stores b; ENOTFOUND when its
	// channel does not exist.
	CreateBinding(ctx context.Context, b *Binding) error
	// DeleteBinding removes a binding; ENOTFOUND when there is none.
	DeleteBinding(ctx context.Context, id uint64) error
}

// MaxBindingTopic is the longest topic filter a binding takes, in bytes.
const MaxBindingTopic = 1024

// MaxBindingPayload is the largest payload a binding extracts from, in
// bytes. Free topics carry whatever devices send (a Shelly's full status
// is several kilobytes), so it is larger than a channel payload's limit;
// each extracted value is still bounded by Limits.MaxValueLen.
const MaxBindingPayload = 64 << 10

// ErrNoValues is wrapped (Error.Err, code EINVALID) by extraction errors
// for a payload in which none of the bound paths is present.
var ErrNoValues = errors.New("no bound value in the payload")

// paths returns the bound paths by value index (fields, location,
// status) in order; "" is not bound.
func (b *Binding) paths() [NumValues]string {
	var p [NumValues]string
	copy(p[:NumFields], b.Fields[:])
	p[Latitude], p[Longitude], p[Elevation], p[Status] = b.Latitude, b.Longitude, b.Elevation, b.Status
	return p
}

// Validate checks a binding as a user gives it: a channel, a topic filter
// of free topics, at least one field or the status bound, and paths that
// ParsePath accepts. Errors are *Error values with code EINVALID.
func (b *Binding) Validate() error {
	if b.ChannelID == 0 {
		return Errorf(EINVALID, "a binding needs a channel")
	}
	if err := ValidBindingTopic(b.Topic); err != nil {
		return err
	}
	_, err := b.Compile()
	return err
}

// ValidBindingTopic checks the topic filter of a binding: a valid MQTT
// filter (+ and # as whole levels, # last) of at most MaxBindingTopic
// bytes, outside the trees feedmq governs itself (Reserved). A filter
// starting with a wildcard is allowed: bindings see free topics only.
func ValidBindingTopic(t string) error {
	switch {
	case t == "":
		return Errorf(EINVALID, "topic is required, such as zigbee2mqtt/living_room")
	case len(t) > MaxBindingTopic:
		return Errorf(EINVALID, "topic is %d bytes long; the limit is %d", len(t), MaxBindingTopic)
	case !utf8.ValidString(t):
		return Errorf(EINVALID, "topic is not valid UTF-8")
	case strings.IndexByte(t, 0) >= 0:
		return Errorf(EINVALID, "topic contains a NUL character")
	case Reserved(t):
		return Errorf(EINVALID, "topic %s lies in a tree feedmq governs itself (channels/, devices/, $...): bind a free topic such as zigbee2mqtt/living_room", quoteShort(t))
	}
	for rest := t; ; {
		level, more, ok := strings.Cut(rest, "/")
		switch {
		case level != "+" && level != "#" && strings.ContainsAny(level, "+#"):
			return Errorf(EINVALID, "topic %s has a wildcard inside a level: + and # stand for whole levels", quoteShort(t))
		case level == "#" && ok:
			return Errorf(EINVALID, "topic %s has # before its last level", quoteShort(t))
		}
		if !ok {
			return nil
		}
		rest = more
	}
}

// ParseFieldBinding parses "N=PATH" (N from 1 to 8, or fieldN), as the
// CLI's --field takes it, into the field number and the path, which it
// checks with ParsePath.
func ParseFieldBinding(s string) (int, string, error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok {
		return 0, "", Errorf(EINVALID, "field binding %s must look like 1=$.temperature", quoteShort(s))
	}
	name = strings.TrimPrefix(strings.TrimSpace(name), "field")
	n, err := strconv.Atoi(name)
	if err != nil || n < 1 || n > NumFields {
		return 0, "", Errorf(EINVALID, "field binding %s: the field number must be 1 to %d", quoteShort(s), NumFields)
	}
	path = strings.TrimSpace(path)
	if _, err := ParsePath(path); err != nil {
		return 0, "", err
	}
	return n, path, nil
}

// Extractor is a binding with its paths parsed, ready to turn payloads
// into entries. It is safe for concurrent use.
type Extractor struct {
	channelID uint64
	bound     uint16 // value indexes with a path
	paths     [NumValues]Path
	created   Path
	hasTime   bool
}

// Compile checks the binding's paths and returns its Extractor. At least
// one field or the status must be bound.
func (b *Binding) Compile() (*Extractor, error) {
	x := &Extractor{channelID: b.ChannelID}
	for i, s := range b.paths() {
		if s == "" {
			continue
		}
		p, err := ParsePath(s)
		if err != nil {
			return nil, Errorf(EINVALID, "%s: %s", ValueName(i), ErrorMessage(err))
		}
		x.paths[i], x.bound = p, x.bound|1<<i
	}
	if x.bound&(1<<NumFields-1|1<<Status) == 0 {
		return nil, Errorf(EINVALID, "a binding must bind at least one field or the status, such as --field 1='$.temperature'")
	}
	if b.CreatedAt != "" {
		p, err := ParsePath(b.CreatedAt)
		if err != nil {
			return nil, Errorf(EINVALID, "created_at: %s", ErrorMessage(err))
		}
		x.created, x.hasTime = p, true
	}
	return x, nil
}

// Extract builds the entry that payload, published on a bound topic,
// stands for, at now. An error says what could not be extracted; no
// partial entry is ever returned. It applies DefaultLimits and checks no
// channel's fields; see Extractor.Extract.
func (b *Binding) Extract(payload []byte, now time.Time) (*Entry, error) {
	x, err := b.Compile()
	if err != nil {
		return nil, err
	}
	e, _, err := x.Extract(nil, payload, DefaultLimits(), now)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// payloadKind is how a bound payload is read.
type payloadKind uint8

const (
	kindJSON payloadKind = iota // a JSON document: object, array or scalar
	kindForm                    // name=value&...
	kindText                    // anything else: only $ reaches it
)

// allFields stands for a channel when none is given: every field enabled.
var allFields = &Channel{Fields: DefaultFields()}

// Extract turns payload into an entry of channel ch (nil: every field
// counts as enabled), at now. The payload is read as:
//
//   - JSON when it is a valid JSON document; a payload that starts with
//     {, [ or " and is not valid JSON is refused;
//   - form-encoded (temperature=21.5&hum=40, %XX and + decoded, a repeated
//     name overriding earlier ones) when it is not JSON and holds an =;
//     $.name paths reach its values, other paths find nothing;
//   - plain text otherwise: only $ reaches it.
//
// Fields, latitude, longitude and elevation take numbers: a JSON number
// (kept exactly as written, 23.50 stays "23.50"), a string holding one
// (white space trimmed), or a JSON boolean, stored as 1 or 0 so that
// on/off states chart. Any other value at a bound path (text, an object,
// an array) is an error. The status takes a string, number or boolean as
// text. A path that is absent, or whose value is null, leaves its value
// unset: the entry holds what the payload has, as a ThingSpeak write
// that omits a field does. When none of the bound paths is present, the
// error wraps ErrNoValues.
//
// The created_at path, when bound, takes an RFC 3339 date and time (or
// "2006-01-02 15:04:05", no zone meaning UTC) or a number of seconds
// since 1970 (milliseconds when 100000000000 or more), and must lie in
// the years 1970 to 9999; absent or null, the entry gets now, the time
// the publish arrived.
//
// Every value then passes the rules of ParsePayload: valid UTF-8, no
// control characters but tab, CR and LF, at most lim.MaxValueLen
// characters, lat from -90 to 90 and long from -180 to 180. A bound
// field that ch has not enabled is dropped and returned in the FieldSet
// (an entry of dropped fields only is refused). Payloads over
// MaxBindingPayload bytes are refused with ErrTooLarge. Errors are *Error
// values with code EINVALID; they never quote more than a short prefix of
// what the payload holds.
func (x *Extractor) Extract(ch *Channel, payload []byte, lim Limits, now time.Time) (Entry, FieldSet, error) {
	lim = lim.withDefaults()
	if len(payload) > MaxBindingPayload {
		return Entry{}, 0, &Error{Code: EINVALID, Err: ErrTooLarge,
			Message: fmt.Sprintf("payload is %d bytes; bindings read at most %d", len(payload), MaxBindingPayload)}
	}
	if ch == nil {
		ch = allFields
	}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		return Entry{}, 0, payloadError("payload is empty")
	}
	kind := kindJSON
	switch {
	case json.Valid(p):
	case p[0] == '{' || p[0] == '[' || p[0] == '"':
		return Entry{}, 0, payloadError("payload is not valid JSON")
	case bytes.IndexByte(p, '=') >= 0:
		kind = kindForm
		if err := checkForm(p); err != nil {
			return Entry{}, 0, err
		}
	default:
		kind = kindText
	}
	e := Entry{ChannelID: x.channelID}
	if ch != allFields {
		e.ChannelID = ch.ID
	}
	var dropped FieldSet
	present := false
	for i := 0; i < NumValues; i++ {
		if x.bound&(1<<i) == 0 {
			continue
		}
		v, ok, err := x.value(kind, p, x.paths[i], i != Status)
		if err != nil {
			return Entry{}, 0, Errorf(EINVALID, "%s (%s): %s", ValueName(i), quoteShort(x.paths[i].raw), ErrorMessage(err))
		}
		if !ok {
			continue
		}
		present = true
		if i < NumFields && !ch.FieldEnabled(i+1) {
			if err := checkText(ValueName(i), v, lim.MaxValueLen); err != nil {
				return Entry{}, 0, err
			}
			dropped |= 1 << i
			continue
		}
		if err := setValue(&e, ch, i, v, lim); err != nil {
			return Entry{}, 0, err
		}
	}
	if !present {
		return Entry{}, 0, &Error{Code: EINVALID, Err: ErrNoValues,
			Message: "none of the bound paths is present in the payload" + kindHint(kind)}
	}
	if !e.HasValues() {
		return Entry{}, 0, payloadError("payload sets only fields not enabled on channel %d (%s)", ch.ID, dropped.String())
	}
	e.CreatedAt = now.UTC().Truncate(time.Second)
	if x.hasTime {
		t, ok, err := x.timeValue(kind, p)
		if err != nil {
			return Entry{}, 0, Errorf(EINVALID, "created_at (%s): %s", quoteShort(x.created.raw), ErrorMessage(err))
		}
		if ok {
			e.CreatedAt = t
		}
	}
	return e, dropped, nil
}

func kindHint(k payloadKind) string {
	switch k {
	case kindForm:
		return " (it is form-encoded: only $.name paths reach its values)"
	case kindText:
		return " (it is plain text, not JSON: only $ reaches it)"
	}
	return ""
}

// value returns the text at path p of payload p, and whether it is
// present; number asks for a number (or a boolean, as 1 or 0).
func (x *Extractor) value(kind payloadKind, payload []byte, path Path, number bool) (string, bool, error) {
	switch kind {
	case kindText:
		if !path.Root() {
			return "", false, nil
		}
		return scalarText(string(payload), number)
	case kindForm:
		if path.Root() {
			return scalarText(string(payload), number)
		}
		if len(path.steps) != 1 || path.steps[0].index >= 0 {
			return "", false, nil
		}
		v, ok := formValue(payload, path.steps[0].key)
		if !ok || v == "" {
			return "", false, nil
		}
		return scalarText(v, number)
	}
	raw, ok := jsonLookup(payload, path)
	if !ok {
		return "", false, nil
	}
	return jsonText(raw, number)
}

// scalarText checks a text value (plain or form payload, or a JSON
// string's content) for its use.
func scalarText(s string, number bool) (string, bool, error) {
	if !number {
		if s == "" {
			return "", false, nil
		}
		return s, true, nil
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return "", false, nil
	}
	if !isNumber(t) {
		return "", false, Errorf(EINVALID, "%s is not a number", quoteShort(t))
	}
	return t, true, nil
}

// jsonText turns the raw JSON value v into text.
func jsonText(v []byte, number bool) (string, bool, error) {
	switch v[0] {
	case 'n':
		return "", false, nil
	case 't', 'f':
		if !number {
			return string(v), true, nil
		}
		if v[0] == 't' {
			return "1", true, nil
		}
		return "0", true, nil
	case '{':
		return "", false, Errorf(EINVALID, "is an object, not a value: give the path to a key inside it")
	case '[':
		return "", false, Errorf(EINVALID, "is an array, not a value: give the path to an element, such as [0]")
	case '"':
		s, err := jsonString(v)
		if err != nil {
			return "", false, err
		}
		return scalarText(s, number)
	}
	return string(v), true, nil // a number, as json.Valid checked it
}

// jsonString decodes a JSON string literal.
func jsonString(v []byte) (string, error) {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", Errorf(EINVALID, "is not a valid JSON string")
	}
	return s, nil
}

// maxEpochSeconds is the first second of the year 10000.
const maxEpochSeconds = 253402300800

// epochMillis is where a number of seconds since 1970 is read as
// milliseconds instead: 10^11 seconds is the year 5138, 10^11 ms is 1973.
const epochMillis = 100_000_000_000

// timeValue returns the entry time at the created_at path.
func (x *Extractor) timeValue(kind payloadKind, payload []byte) (time.Time, bool, error) {
	var s string
	var isNum bool
	switch kind {
	case kindJSON:
		raw, ok := jsonLookup(payload, x.created)
		if !ok || raw[0] == 'n' {
			return time.Time{}, false, nil
		}
		switch raw[0] {
		case '"':
			v, err := jsonString(raw)
			if err != nil {
				return time.Time{}, false, err
			}
			s = strings.TrimSpace(v)
		case '{', '[', 't', 'f':
			return time.Time{}, false, Errorf(EINVALID, "must be a date and time or a number of seconds since 1970")
		default:
			s, isNum = string(raw), true
		}
	default:
		v, ok, _ := x.value(kind, payload, x.created, false)
		if !ok {
			return time.Time{}, false, nil
		}
		s = strings.TrimSpace(v)
	}
	if s == "" {
		return time.Time{}, false, nil
	}
	if isNum || isNumber(s) {
		t, err := epochTime(s)
		return t, err == nil, err
	}
	t, err := parseCreatedAt(s)
	if err != nil {
		return time.Time{}, false, Errorf(EINVALID, "%s is not a date and time such as 2024-05-01T12:00:00Z, nor a number of seconds since 1970", quoteShort(s))
	}
	return t, true, nil
}

// epochTime reads s, a number, as seconds since 1970, or milliseconds
// from epochMillis on.
func epochTime(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return time.Time{}, Errorf(EINVALID, "%s is not a time since 1970", quoteShort(s))
	}
	if f >= epochMillis {
		f /= 1000
	}
	if f >= maxEpochSeconds {
		return time.Time{}, Errorf(EINVALID, "must lie in the years 1970 to 9999 (UTC)")
	}
	return time.Unix(int64(f), 0).UTC(), nil
}

// isNumber reports whether s is a decimal number with an optional sign,
// fraction and exponent, such as -3, 21.5, .5 or 1.2e3. No hex, NaN or
// infinity.
func isNumber(s string) bool {
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if !IsDecimal(mant) {
		return false
	}
	if !hasExp {
		return true
	}
	if exp != "" && (exp[0] == '+' || exp[0] == '-') {
		exp = exp[1:]
	}
	if exp == "" || len(exp) > 4 {
		return false
	}
	for i := 0; i < len(exp); i++ {
		if !isDigit(exp[i]) {
			return false
		}
	}
	return true
}

// checkForm refuses a form payload whose escapes are malformed.
func checkForm(p []byte) error {
	if err := checkEscapes(p); err != nil {
		return payloadError("payload is form-encoded but has bad percent-encoding: %v", err)
	}
	return nil
}

// formValue returns the decoded value of the last pair named key in a
// form-encoded payload.
func formValue(p []byte, key string) (string, bool) {
	var val []byte
	found := false
	for rest := p; len(rest) > 0; {
		var pair []byte
		pair, rest = cutByte(rest, '&')
		rawKey, rawVal := cutByte(pair, '=')
		if formKeyIs(rawKey, key) {
			val, found = rawVal, true
		}
	}
	if !found {
		return "", false
	}
	b, err := appendUnescape(nil, val)
	if err != nil {
		return "", false // checkForm refused these already
	}
	return string(b), true
}

// formKeyIs reports whether the still escaped raw key decodes to key.
func formKeyIs(raw []byte, key string) bool {
	if indexEscape(raw) < 0 {
		return string(raw) == key
	}
	b, err := appendUnescape(nil, raw)
	return err == nil && string(b) == key
}

// jsonLookup returns the raw JSON value at path in doc, which must be
// valid JSON, and whether it is there. A repeated object key takes its
// last value, as encoding/json does.
func jsonLookup(doc []byte, path Path) ([]byte, bool) {
	v := doc
	for _, st := range path.steps {
		var ok bool
		switch {
		case v[0] == '{' && st.index < 0:
			v, ok = objectMember(v, st.key)
		case v[0] == '[' && st.index >= 0:
			v, ok = arrayElement(v, st.index)
		}
		if !ok {
			return nil, false
		}
	}
	return v, true
}

// objectMember returns the value of key in the object obj.
func objectMember(obj []byte, key string) ([]byte, bool) {
	var found []byte
	i := skipSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		kEnd := skipString(obj, i)
		rawKey := obj[i:kEnd]
		i = skipSpace(obj, kEnd)
		i = skipSpace(obj, i+1) // the colon
		vEnd := skipValue(obj, i)
		if keyEquals(rawKey, key) {
			found = obj[i:vEnd]
		}
		i = skipSpace(obj, vEnd)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return found, found != nil
}

// keyEquals compares a raw JSON string literal with key.
func keyEquals(raw []byte, key string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1:len(raw)-1]) == key
	}
	s, err := jsonString(raw)
	return err == nil && s == key
}

// arrayElement returns element n of the array arr.
func arrayElement(arr []byte, n int) ([]byte, bool) {
	i := skipSpace(arr, 1)
	for k := 0; i < len(arr) && arr[i] != ']'; k++ {
		end := skipValue(arr, i)
		if k == n {
			return arr[i:end], true
		}
		i = skipSpace(arr, end)
		if i < len(arr) && arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
	return nil, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string literal at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the JSON value at b[i]. Nesting is
// counted, not recursed into, so depth costs no stack.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}
