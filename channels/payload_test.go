package channels_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// testChannel is channel 7 with every field enabled but field3.
func testChannel() *channels.Channel {
	ch := &channels.Channel{ID: 7, Name: "weather", Fields: channels.DefaultFields()}
	ch.Fields[2] = ""
	return ch
}

// vals maps value names (field1, latitude, ...) to the values an entry
// sets; created_at is in TimeFormat.
type vals map[string]string

var validPayloads = []struct {
	desc  string
	field int
	in    string
	want  vals
}{
	// Every key and alias.
	{"field1", 0, "field1=23.5", vals{"field1": "23.5"}},
	{"field2", 0, "field2=45", vals{"field2": "45"}},
	{"field4", 0, "field4=a", vals{"field4": "a"}},
	{"field5", 0, "field5=b", vals{"field5": "b"}},
	{"field6", 0, "field6=c", vals{"field6": "c"}},
	{"field7", 0, "field7=d", vals{"field7": "d"}},
	{"field8", 0, "field8=e", vals{"field8": "e"}},
	{"bare digit aliases", 0, "1=a&2=b&4=d&5=e&6=f&7=g&8=h",
		vals{"field1": "a", "field2": "b", "field4": "d", "field5": "e", "field6": "f", "field7": "g", "field8": "h"}},
	{"docs example", 0, "field1=100&field2=50&lat=30.61&long=40.35",
		vals{"field1": "100", "field2": "50", "latitude": "30.61", "longitude": "40.35"}},
	{"latitude longitude", 0, "latitude=-33.8688&longitude=151.2093",
		vals{"latitude": "-33.8688", "longitude": "151.2093"}},
	{"elevation", 0, "elevation=34", vals{"elevation": "34"}},
	{"negative decimal elevation", 0, "elevation=-2.5", vals{"elevation": "-2.5"}},
	{"status", 0, "status=all+good", vals{"status": "all good"}},
	{"status with newline and tab", 0, "status=line1%0Aline2%09x%0D", vals{"status": "line1\nline2\tx\r"}},
	{"everything", 0, "field1=1&field2=2&field4=4&field5=5&field6=6&field7=7&field8=8&lat=1&long=2&elevation=3&status=s&created_at=2014-12-31+23:59:59",
		vals{"field1": "1", "field2": "2", "field4": "4", "field5": "5", "field6": "6", "field7": "7", "field8": "8",
			"latitude": "1", "longitude": "2", "elevation": "3", "status": "s", "created_at": "2014-12-31T23:59:59Z"}},

	// Form decoding.
	{"escaped ampersand and equals", 0, "status=a%26b%3Dc&field1=1", vals{"status": "a&b=c", "field1": "1"}},
	{"plus is space", 0, "field1=hello+world", vals{"field1": "hello world"}},
	{"escaped plus", 0, "field1=1%2B1", vals{"field1": "1+1"}},
	{"escaped percent", 0, "field1=100%25", vals{"field1": "100%"}},
	{"lowercase hex", 0, "field1=%c3%a9", vals{"field1": "é"}},
	{"utf-8 escapes", 0, "status=%E2%9C%93+%F0%9F%98%80", vals{"status": "✓ 😀"}},
	{"raw utf-8", 0, "status=größe", vals{"status": "größe"}},
	{"unescaped equals in value", 0, "status=a=b", vals{"status": "a=b"}},
	{"escaped key", 0, "field%31=9&%6Cat=1", vals{"field1": "9", "latitude": "1"}},
	{"semicolon is data", 0, "field1=1;field2=2", vals{"field1": "1;field2=2"}},

	// Empty, repeated and unknown.
	{"empty value is unset", 0, "field1=&field2=5", vals{"field2": "5"}},
	{"key without equals is unset", 0, "field1&field2=5", vals{"field2": "5"}},
	{"empty value of disabled field", 0, "field3=&field1=1", vals{"field1": "1"}},
	{"last wins", 0, "field1=1&field1=2", vals{"field1": "2"}},
	{"alias then name", 0, "1=a&field1=b", vals{"field1": "b"}},
	{"empty clears", 0, "field1=1&field1=&field2=2", vals{"field2": "2"}},
	{"empty lat clears", 0, "lat=1&lat=&field1=1", vals{"field1": "1"}},
	{"empty pairs", 0, "&&field1=1&&", vals{"field1": "1"}},
	{"trailing newline", 0, "field1=1\r\n", vals{"field1": "1"}},
	{"ignored keys", 0, "api_key=XYZ&timezone=Europe%2FBerlin&twitter=me&tweet=hi&headers=false&field1=1",
		vals{"field1": "1"}},
	{"unknown field names", 0, "field0=1&field9=2&Field1=3&lon=4&field2=5", vals{"field2": "5"}},
	{"long unknown key", 0, strings.Repeat("k", 100) + "=1&field1=1", vals{"field1": "1"}},
	{"long escaped unknown key", 0, strings.Repeat("%41", 40) + "=1&field1=1", vals{"field1": "1"}},

	// lat, long, elevation.
	{"lat bounds", 0, "lat=90&long=-180", vals{"latitude": "90", "longitude": "-180"}},
	{"lat lower bound", 0, "lat=-90.000&long=180.0", vals{"latitude": "-90.000", "longitude": "180.0"}},
	{"lat trimmed", 0, "lat=+52.5+&long=%2013.4%20", vals{"latitude": "52.5", "longitude": "13.4"}},
	{"lat leading zeros", 0, "lat=-0089.99999999999999999&long=180.000", vals{"latitude": "-0089.99999999999999999", "longitude": "180.000"}},
	{"signed lat", 0, "lat=%2B1.5&long=.5", vals{"latitude": "+1.5", "longitude": ".5"}},
	{"trailing dot", 0, "elevation=12.", vals{"elevation": "12."}},

	// created_at.
	{"created_at space", 0, "field1=1&created_at=2014-12-31%2023:59:59",
		vals{"field1": "1", "created_at": "2014-12-31T23:59:59Z"}},
	{"created_at T", 0, "field1=1&created_at=2014-12-31T23:59:59",
		vals{"field1": "1", "created_at": "2014-12-31T23:59:59Z"}},
	{"created_at Z", 0, "field1=1&created_at=2014-12-31T23:59:59Z",
		vals{"field1": "1", "created_at": "2014-12-31T23:59:59Z"}},
	{"created_at fraction", 0, "field1=1&created_at=2014-12-31T23:59:59.987654321Z",
		vals{"field1": "1", "created_at": "2014-12-31T23:59:59Z"}},
	{"created_at offset", 0, "field1=1&created_at=2014-12-31T23:59:59%2B01:00",
		vals{"field1": "1", "created_at": "2014-12-31T22:59:59Z"}},
	{"created_at negative offset", 0, "field1=1&created_at=2014-12-31T23:59:59-05:30",
		vals{"field1": "1", "created_at": "2015-01-01T05:29:59Z"}},
	{"created_at offset without colon", 0, "field1=1&created_at=2014-12-31+23:59:59.5%2B0100",
		vals{"field1": "1", "created_at": "2014-12-31T22:59:59Z"}},
	{"created_at epoch", 0, "field1=1&created_at=1970-01-01T00:00:00Z",
		vals{"field1": "1", "created_at": "1970-01-01T00:00:00Z"}},
	{"created_at last second", 0, "field1=1&created_at=9999-12-31T23:59:59Z",
		vals{"field1": "1", "created_at": "9999-12-31T23:59:59Z"}},
	{"created_at leap day", 0, "field1=1&created_at=2024-02-29T12:00:00",
		vals{"field1": "1", "created_at": "2024-02-29T12:00:00Z"}},
	{"created_at trimmed", 0, "field1=1&created_at=+2014-12-31T23:59:59Z+",
		vals{"field1": "1", "created_at": "2014-12-31T23:59:59Z"}},
	{"created_at empty", 0, "field1=1&created_at=", vals{"field1": "1"}},

	// Single-field payloads.
	{"single field", 1, "23.5", vals{"field1": "23.5"}},
	{"single field8", 8, "x", vals{"field8": "x"}},
	{"single field trimmed", 2, "  45 \r\n", vals{"field2": "45"}},
	{"single field verbatim", 4, "a=b&c=%41+", vals{"field4": "a=b&c=%41+"}},
	{"single field inner newline", 4, "a\nb\n", vals{"field4": "a\nb"}},
	{"single field unicode", 5, "21,5 °C", vals{"field5": "21,5 °C"}},
}

