package channels

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Indexes into Entry.Values. Fields 1..8 are at 0..7.
const (
	Latitude  = NumFields + iota // "latitude" (payload key "lat")
	Longitude                    // "longitude" (payload key "long")
	Elevation                    // "elevation"
	Status                       // "status"
	NumValues                    // number of values an entry can carry
)

// valueNames are the JSON keys of Values, in output order.
var valueNames = [NumValues]string{
	"field1", "field2", "field3", "field4", "field5", "field6", "field7", "field8",
	"latitude", "longitude", "elevation", "status",
}

// ValueName returns the JSON key of value index i.
func ValueName(i int) string { return valueNames[i] }

// Entry is one accepted write to a channel.
type Entry struct {
	ChannelID uint64
	ID        uint64    // entry_id: 1 for the first entry, then +1
	CreatedAt time.Time // UTC, second precision
	// Values holds field1..8, latitude, longitude, elevation and status as
	// written. Only indexes whose bit is set in Set are present; an unset
	// value is null in JSON, unlike a value set to "".
	Values [NumValues]string
	Set    uint16
}

// Value returns value i and whether it was set.
func (e *Entry) Value(i int) (string, bool) {
	return e.Values[i], e.Set&(1<<i) != 0
}

// SetValue sets value i.
func (e *Entry) SetValue(i int, v string) {
	e.Values[i] = v
	e.Set |= 1 << i
}

// Field returns field n (1..8) and whether it was set.
func (e *Entry) Field(n int) (string, bool) { return e.Value(n - 1) }

// HasValues reports whether the entry sets any of field1..8, location or
// status; an entry that sets nothing is not worth storing.
func (e *Entry) HasValues() bool { return e.Set != 0 }

// TimeFormat is the layout of created_at in JSON: UTC, second precision.
const TimeFormat = "2006-01-02T15:04:05Z"

// AppendTime appends t in UTC as TimeFormat lays it out, as
// t.UTC().AppendFormat(b, TimeFormat) does, without parsing the layout
// each time: every entry written as JSON (fan-out, feed reads) carries
// one.
func AppendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, TimeFormat)
	}
	h, mi, s := t.Clock()
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = append2(b, int(mo))
	b = append2(append(b, '-'), d)
	b = append2(append(b, 'T'), h)
	b = append2(append(b, ':'), mi)
	b = append2(append(b, ':'), s)
	return append(b, 'Z')
}

// append2 appends n (0-99) as two digits.
func append2(b []byte, n int) []byte {
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

// AppendJSON appends the channel-feed JSON of the entry to b: compact,
// keys in ThingSpeak's order, values as strings or null.
func (e *Entry) AppendJSON(b []byte) []byte {
	b = append(b, `{"channel_id":`...)
	b = strconv.AppendUint(b, e.ChannelID, 10)
	b = append(b, `,"created_at":"`...)
	b = AppendTime(b, e.CreatedAt)
	b = append(b, `","entry_id":`...)
	b = strconv.AppendUint(b, e.ID, 10)
	for i := 0; i < NumValues; i++ {
		b = append(b, ',', '"')
		b = append(b, valueNames[i]...)
		b = append(b, '"', ':')
		if v, ok := e.Value(i); ok {
			b = AppendJSONString(b, v)
		} else {
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler with AppendJSON.
func (e Entry) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 256)), nil
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Invalid UTF-8 cannot occur in
// stored values (the parser refuses it), but is escaped as U+FFFD anyway so
// that the output is always valid JSON.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x80 {
			i++
			continue
		}
		if c < 0x80 {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0xFFFD && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 break JavaScript string literals.
		if r == 0x2028 || r == 0x2029 {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
