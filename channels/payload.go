package channels

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Default limits of a publish payload (DESIGN §5).
const (
	DefaultMaxPayload  = 3000 // bytes per payload
	DefaultMaxValueLen = 255  // characters per value
)

// Limits bounds what a payload may carry. A zero or negative field takes
// its default, so the zero Limits is DefaultLimits.
type Limits struct {
	MaxPayload  int // bytes, default 3000
	MaxValueLen int // characters (runes) per value, default 255
}

// DefaultLimits returns the limits of DESIGN §5: 3000-byte payloads and
// values of up to 255 characters.
func DefaultLimits() Limits {
	return Limits{MaxPayload: DefaultMaxPayload, MaxValueLen: DefaultMaxValueLen}
}

func (l Limits) withDefaults() Limits {
	if l.MaxPayload <= 0 {
		l.MaxPayload = DefaultMaxPayload
	}
	if l.MaxValueLen <= 0 {
		l.MaxValueLen = DefaultMaxValueLen
	}
	return l
}

// keyCreatedAt is the pseudo value index of the created_at payload key.
const keyCreatedAt = NumValues

// ParsePayload turns a publish payload into an entry for channel ch, which
// must not be nil. The entry's ChannelID is ch.ID; ID is left 0 for the
// store to assign, and CreatedAt is left zero unless the payload sets
// created_at (the store fills in server time).
//
// Field 0 means a channel-feed payload, form-encoded as in
// application/x-www-form-urlencoded: name=value pairs joined by &, with
// %XX escapes and + for a space. The names are field1..field8 (or 1..8),
// lat or latitude, long or longitude, elevation, status and created_at;
// other names, such as api_key or timezone, are ignored. An empty value
// leaves its value unset and a repeated name overrides earlier ones.
// Trailing CR and LF bytes of the payload are ignored.
//
// Field 1..8 means the payload is the bare value of that field, taken
// verbatim except for surrounding white space.
//
// Every value must be valid UTF-8 without control characters other than
// tab, CR and LF, and at most lim.MaxValueLen characters long; a written
// field that is not enabled on the channel is dropped, as ThingSpeak
// drops it (a sketch that always sends field1..field8 keeps the readings
// of the enabled ones; ParsePayloadDropped says which were dropped); lat,
// long and elevation must be decimal numbers (lat from -90 to 90, long
// from -180 to 180). An entry must set at least one value: a payload that
// sets only disabled fields is refused. Errors are *Error values with code EINVALID
// that wrap ErrTooLarge for a payload over lim.MaxPayload bytes and
// ErrPayload otherwise; their messages are meant for the device owner.
func ParsePayload(ch *Channel, field int, payload []byte, lim Limits) (Entry, error) {
	e, _, err := ParsePayloadDropped(ch, field, payload, lim)
	return e, err
}

// FieldSet is a set of fields: bit n-1 stands for field n.
type FieldSet uint8

// Has reports whether field n (1..8) is in the set.
func (s FieldSet) Has(n int) bool { return n >= 1 && n <= NumFields && s&(1<<(n-1)) != 0 }

// Len returns the number of fields in the set.
func (s FieldSet) Len() int {
	n := 0
	for ; s != 0; s &= s - 1 {
		n++
	}
	return n
}

// String lists the fields, such as "field3, field5".
func (s FieldSet) String() string {
	var b strings.Builder
	for n := 1; n <= NumFields; n++ {
		if s.Has(n) {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(ValueName(n - 1))
		}
	}
	return b.String()
}

// ParsePayloadDropped is ParsePayload that also returns the fields it
// dropped because the channel has not enabled them, for the caller to log
// and count.
func ParsePayloadDropped(ch *Channel, field int, payload []byte, lim Limits) (Entry, FieldSet, error) {
	return ParsePayloadIn(ch, field, payload, lim, nil)
}

// ParsePayloadIn is ParsePayloadDropped that keeps the entry's values in
// c's chunks (see Chunks) rather than in an allocation of their own; c
// nil allocates.
func ParsePayloadIn(ch *Channel, field int, payload []byte, lim Limits, c *Chunks) (Entry, FieldSet, error) {
	lim = lim.withDefaults()
	if err := lim.checkSize(payload); err != nil {
		return Entry{}, 0, err
	}
	e := Entry{ChannelID: ch.ID}
	var dropped FieldSet
	var err error
	if field == 0 {
		err = parseForm(&e, &dropped, ch, payload, lim, c)
	} else {
		err = parseFieldValue(&e, ch, field, payload, lim, c)
	}
	if err != nil {
		return Entry{}, 0, err
	}
	return e, dropped, nil
}