var invalidPayloads = []struct {
	desc  string
	field int
	in    string
	err   error  // ErrPayload or ErrTooLarge
	msg   string // part of the message
}{
	{"empty", 0, "", channels.ErrPayload, "payload is empty"},
	{"only newline", 0, "\r\n", channels.ErrPayload, "payload is empty"},
	{"only ampersands", 0, "&&&", channels.ErrPayload, "payload sets no field"},
	{"only empty values", 0, "field1=&status=", channels.ErrPayload, "payload sets no field"},
	{"only unknown keys", 0, "api_key=XYZ&foo=bar", channels.ErrPayload, "payload sets no field"},
	{"only created_at", 0, "created_at=2014-12-31T23:59:59Z", channels.ErrPayload, "payload sets no field"},
	{"bare value on feed topic", 0, "23.5", channels.ErrPayload, "channels/7/publish/fields/field<N>"},
	{"only a disabled field", 0, "field3=5", channels.ErrPayload, "payload sets only fields not enabled on channel 7 (field3)"},
	{"only a disabled field alias", 0, "3=5", channels.ErrPayload, "payload sets only fields not enabled on channel 7 (field3)"},
	{"disabled field and empty values", 0, "field1=&field3=5&status=", channels.ErrPayload, "not enabled on channel 7 (field3)"},
	{"disabled field bad UTF-8", 0, "field1=1&field3=%ff", channels.ErrPayload, "field3 is not valid UTF-8"},
	{"disabled field bad escape", 0, "field1=1&field3=%zz", channels.ErrPayload, "bad percent-encoding in field3"},
	{"disabled single field", 3, "5", channels.ErrPayload, "field3 is not enabled on channel 7"},
	{"single field 0 is feed", 0, "5", channels.ErrPayload, "payload sets no field"},
	{"single field 9", 9, "5", channels.ErrPayload, "field9 does not exist"},
	{"single field negative", -1, "5", channels.ErrPayload, "does not exist"},
	{"single field empty", 1, "", channels.ErrPayload, "field1 needs a value"},
	{"single field blank", 1, " \r\n", channels.ErrPayload, "field1 needs a value"},
	{"single field NUL", 1, "1\x002", channels.ErrPayload, "control character 0x00"},
	{"single field invalid UTF-8", 1, "\xff", channels.ErrPayload, "field1 is not valid UTF-8"},
	{"single field too long", 1, strings.Repeat("x", 256), channels.ErrPayload, "field1 is 256 characters long; the limit is 255"},

	{"too large", 0, "field1=" + strings.Repeat("1", 2994), channels.ErrTooLarge, "payload is 3001 bytes; the limit is 3000"},
	{"too large single field", 1, strings.Repeat("1", 3001), channels.ErrTooLarge, "the limit is 3000"},
	{"value too long", 0, "field1=" + strings.Repeat("x", 256), channels.ErrPayload, "field1 is 256 characters long"},
	{"runes too long", 0, "status=" + strings.Repeat("é", 256), channels.ErrPayload, "status is 256 characters long"},
	{"escaped value too long", 0, "field2=" + strings.Repeat("%41", 256), channels.ErrPayload, "field2 is 256 characters long"},

	{"bare percent", 0, "field1=100%", channels.ErrPayload, "bad percent-encoding in field1"},
	{"short escape", 0, "field1=%4", channels.ErrPayload, "two hex digits"},
	{"non-hex escape", 0, "field1=%G1", channels.ErrPayload, "bad percent-encoding in field1"},
	{"bad escape in key", 0, "field%=1", channels.ErrPayload, "bad percent-encoding in the key"},
	{"bad escape in ignored value", 0, "field1=1&api_key=%zz", channels.ErrPayload, `value of "api_key"`},
	{"bad escape in long key", 0, strings.Repeat("%41", 40) + "%=1", channels.ErrPayload, "bad percent-encoding in the key"},
	{"escaped NUL", 0, "field1=%00", channels.ErrPayload, "field1 contains the control character 0x00"},
	{"raw control", 0, "status=a\x01b", channels.ErrPayload, "control character 0x01"},
	{"escaped DEL", 0, "status=%7F", channels.ErrPayload, "control character 0x7f"},
	{"escaped invalid UTF-8", 0, "field1=%FF", channels.ErrPayload, "field1 is not valid UTF-8"},
	{"truncated UTF-8", 0, "field1=%C3", channels.ErrPayload, "not valid UTF-8"},
	{"raw invalid UTF-8", 0, "status=\xc3\x28", channels.ErrPayload, "not valid UTF-8"},

	{"lat over", 0, "lat=90.0001", channels.ErrPayload, "lat must be a decimal number from -90 to 90"},
	{"lat just over", 0, "lat=90.0000000000000001", channels.ErrPayload, "from -90 to 90"},
	{"lat leading zeros over", 0, "lat=00091", channels.ErrPayload, "from -90 to 90"},
	{"lat long digits", 0, "lat=1000", channels.ErrPayload, "from -90 to 90"},
	{"lat under", 0, "lat=-91", channels.ErrPayload, "from -90 to 90"},
	{"lat text", 0, "lat=north", channels.ErrPayload, "from -90 to 90"},
	{"lat exponent", 0, "lat=1e1", channels.ErrPayload, "from -90 to 90"},
	{"lat NaN", 0, "lat=NaN", channels.ErrPayload, "from -90 to 90"},
	{"lat hex", 0, "latitude=0x10", channels.ErrPayload, "from -90 to 90"},
	{"lat two dots", 0, "lat=1.2.3", channels.ErrPayload, "from -90 to 90"},
	{"lat sign only", 0, "lat=-", channels.ErrPayload, "from -90 to 90"},
	{"lat dot only", 0, "lat=.", channels.ErrPayload, "from -90 to 90"},
	{"lat comma", 0, "lat=52,5", channels.ErrPayload, "from -90 to 90"},
	{"long over", 0, "long=180.5", channels.ErrPayload, "long must be a decimal number from -180 to 180"},
	{"longitude under", 0, "longitude=-181", channels.ErrPayload, "from -180 to 180"},
	{"long Inf", 0, "long=Inf", channels.ErrPayload, "from -180 to 180"},
	{"elevation text", 0, "elevation=high", channels.ErrPayload, "elevation must be a decimal number"},
	{"elevation exponent", 0, "elevation=1e3", channels.ErrPayload, "elevation must be a decimal number"},
	{"elevation too long", 0, "elevation=" + strings.Repeat("1", 256), channels.ErrPayload, "elevation is 256 characters long"},

	{"created_at date only", 0, "field1=1&created_at=2014-12-31", channels.ErrPayload, "created_at must look like"},
	{"created_at no seconds", 0, "field1=1&created_at=2014-12-31+23:59", channels.ErrPayload, "created_at must look like"},
	{"created_at slashes", 0, "field1=1&created_at=2014/12/31+23:59:59", channels.ErrPayload, "created_at must look like"},
	{"created_at unix", 0, "field1=1&created_at=1419980400", channels.ErrPayload, "created_at must look like"},
	{"created_at before 1970", 0, "field1=1&created_at=1969-12-31T23:59:59Z", channels.ErrPayload, "1970 to 9999"},
	{"created_at 1970 minus offset", 0, "field1=1&created_at=1970-01-01T00:30:00%2B01:00", channels.ErrPayload, "1970 to 9999"},
	{"created_at after 9999", 0, "field1=1&created_at=9999-12-31T23:59:59-00:01", channels.ErrPayload, "1970 to 9999"},
	{"created_at 5-digit year", 0, "field1=1&created_at=10000-01-01T00:00:00Z", channels.ErrPayload, "created_at must look like"},
	{"created_at Feb 30", 0, "field1=1&created_at=2014-02-30T00:00:00Z", channels.ErrPayload, "February has no day 30"},
	{"created_at Feb 29 non-leap", 0, "field1=1&created_at=2023-02-29T00:00:00Z", channels.ErrPayload, "no day 29"},
	{"created_at month 13", 0, "field1=1&created_at=2014-13-01T00:00:00Z", channels.ErrPayload, "not a valid date"},
	{"created_at day 0", 0, "field1=1&created_at=2014-12-00T00:00:00Z", channels.ErrPayload, "not a valid date"},
	{"created_at hour 24", 0, "field1=1&created_at=2014-12-31T24:00:00Z", channels.ErrPayload, "not a valid date"},
	{"created_at second 60", 0, "field1=1&created_at=2014-12-31T23:59:60Z", channels.ErrPayload, "not a valid date"},
	{"created_at lowercase t", 0, "field1=1&created_at=2014-12-31t23:59:59", channels.ErrPayload, "must look like"},
	{"created_at empty fraction", 0, "field1=1&created_at=2014-12-31T23:59:59.Z", channels.ErrPayload, "must look like"},
	{"created_at hour offset", 0, "field1=1&created_at=2014-12-31T23:59:59%2B01", channels.ErrPayload, "must look like"},
	{"created_at offset 24h", 0, "field1=1&created_at=2014-12-31T23:59:59%2B24:00", channels.ErrPayload, "invalid zone offset"},
	{"created_at zone name", 0, "field1=1&created_at=2014-12-31T23:59:59+CET", channels.ErrPayload, "must look like"},
	{"created_at unescaped plus", 0, "field1=1&created_at=2014-12-31T23:59:59+01:00", channels.ErrPayload, "write + as %2B"},
	{"created_at trailing junk", 0, "field1=1&created_at=2014-12-31T23:59:59Zjunk", channels.ErrPayload, "must look like"},
	{"created_at signed year", 0, "field1=1&created_at=%2B014-12-31T23:59:59Z", channels.ErrPayload, "must look like"},
}

func TestParsePayload(t *testing.T) {
	for _, tt := range validPayloads {
		t.Run(tt.desc, func(t *testing.T) {
			e, err := channels.ParsePayload(testChannel(), tt.field, []byte(tt.in), channels.DefaultLimits())
			if err != nil {
				t.Fatalf("ParsePayload(%d, %q): %v", tt.field, tt.in, err)
			}
			if e.ChannelID != 7 || e.ID != 0 {
				t.Errorf("ChannelID, ID = %d, %d; want 7, 0", e.ChannelID, e.ID)
			}
			if got := entryVals(&e); !equalVals(got, tt.want) {
				t.Errorf("ParsePayload(%d, %q) = %v, want %v", tt.field, tt.in, got, tt.want)
			}
		})
	}
}

// TestParsePayloadDropped checks that fields the channel has not enabled
// are left out and reported, and the rest of the entry is kept.
func TestParsePayloadDropped(t *testing.T) {
	ch := &channels.Channel{ID: 9, Name: "two", Fields: [channels.NumFields]string{"Temp", "Hum"}}
	tests := []struct {
		desc    string
		in      string
		want    map[int]string // value index -> value
		dropped channels.FieldSet
		names   string
	}{
		{"sketch sends all eight", "field1=1&field2=2&field3=3&field4=4&field5=5&field6=6&field7=7&field8=8",
			map[int]string{0: "1", 1: "2"}, 0b11111100, "field3, field4, field5, field6, field7, field8"},
		{"one disabled", "field1=20.5&field5=x", map[int]string{0: "20.5"}, 0b10000, "field5"},
		{"alias", "2=40&7=1", map[int]string{1: "40"}, 0b1000000, "field7"},
		{"disabled field emptied again", "field1=1&field3=5&field3=", map[int]string{0: "1"}, 0, ""},
		{"status beside a disabled field", "status=on&field8=9", map[int]string{channels.Status: "on"}, 0b10000000, "field8"},
		{"nothing dropped", "field1=1&field2=2", map[int]string{0: "1", 1: "2"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			e, dropped, err := channels.ParsePayloadDropped(ch, 0, []byte(tt.in), channels.DefaultLimits())
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if dropped != tt.dropped {
				t.Errorf("dropped = %08b, want %08b", dropped, tt.dropped)
			}
			if dropped.String() != tt.names {
				t.Errorf("dropped.String() = %q, want %q", dropped.String(), tt.names)
			}
			for i := 0; i < channels.NumValues; i++ {
				v, ok := e.Value(i)
				want, wantOK := tt.want[i]
				if ok != wantOK || v != want {
					t.Errorf("%s = %q (set %v), want %q (set %v)", channels.ValueName(i), v, ok, want, wantOK)
				}
			}
		})
	}
	if got := channels.FieldSet(0b10100001).Len(); got != 3 {
		t.Errorf("Len = %d, want 3", got)
	}
}