// parseFieldValue fills e from the bare-value payload of field n.
func parseFieldValue(e *Entry, ch *Channel, n int, payload []byte, lim Limits, c *Chunks) error {
	if n < 1 || n > NumFields {
		return payloadError("field%d does not exist: fields are numbered 1 to %d", n, NumFields)
	}
	if !ch.FieldEnabled(n) {
		return notEnabled(ch, n)
	}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		return payloadError("payload is empty: field%d needs a value", n)
	}
	b := append(c.take(len(p)), p...)
	c.keep(len(b))
	v := text(b, 0)
	if err := checkText(ValueName(n-1), v, lim.MaxValueLen); err != nil {
		return err
	}
	e.SetValue(n-1, v)
	return nil
}

// parseForm fills e from a form-encoded channel-feed payload. It decodes
// every value it keeps into one buffer (from c), so that the entry's
// strings cost one allocation at most. Values are only ever appended to
// the buffer, never changed, since earlier ones back e's strings.
func parseForm(e *Entry, dropped *FieldSet, ch *Channel, payload []byte, lim Limits, c *Chunks) error {
	p := bytes.TrimRight(payload, "\r\n")
	if len(p) == 0 {
		return payloadError("payload is empty: send field1=VALUE&field2=VALUE...")
	}
	var buf []byte
	defer func() { c.keep(len(buf)) }() // error or not: e may point into it
	for rest := p; len(rest) > 0; {
		var pair []byte
		pair, rest = cutByte(rest, '&')
		if len(pair) == 0 {
			continue
		}
		rawKey, rawVal := cutByte(pair, '=')
		idx, err := lookupKey(rawKey)
		if err != nil {
			return err
		}
		if idx < 0 {
			if err := checkEscapes(rawVal); err != nil {
				return payloadError("bad percent-encoding in the value of %s: %v", quoteShort(string(rawKey)), err)
			}
			continue
		}
		if buf == nil && len(rawVal) > 0 {
			// Decoded values are never longer than the payload: this
			// is the one buffer.
			buf = c.take(len(p))
		}
		start := len(buf)
		if buf, err = appendUnescape(buf, rawVal); err != nil {
			return payloadError("bad percent-encoding in %s: %v", keyName(idx), err)
		}
		v := text(buf, start)
		if idx < NumFields && !ch.FieldEnabled(idx+1) {
			// Checked like any value, so that a bad one is still
			// refused, then left out of the entry.
			if err := checkText(ValueName(idx), v, lim.MaxValueLen); err != nil {
				return err
			}
			if v != "" {
				*dropped |= 1 << idx
			} else {
				*dropped &^= 1 << idx
			}
			continue
		}
		if err := setValue(e, ch, idx, v, lim); err != nil {
			return err
		}
	}
	if !e.HasValues() {
		if *dropped != 0 {
			return payloadError("payload sets only fields not enabled on channel %d (%s): enable them or write to an enabled field", ch.ID, dropped.String())
		}
		if bytes.IndexByte(p, '=') < 0 {
			return payloadError("payload sets no field: send field1=VALUE&..., or publish a bare value to channels/%d/publish/fields/field<N>", ch.ID)
		}
		return payloadError("payload sets no field: send at least one of field1..field8, lat, long, elevation or status")
	}
	return nil
}

// maxKeyLen is the length of the longest payload key we know.
const maxKeyLen = len("created_at")

// lookupKey returns the value index a raw (still escaped) payload key names,
// keyCreatedAt, or -1 for a key to ignore.
func lookupKey(raw []byte) (int, error) {
	if indexEscape(raw) < 0 {
		if len(raw) > maxKeyLen {
			return -1, nil
		}
		return keyIndex(raw), nil
	}
	var kb [32]byte
	k, err := appendUnescape(kb[:0], raw)
	if err != nil {
		return -1, payloadError("bad percent-encoding in the key %s: %v", quoteShort(string(raw)), err)
	}
	return keyIndex(k), nil
}