func TestParsePayloadInvalid(t *testing.T) {
	for _, tt := range invalidPayloads {
		t.Run(tt.desc, func(t *testing.T) {
			e, err := channels.ParsePayload(testChannel(), tt.field, []byte(tt.in), channels.DefaultLimits())
			if err == nil {
				t.Fatalf("ParsePayload(%d, %q) = %v, want an error", tt.field, tt.in, entryVals(&e))
			}
			if e != (channels.Entry{}) {
				t.Errorf("ParsePayload returned %v with its error", entryVals(&e))
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error %v does not wrap %v", err, tt.err)
			}
			if code := channels.ErrorCode(err); code != channels.EINVALID {
				t.Errorf("ErrorCode = %q, want %q", code, channels.EINVALID)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error message is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestParsePayloadLimits(t *testing.T) {
	ch := testChannel()
	def := channels.DefaultLimits()
	if def.MaxPayload != 3000 || def.MaxValueLen != 255 {
		t.Fatalf("DefaultLimits() = %+v", def)
	}
	atLimit := "status=" + strings.Repeat("é", 255) // 255 runes, 510 bytes
	if _, err := channels.ParsePayload(ch, 0, []byte(atLimit), def); err != nil {
		t.Errorf("255 runes: %v", err)
	}
	// Exactly 3000 bytes, with values within limits.
	full := "field1=" + strings.Repeat("1", 255) + "&api_key=" + strings.Repeat("x", 3000-7-255-9)
	if len(full) != 3000 {
		t.Fatalf("test payload is %d bytes", len(full))
	}
	if _, err := channels.ParsePayload(ch, 0, []byte(full), def); err != nil {
		t.Errorf("3000 bytes: %v", err)
	}
	if _, err := channels.ParsePayload(ch, 0, []byte(full+"x"), def); !errors.Is(err, channels.ErrTooLarge) {
		t.Errorf("3001 bytes: %v, want ErrTooLarge", err)
	}
	// The zero Limits means the defaults.
	if _, err := channels.ParsePayload(ch, 0, []byte(full), channels.Limits{}); err != nil {
		t.Errorf("zero Limits, 3000 bytes: %v", err)
	}
	if _, err := channels.ParsePayload(ch, 0, []byte(full+"x"), channels.Limits{}); !errors.Is(err, channels.ErrTooLarge) {
		t.Errorf("zero Limits, 3001 bytes: %v, want ErrTooLarge", err)
	}
	small := channels.Limits{MaxPayload: 12, MaxValueLen: 3}
	for _, tc := range []struct {
		in  string
		err error
	}{
		{"field1=abc", nil},
		{"field1=abcd", channels.ErrPayload},
		{"field1=%C3%A9%C3%A9%C3%A9", channels.ErrTooLarge},
		{"1=ééé", nil}, // 8 bytes, 3 runes
		{"1=éééé", channels.ErrPayload},
		{"field1=abc&x", nil}, // 12 bytes
		{"field1=abc&xy", channels.ErrTooLarge},
	} {
		_, err := channels.ParsePayload(ch, 0, []byte(tc.in), small)
		if (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("ParsePayload(%q, %+v): %v, want %v", tc.in, small, err, tc.err)
		}
	}
}

// TestParsePayloadCopies checks that values do not alias the payload,
// which the broker may reuse.
func TestParsePayloadCopies(t *testing.T) {
	for _, field := range []int{0, 1} {
		p := []byte("field1=abc")
		if field == 1 {
			p = []byte("abc")
		}
		e, err := channels.ParsePayload(testChannel(), field, p, channels.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range p {
			p[i] = 'Z'
		}
		if v, _ := e.Field(1); v != "abc" {
			t.Errorf("field %d: value changed to %q with the payload", field, v)
		}
	}
}

func TestParsePayloadAllocs(t *testing.T) {
	ch := testChannel()
	for _, tc := range []struct {
		field int
		in    string
	}{
		{0, "field1=23.5&field2=45&lat=52.5163&long=13.3777&status=all+good&api_key=XYZ"},
		{1, "23.5"},
	} {
		p := []byte(tc.in)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := channels.ParsePayload(ch, tc.field, p, channels.Limits{}); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 {
			t.Errorf("ParsePayload(%q) allocates %v times, want at most 1", tc.in, allocs)
		}
	}
}

// entryVals returns the values e sets, with created_at if not zero.
func entryVals(e *channels.Entry) vals {
	m := vals{}
	for i := 0; i < channels.NumValues; i++ {
		if v, ok := e.Value(i); ok {
			m[channels.ValueName(i)] = v
		}
	}
	if !e.CreatedAt.IsZero() {
		m["created_at"] = e.CreatedAt.Format(channels.TimeFormat)
	}
	return m
}

func equalVals(a, b vals) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func FuzzParsePayload(f *testing.F) {
	for _, tt := range validPayloads {
		f.Add(int8(tt.field), []byte(tt.in))
	}
	for _, tt := range invalidPayloads {
		f.Add(int8(tt.field), []byte(tt.in))
	}
	ch := testChannel()
	// Entries parsed into shared chunks, with what each must still hold
	// while later parses write to the same chunks.
	var chunks channels.Chunks
	type kept struct{ e, want channels.Entry }
	var earlier []kept
	f.Fuzz(func(t *testing.T, field int8, payload []byte) {
		for _, lim := range []channels.Limits{{}, {MaxPayload: 64, MaxValueLen: 4}} {
			e, dropped, err := channels.ParsePayloadDropped(ch, int(field), payload, lim)
			if e2, err2 := channels.ParsePayload(ch, int(field), payload, lim); e2 != e || (err2 == nil) != (err == nil) {
				t.Fatalf("ParsePayload(%d, %q) = %+v, %v; ParsePayloadDropped gave %+v, %v", field, payload, e2, err2, e, err)
			}
			e3, dropped3, err3 := channels.ParsePayloadIn(ch, int(field), payload, lim, &chunks)
			if e3 != e || dropped3 != dropped || (err3 == nil) != (err == nil) {
				t.Fatalf("ParsePayloadIn(%d, %q) = %+v, %v, %v; ParsePayloadDropped gave %+v, %v, %v", field, payload, e3, dropped3, err3, e, dropped, err)
			}
			if earlier = append(earlier, kept{e3, e}); len(earlier) > 64 {
				earlier = earlier[1:]
			}
			for _, k := range earlier {
				if k.e != k.want {
					t.Fatalf("an entry parsed into chunks changed: %+v, was %+v", k.e, k.want)
				}
			}
			for n := 1; n <= channels.NumFields; n++ {
				if dropped.Has(n) && (ch.FieldEnabled(n) || err != nil) {
					t.Fatalf("ParsePayloadDropped(%d, %q): dropped %s (error %v)", field, payload, dropped, err)
				}
			}
			if err != nil {
				if !errors.Is(err, channels.ErrPayload) && !errors.Is(err, channels.ErrTooLarge) ||
					channels.ErrorCode(err) != channels.EINVALID {
					t.Fatalf("ParsePayload(%d, %q): error %v is not an EINVALID ErrPayload", field, payload, err)
				}
				if e != (channels.Entry{}) {
					t.Fatalf("ParsePayload(%d, %q) returned an entry with its error", field, payload)
				}
				continue
			}
			checkEntry(t, ch, &e, lim)
			if field == 0 {
				checkDecoding(t, &e, payload)
			}
		}
	})
}

// refIndex maps the payload keys to value indexes, for checkDecoding.
var refIndex = map[string]int{
	"lat": channels.Latitude, "latitude": channels.Latitude,
	"long": channels.Longitude, "longitude": channels.Longitude,
	"elevation": channels.Elevation, "status": channels.Status,
}

func init() {
	for i := 0; i < channels.NumFields; i++ {
		refIndex[channels.FieldName(i+1)] = i
		refIndex[strconv.Itoa(i+1)] = i
	}
}

// checkDecoding compares the values of an accepted form payload with those
// that net/url's decoder yields: the last non-empty value of each key wins.
func checkDecoding(t *testing.T, e *channels.Entry, payload []byte) {
	t.Helper()
	var want [channels.NumValues]string
	for pair := range strings.SplitSeq(strings.TrimRight(string(payload), "\r\n"), "&") {
		k, v, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			t.Fatalf("ParsePayload accepted %q, but net/url cannot decode %q", payload, pair)
		}
		if i, ok := refIndex[k]; ok {
			if i < channels.NumFields && !testChannel().FieldEnabled(i+1) {
				continue // dropped, as ThingSpeak drops disabled fields
			}
			want[i] = v
			if i >= channels.Latitude && i <= channels.Elevation {
				want[i] = strings.TrimSpace(v)
			}
		}
	}
	for i, w := range want {
		if got, _ := e.Value(i); got != w {
			t.Fatalf("ParsePayload(%q): %s = %q, net/url decodes %q", payload, channels.ValueName(i), got, w)
		}
	}
}

// checkEntry checks the invariants of an entry ParsePayload accepted.
func checkEntry(t *testing.T, ch *channels.Channel, e *channels.Entry, lim channels.Limits) {
	t.Helper()
	if lim == (channels.Limits{}) {
		lim = channels.DefaultLimits()
	}
	if e.ChannelID != ch.ID || e.ID != 0 || !e.HasValues() {
		t.Fatalf("entry %+v: bad IDs or no values", e)
	}
	if e.Set>>channels.NumValues != 0 {
		t.Fatalf("entry sets unknown bits %#x", e.Set)
	}
	for i := 0; i < channels.NumValues; i++ {
		v, ok := e.Value(i)
		if !ok {
			if v != "" {
				t.Fatalf("unset value %s is %q", channels.ValueName(i), v)
			}
			continue
		}
		if v == "" || !utf8.ValidString(v) || utf8.RuneCountInString(v) > lim.MaxValueLen || strings.ContainsRune(v, 0) {
			t.Fatalf("value %s = %q breaks the limits", channels.ValueName(i), v)
		}
		if i < channels.NumFields && !ch.FieldEnabled(i+1) {
			t.Fatalf("disabled %s is set", channels.ValueName(i))
		}
	}
	if !e.CreatedAt.IsZero() {
		c := e.CreatedAt
		if c.Location() != time.UTC || c.Nanosecond() != 0 || c.Year() < 1970 || c.Year() > 9999 {
			t.Fatalf("created_at %v is not UTC seconds in 1970..9999", c)
		}
	}
	b := e.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("AppendJSON = %s: not valid JSON", b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("AppendJSON = %s: %v", b, err)
	}
	for i := 0; i < channels.NumValues; i++ {
		v, ok := e.Value(i)
		got, present := m[channels.ValueName(i)]
		if !present || (ok && got != v) || (!ok && got != nil) {
			t.Fatalf("JSON %s = %#v, want %q (set %v)", channels.ValueName(i), got, v, ok)
		}
	}
}

var benchPayloads = []struct {
	desc  string
	field int
	in    string
}{
	{"form", 0, "field1=23.5&field2=45&lat=52.5163&long=13.3777&status=ok"},
	{"form_escaped", 0, "field1=23.5&status=door+open+%E2%9C%93&created_at=2014-12-31%2023:59:59%2B01:00"},
	{"single_field", 1, "23.5\r\n"},
}

func BenchmarkParsePayload(b *testing.B) {
	ch := testChannel()
	for _, bb := range benchPayloads {
		p := []byte(bb.in)
		b.Run(bb.desc, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := channels.ParsePayload(ch, bb.field, p, channels.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParsePayloadIn: values parsed into shared chunks equal those of an
// allocating parse, and stay so while many later parses (refused ones,
// escaped values, payloads too large for a chunk, chunks filled and
// replaced) write to the same chunks.
func TestParsePayloadIn(t *testing.T) {
	ch := testChannel()
	var c channels.Chunks
	type kept struct{ e, want channels.Entry }
	var all []kept
	big := "field1=" + strings.Repeat("x", 200) + "&field2=" + strings.Repeat("%41", 300) + "&status=" + strings.Repeat("y", 250)
	for round := range 200 {
		type payloadCase struct {
			field int
			in    string
		}
		var cases []payloadCase
		for _, tt := range validPayloads {
			cases = append(cases, payloadCase{tt.field, tt.in})
		}
		for _, tt := range invalidPayloads {
			cases = append(cases, payloadCase{tt.field, tt.in})
		}
		cases = append(cases, payloadCase{0, big}, payloadCase{0, fmt.Sprintf("field1=%d&field2=%%2B+r%d", round, round)},
			payloadCase{3, fmt.Sprintf(" bare %d ", round)})
		for _, tt := range cases {
			want, wantDropped, wantErr := channels.ParsePayloadDropped(ch, tt.field, []byte(tt.in), channels.Limits{})
			got, dropped, err := channels.ParsePayloadIn(ch, tt.field, []byte(tt.in), channels.Limits{}, &c)
			if got != want || dropped != wantDropped || (err == nil) != (wantErr == nil) {
				t.Fatalf("ParsePayloadIn(%d, %q) = %+v, %v, %v; want %+v, %v, %v", tt.field, tt.in, got, dropped, err, want, wantDropped, wantErr)
			}
			all = append(all, kept{got, want})
		}
	}
	for i, k := range all {
		if k.e != k.want {
			t.Fatalf("entry %d changed after later parses: %+v, was %+v", i, k.e, k.want)
		}
	}
	// A payload in the chunk's range costs no allocation of its own.
	payload := []byte("field1=23.5&field2=%2012&status=ok")
	if n := testing.AllocsPerRun(1000, func() {
		if _, _, err := channels.ParsePayloadIn(ch, 0, payload, channels.Limits{}, &c); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParsePayloadIn: %v allocations per parse", n)
	}
}