// keyIndex returns the value index payload key k names, keyCreatedAt, or -1.
func keyIndex[K string | []byte](k K) int {
	switch string(k) {
	case "field1", "1":
		return 0
	case "field2", "2":
		return 1
	case "field3", "3":
		return 2
	case "field4", "4":
		return 3
	case "field5", "5":
		return 4
	case "field6", "6":
		return 5
	case "field7", "7":
		return 6
	case "field8", "8":
		return 7
	case "lat", "latitude":
		return Latitude
	case "long", "longitude":
		return Longitude
	case "elevation":
		return Elevation
	case "status":
		return Status
	case "created_at":
		return keyCreatedAt
	}
	return -1
}

// keyName names value index idx (or keyCreatedAt) in messages.
func keyName(idx int) string {
	if idx == keyCreatedAt {
		return "created_at"
	}
	return ValueName(idx)
}

// setValue validates the decoded value v of index idx and stores it in e.
func setValue(e *Entry, ch *Channel, idx int, v string, lim Limits) error {
	switch idx {
	case Latitude, Longitude, Elevation:
		v = strings.TrimSpace(v)
	case keyCreatedAt:
		return setCreatedAt(e, strings.TrimSpace(v))
	}
	if v == "" {
		e.Values[idx] = ""
		e.Set &^= 1 << idx
		return nil
	}
	// Payloads drop disabled fields before they get here (parseForm);
	// an imported file's column for one is refused.
	if idx < NumFields && !ch.FieldEnabled(idx+1) {
		return notEnabled(ch, idx+1)
	}
	if err := checkText(ValueName(idx), v, lim.MaxValueLen); err != nil {
		return err
	}
	switch idx {
	case Latitude:
		if !inRange(v, 90) {
			return payloadError("lat must be a decimal number from -90 to 90, such as 52.5163")
		}
	case Longitude:
		if !inRange(v, 180) {
			return payloadError("long must be a decimal number from -180 to 180, such as 13.3777")
		}
	case Elevation:
		if !IsDecimal(v) {
			return payloadError("elevation must be a decimal number of metres, such as 34 or -2.5")
		}
	}
	e.SetValue(idx, v)
	return nil
}

// setCreatedAt parses created_at into e.CreatedAt; "" clears it.
func setCreatedAt(e *Entry, v string) error {
	if v == "" {
		e.CreatedAt = time.Time{}
		return nil
	}
	t, err := parseCreatedAt(v)
	if err != nil {
		return err
	}
	e.CreatedAt = t
	return nil
}

// checkText checks that v is valid UTF-8 of at most limit characters with no
// control characters but tab, CR and LF.
func checkText(name, v string, limit int) error {
	n := 0
	for i := 0; i < len(v); n++ {
		c := v[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f {
				return payloadError("%s contains the control character %#02x", name, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			return payloadError("%s is not valid UTF-8 text", name)
		}
		i += size
	}
	if n > limit {
		return payloadError("%s is %d characters long; the limit is %d", name, n, limit)
	}
	return nil
}

// IsDecimal reports whether s is a decimal number: an optional sign, then
// digits with an optional decimal point. No exponent, no hex, no NaN.
func IsDecimal(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

// inRange reports whether s is a decimal number from -limit to limit. It
// compares the digits, so 90.0000000000000001 is out of range for 90.
func inRange(s string, limit int) bool {
	if !IsDecimal(s) {
		return false
	}
	if s[0] == '+' || s[0] == '-' {
		s = s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	whole = strings.TrimLeft(whole, "0")
	if len(whole) > 3 {
		return false
	}
	n, _ := atoi(whole)
	return n < limit || n == limit && strings.TrimRight(frac, "0") == ""
}

func notEnabled(ch *Channel, n int) error {
	return payloadError("field%d is not enabled on channel %d", n, ch.ID)
}

func payloadError(format string, args ...any) error {
	return &Error{Code: EINVALID, Message: fmt.Sprintf(format, args...), Err: ErrPayload}
}

// checkSize refuses a payload over MaxPayload bytes with ErrTooLarge.
func (lim Limits) checkSize(payload []byte) error {
	if len(payload) > lim.MaxPayload {
		return &Error{
			Code:    EINVALID,
			Message: fmt.Sprintf("payload is %d bytes; the limit is %d", len(payload), lim.MaxPayload),
			Err:     ErrTooLarge,
		}
	}
	return nil
}
