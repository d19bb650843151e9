package channels_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

var validSensorTopics = []struct {
	desc string
	in   string
	want channels.SensorTopic
}{
	{"id and field", "devices/7/sensors/field1/value", channels.SensorTopic{Channel: "7", ChannelID: 7, Sensor: "field1"}},
	{"largest id", "devices/18446744073709551615/sensors/x/value", channels.SensorTopic{Channel: "18446744073709551615", ChannelID: 1<<64 - 1, Sensor: "x"}},
	{"digits in a name", "devices/7a/sensors/field9/value", channels.SensorTopic{Channel: "7a", Sensor: "field9"}},
	{"name and label", "devices/weather/sensors/temperature/value", channels.SensorTopic{Channel: "weather", Sensor: "temperature"}},
	{"unicode labels", "devices/Wetter Zürich/sensors/Température °C/value", channels.SensorTopic{Channel: "Wetter Zürich", Sensor: "Température °C"}},
	{"emoji", "devices/🌦/sensors/💧/value", channels.SensorTopic{Channel: "🌦", Sensor: "💧"}},
	{"literal-looking levels", "devices/devices/sensors/value/value", channels.SensorTopic{Channel: "devices", Sensor: "value"}},
	{"spaces and dollar", "devices/ a /sensors/$x/value", channels.SensorTopic{Channel: " a ", Sensor: "$x"}},
	{"255-byte levels", "devices/" + strings.Repeat("c", 255) + "/sensors/" + strings.Repeat("é", 127) + "s/value",
		channels.SensorTopic{Channel: strings.Repeat("c", 255), Sensor: strings.Repeat("é", 127) + "s"}},
}

var invalidSensorTopics = []struct {
	desc string
	in   string
	msg  string
}{
	{"empty", "", "empty level"},
	// A level that looks like an ID is one, in its one spelling, and
	// never a name.
	{"leading zero", "devices/01/sensors/field1/value", "without leading zeros"},
	{"leading zeros", "devices/007/sensors/field9/value", "without leading zeros"},
	{"zero", "devices/0/sensors/field1/value", "without leading zeros"},
	{"overflow", "devices/18446744073709551616/sensors/field1/value", "too large"},
	{"long number", "devices/" + strings.Repeat("9", 255) + "/sensors/field1/value", "too large"},
	{"channel topic", "channels/7/publish", "must start with devices/"},
	{"wrong first literal", "device/7/sensors/field1/value", "must start with devices/"},
	{"upper case literal", "Devices/7/sensors/field1/value", "must start with devices/"},
	{"one level", "devices", "must start with devices/"},
	{"two levels", "devices/7", "too short"},
	{"three levels", "devices/7/sensors", "too short"},
	{"four levels", "devices/7/sensors/field1", "must end with /value"},
	{"six levels", "devices/7/sensors/field1/value/x", "goes on"},
	{"many levels", "devices/7/sensors/field1/value" + strings.Repeat("/a", 10000), "goes on"},
	{"sensor singular", "devices/7/sensor/field1/value", `must be sensors, not "sensor"`},
	{"actuators", "devices/7/actuators/led/value", "actuator topics are not supported"},
	{"values plural", "devices/7/sensors/field1/values", `must be value, not "values"`},
	{"value upper case", "devices/7/sensors/field1/Value", `must be value, not "Value"`},
	{"leading slash", "/devices/7/sensors/field1/value", "empty level"},
	{"trailing slash", "devices/7/sensors/field1/value/", "empty level"},
	{"empty channel", "devices//sensors/field1/value", "empty level"},
	{"empty sensor", "devices/7/sensors//value", "empty level"},
	{"plus channel", "devices/+/sensors/field1/value", "wildcards"},
	{"plus sensor", "devices/7/sensors/+/value", "wildcards"},
	{"all sensors", "devices/+/sensors/+/value", "wildcards"},
	{"hash", "devices/7/#", "wildcards"},
	{"hash only", "#", "wildcards"},
	{"plus inside a level", "devices/a+b/sensors/field1/value", "wildcards"},
	{"hash inside a level", "devices/7/sensors/C#/value", "wildcards"},
	{"NUL in channel", "devices/7\x00/sensors/field1/value", "channel level contains a NUL"},
	{"NUL in sensor", "devices/7/sensors/\x00/value", "sensor level contains a NUL"},
	{"invalid UTF-8 channel", "devices/\xff/sensors/field1/value", "channel level is not valid UTF-8"},
	{"invalid UTF-8 sensor", "devices/7/sensors/a\xc3/value", "sensor level is not valid UTF-8"},
	{"long channel", "devices/" + strings.Repeat("c", 256) + "/sensors/field1/value", "channel level is 256 bytes long"},
	{"long sensor", "devices/7/sensors/" + strings.Repeat("é", 128) + "/value", "sensor level is 256 bytes long"},
}

func TestParseSensorTopic(t *testing.T) {
	for _, tt := range validSensorTopics {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := channels.ParseSensorTopic(tt.in)
			if err != nil {
				t.Fatalf("ParseSensorTopic(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseSensorTopic(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := channels.SensorTopicFor(got.Channel, got.Sensor); s != tt.in {
				t.Errorf("SensorTopicFor(%q, %q) = %q, want %q", got.Channel, got.Sensor, s, tt.in)
			}
		})
	}
}

func TestParseSensorTopicInvalid(t *testing.T) {
	for _, tt := range invalidSensorTopics {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := channels.ParseSensorTopic(tt.in)
			if err == nil {
				t.Fatalf("ParseSensorTopic(%q) = %+v, want an error", tt.in, got)
			}
			if got != (channels.SensorTopic{}) {
				t.Errorf("ParseSensorTopic(%q) returned %+v with its error", tt.in, got)
			}
			if !errors.Is(err, channels.ErrTopic) || channels.ErrorCode(err) != channels.EINVALID {
				t.Errorf("error %v: want an EINVALID ErrTopic, code %q", err, channels.ErrorCode(err))
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

func TestParseSensorTopicAllocs(t *testing.T) {
	in := "devices/weather/sensors/temperature/value"
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := channels.ParseSensorTopic(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseSensorTopic allocates %v times, want 0", allocs)
	}
}

var sensorTopicLevels = []struct {
	in   string
	want bool
}{
	{"a", true},
	{"7", true},
	{"Field 1", true},
	{"Température °C", true},
	{"$SYS", true},
	{" ", true},
	{"tab\there", true},
	{strings.Repeat("x", 255), true},
	{strings.Repeat("é", 127) + "x", true},
	{"", false},
	{strings.Repeat("x", 256), false},
	{strings.Repeat("é", 128), false},
	{"a/b", false},
	{"/", false},
	{"+", false},
	{"a+", false},
	{"#", false},
	{"C#", false},
	{"\x00", false},
	{"a\x00b", false},
	{"\xff", false},
	{"\xed\xa0\x80", false}, // a UTF-16 surrogate
}

func TestValidTopicLevel(t *testing.T) {
	for _, tt := range sensorTopicLevels {
		if got := channels.ValidTopicLevel(tt.in); got != tt.want {
			t.Errorf("ValidTopicLevel(%q) = %v, want %v", tt.in, got, tt.want)
		}
		// A valid level is exactly what ParseSensorTopic accepts as a level.
		_, err1 := channels.ParseSensorTopic(channels.SensorTopicFor(tt.in, "s"))
		_, err2 := channels.ParseSensorTopic(channels.SensorTopicFor("c", tt.in))
		if (err1 == nil) != tt.want || (err2 == nil) != tt.want {
			t.Errorf("level %q: ParseSensorTopic errors %v, %v; ValidTopicLevel %v", tt.in, err1, err2, tt.want)
		}
	}
}

// sensorFields is a channel layout with labels that test name resolution.
var sensorFields = [channels.NumFields]string{
	"temperature", // field1
	"humidity",    // field2
	"",            // field3: disabled
	"field9",      // field4: looks like a field name that does not exist
	"Température", // field5
	"field3",      // field6: spells the disabled field3
	"dup",         // field7
	"dup",         // field8
}

var resolveTests = []struct {
	desc   string
	fields [channels.NumFields]string
	sensor string
	want   int
	code   string // error code, "" for success
	msg    string
}{
	{"field1", sensorFields, "field1", 1, "", ""},
	{"field8", sensorFields, "field8", 8, "", ""},
	{"label", sensorFields, "temperature", 1, "", ""},
	{"unicode label", sensorFields, "Température", 5, "", ""},
	{"label looking like field9", sensorFields, "field9", 4, "", ""},
	{"label spelling a disabled field", sensorFields, "field3", 6, "", ""},
	{"disabled field", [channels.NumFields]string{"a"}, "field3", 0, channels.ENOTFOUND, "field3 is not enabled on channel 7"},
	{"label is case-sensitive", sensorFields, "Temperature", 0, channels.ENOTFOUND, `channel 7 has no enabled field labelled "Temperature"`},
	{"no trimming", sensorFields, " humidity", 0, channels.ENOTFOUND, "channel 7"},
	{"unknown", sensorFields, "pressure", 0, channels.ENOTFOUND, `labelled "pressure"`},
	{"empty never matches a disabled field", sensorFields, "", 0, channels.ENOTFOUND, "channel 7"},
	{"field0", sensorFields, "field0", 0, channels.ENOTFOUND, "channel 7"},
	{"field10", sensorFields, "field10", 0, channels.ENOTFOUND, "channel 7"},
	{"Field1 is not field1", channels.DefaultFields(), "Field1", 0, channels.ENOTFOUND, "channel 7"},
	{"default label", channels.DefaultFields(), "Field 2", 2, "", ""},
	{"shared label", sensorFields, "dup", 0, channels.ECONFLICT, "field7 and field8 share"},
	{"field name wins over a label", [8]string{"a", "field1"}, "field1", 1, "", ""},
	{"long unknown label is shortened", sensorFields, strings.Repeat("x", 1000), 0, channels.ENOTFOUND, "..."},
}

func TestResolveSensor(t *testing.T) {
	for _, tt := range resolveTests {
		t.Run(tt.desc, func(t *testing.T) {
			ch := &channels.Channel{ID: 7, Name: "weather", Fields: tt.fields}
			got, err := channels.ResolveSensor(ch, tt.sensor)
			if tt.code == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ResolveSensor(%q) = %d, %v; want %d", tt.sensor, got, err, tt.want)
				}
				return
			}
			if err == nil || got != 0 {
				t.Fatalf("ResolveSensor(%q) = %d, %v; want 0 and an error", tt.sensor, got, err)
			}
			if channels.ErrorCode(err) != tt.code || !errors.Is(err, channels.ErrTopic) {
				t.Errorf("error %v: code %q, want %q wrapping ErrTopic", err, channels.ErrorCode(err), tt.code)
			}
			if !strings.Contains(err.Error(), tt.msg) || len(err.Error()) > 200 {
				t.Errorf("error %q does not mention %q or is too long", err, tt.msg)
			}
		})
	}
}

func TestSensorLabel(t *testing.T) {
	ch := &channels.Channel{ID: 7, Fields: sensorFields}
	ch.Fields[1] = "a/b" // field2 cannot be addressed by its label
	want := map[int]string{1: "temperature", 4: "field9", 5: "Température", 6: "field3"}
	for n := 0; n <= channels.NumFields+1; n++ {
		label, ok := channels.SensorLabel(ch, n)
		if w, wok := want[n]; label != w || ok != wok {
			t.Errorf("SensorLabel(%d) = %q, %v; want %q, %v", n, label, ok, w, wok)
		}
	}
	// A label that repeats the field's own name adds no topic; one that
	// names another enabled field would steal its topic.
	ch = &channels.Channel{ID: 7, Fields: [8]string{"field1", "field1", "x"}}
	for n := 1; n <= 3; n++ {
		if label, ok := channels.SensorLabel(ch, n); ok != (n == 3) {
			t.Errorf("SensorLabel(%d) = %q, %v", n, label, ok)
		}
	}
}

// waziupTime is 2016-06-08T18:20:27Z, the timestamp of Waziup's example.
const waziupTime = "2016-06-08T18:20:27Z"

var validSensorPayloads = []struct {
	desc  string
	field int
	in    string
	want  vals
}{
	{"waziup example", 1, `{"value":"55.6","timestamp":"2016-06-08T18:20:27Z"}`, vals{"field1": "55.6", "created_at": waziupTime}},
	{"string without timestamp", 2, `{"value":"55.6"}`, vals{"field2": "55.6"}},
	{"number text preserved", 1, `{"value":23.50}`, vals{"field1": "23.50"}},
	{"integer", 1, `{"value":0}`, vals{"field1": "0"}},
	{"negative zero", 1, `{"value":-0}`, vals{"field1": "-0"}},
	{"exponent", 1, `{"value":-1.5E+03}`, vals{"field1": "-1.5E+03"}},
	{"beyond float64", 1, `{"value":123456789012345678901234567890.000000000000000000001}`,
		vals{"field1": "123456789012345678901234567890.000000000000000000001"}},
	{"huge exponent", 1, `{"value":1e999}`, vals{"field1": "1e999"}},
	{"true", 1, `{"value":true}`, vals{"field1": "true"}},
	{"false", 1, `{"value":false}`, vals{"field1": "false"}},
	{"string true stays a string", 1, `{"value":"true"}`, vals{"field1": "true"}},
	{"white space around", 1, " \r\n{ \"value\" :\t23.50 , \"timestamp\" : \"2016-06-08T18:20:27Z\" }\r\n",
		vals{"field1": "23.50", "created_at": waziupTime}},
	{"date_received ignored", 1, `{"value":"1","timestamp":"2016-06-08T18:20:27Z","date_received":"2016-06-08T18:20:28Z"}`,
		vals{"field1": "1", "created_at": waziupTime}},
	{"nested unknown keys ignored", 1, `{"meta":{"a":[1,2,{"b":null}]},"value":1,"id":"TC1"}`, vals{"field1": "1"}},
	{"last value wins", 1, `{"value":"a","value":"b"}`, vals{"field1": "b"}},
	{"null then value", 1, `{"value":null,"value":2}`, vals{"field1": "2"}},
	{"keys are case-sensitive", 1, `{"Value":"x","VALUE":null,"value":"y","Timestamp":"bad"}`, vals{"field1": "y"}},
	{"escapes decoded", 1, `{"value":"line1\nline2\t\u00e9 \"q\" \\ \/"}`, vals{"field1": "line1\nline2\té \"q\" \\ /"}},
	{"surrogate pair", 1, `{"value":"\ud83d\ude00"}`, vals{"field1": "😀"}},
	{"raw unicode", 1, `{"value":"größe ✓"}`, vals{"field1": "größe ✓"}},
	{"white space value kept", 1, `{"value":" 5 "}`, vals{"field1": " 5 "}},
	{"timestamp fraction", 1, `{"value":1,"timestamp":"2016-06-08T18:20:27.987654Z"}`, vals{"field1": "1", "created_at": waziupTime}},
	{"timestamp offset", 1, `{"value":1,"timestamp":"2016-06-08T20:20:27+02:00"}`, vals{"field1": "1", "created_at": waziupTime}},
	{"timestamp offset without colon", 1, `{"value":1,"timestamp":"2016-06-08T13:20:27-0500"}`, vals{"field1": "1", "created_at": waziupTime}},
	{"timestamp fraction and offset", 1, `{"value":1,"timestamp":"2016-06-08T19:20:27.5+01:00"}`, vals{"field1": "1", "created_at": waziupTime}},
	{"timestamp with space", 1, `{"value":1,"timestamp":"2016-06-08 18:20:27"}`, vals{"field1": "1", "created_at": waziupTime}},
	{"timestamp without zone is UTC", 1, `{"value":1,"timestamp":"2016-06-08T18:20:27"}`, vals{"field1": "1", "created_at": waziupTime}},
	{"timestamp null", 1, `{"value":1,"timestamp":null}`, vals{"field1": "1"}},
	{"timestamp empty", 1, `{"value":1,"timestamp":""}`, vals{"field1": "1"}},
	{"field8", 8, `{"value":"x"}`, vals{"field8": "x"}},
}

var invalidSensorPayloads = []struct {
	desc  string
	field int
	in    string
	err   error
	msg   string
}{
	{"null", 1, `{"value":null}`, channels.ErrPayload, "value is null"},
	{"object", 1, `{"value":{"v":1}}`, channels.ErrPayload, "not an object or array"},
	{"array", 1, `{"value":[1]}`, channels.ErrPayload, "not an object or array"},
	{"empty string", 1, `{"value":""}`, channels.ErrPayload, "value is empty"},
	{"missing value", 1, `{"timestamp":"2016-06-08T18:20:27Z"}`, channels.ErrPayload, `no "value"`},
	{"empty object", 1, `{}`, channels.ErrPayload, `no "value"`},
	{"empty payload", 1, ``, channels.ErrPayload, "payload is empty"},
	{"white space payload", 1, " \r\n", channels.ErrPayload, "payload is empty"},
	{"bare string", 1, `"55.6"`, channels.ErrPayload, "must be a JSON object"},
	{"bare number", 1, `55.6`, channels.ErrPayload, "must be a JSON object"},
	{"bare null", 1, `null`, channels.ErrPayload, "must be a JSON object"},
	{"top-level array", 1, `[{"value":1}]`, channels.ErrPayload, "must be a JSON object"},
	{"form payload", 1, `field1=23.5`, channels.ErrPayload, "must be a JSON object"},
	{"byte order mark", 1, "\ufeff{\"value\":1}", channels.ErrPayload, "must be a JSON object"},
	{"trailing garbage", 1, `{"value":1} x`, channels.ErrPayload, "after top-level value"},
	{"two objects", 1, `{"value":1}{"value":2}`, channels.ErrPayload, "after top-level value"},
	{"truncated", 1, `{"value":1`, channels.ErrPayload, "not valid JSON"},
	{"single quotes", 1, `{'value':1}`, channels.ErrPayload, "not valid JSON"},
	{"trailing comma", 1, `{"value":1,}`, channels.ErrPayload, "not valid JSON"},
	{"NaN", 1, `{"value":NaN}`, channels.ErrPayload, "not valid JSON"},
	{"plus sign", 1, `{"value":+1}`, channels.ErrPayload, "not valid JSON"},
	{"leading zero", 1, `{"value":01}`, channels.ErrPayload, "not valid JSON"},
	{"hex", 1, `{"value":0x10}`, channels.ErrPayload, "not valid JSON"},
	{"raw newline in string", 1, "{\"value\":\"a\nb\"}", channels.ErrPayload, "not valid JSON"},
	{"bad escape", 1, `{"value":"\x41"}`, channels.ErrPayload, "not valid JSON"},
	{"unterminated nesting", 1, `{"x":` + strings.Repeat("[", 2900), channels.ErrPayload, "not valid JSON"},
	{"invalid UTF-8 value", 1, "{\"value\":\"\xff\"}", channels.ErrPayload, "not valid UTF-8"},
	{"invalid UTF-8 ignored key", 1, "{\"\xc3\":1,\"value\":1}", channels.ErrPayload, "not valid UTF-8"},
	{"NUL escape", 1, `{"value":"a\u0000b"}`, channels.ErrPayload, "control character 0x00"},
	{"bell escape", 1, `{"value":"\u0007"}`, channels.ErrPayload, "control character 0x07"},
	{"DEL", 1, "{\"value\":\"\x7f\"}", channels.ErrPayload, "control character 0x7f"},
	{"long value", 1, `{"value":"` + strings.Repeat("é", 256) + `"}`, channels.ErrPayload, "256 characters long; the limit is 255"},
	{"long number", 1, `{"value":` + strings.Repeat("1", 256) + `}`, channels.ErrPayload, "256 characters long"},
	{"too large", 1, `{"value":"` + strings.Repeat("a", 3000) + `"}`, channels.ErrTooLarge, "the limit is 3000"},
	{"disabled field", 3, `{"value":1}`, channels.ErrPayload, "field3 is not enabled on channel 7"},
	{"field 0", 0, `{"value":1}`, channels.ErrPayload, "field0 does not exist"},
	{"field 9", 9, `{"value":1}`, channels.ErrPayload, "field9 does not exist"},
	{"timestamp number", 1, `{"value":1,"timestamp":1465410027}`, channels.ErrPayload, "timestamp must be a string"},
	{"timestamp object", 1, `{"value":1,"timestamp":{}}`, channels.ErrPayload, "timestamp must be a string"},
	{"timestamp garbage", 1, `{"value":1,"timestamp":"yesterday"}`, channels.ErrPayload, "timestamp must look like"},
	{"timestamp date only", 1, `{"value":1,"timestamp":"2016-06-08"}`, channels.ErrPayload, "timestamp must look like"},
	{"timestamp month 13", 1, `{"value":1,"timestamp":"2016-13-08T18:20:27Z"}`, channels.ErrPayload, "timestamp \"2016-13-08T18:20:27Z\" is not a valid date"},
	{"timestamp February 30", 1, `{"value":1,"timestamp":"2016-02-30T18:20:27Z"}`, channels.ErrPayload, "February has no day 30"},
	{"timestamp before 1970", 1, `{"value":1,"timestamp":"1969-12-31T23:59:59Z"}`, channels.ErrPayload, "timestamp must lie in the years 1970 to 9999"},
	{"timestamp zone name", 1, `{"value":1,"timestamp":"2016-06-08T18:20:27 CET"}`, channels.ErrPayload, "timestamp must look like"},
	{"timestamp space for plus", 1, `{"value":1,"timestamp":"2016-06-08T18:20:27 01:00"}`, channels.ErrPayload, "timestamp has a space where the zone offset's sign should be"},
	{"timestamp bad offset", 1, `{"value":1,"timestamp":"2016-06-08T18:20:27+25:00"}`, channels.ErrPayload, "timestamp has an invalid zone offset"},
	{"timestamp trailing junk", 1, `{"value":1,"timestamp":"2016-06-08T18:20:27Zjunk"}`, channels.ErrPayload, "timestamp must look like"},
}

func TestParseSensorPayload(t *testing.T) {
	for _, tt := range validSensorPayloads {
		t.Run(tt.desc, func(t *testing.T) {
			e, err := channels.ParseSensorPayload(testChannel(), tt.field, []byte(tt.in), channels.DefaultLimits())
			if err != nil {
				t.Fatalf("ParseSensorPayload(%d, %q): %v", tt.field, tt.in, err)
			}
			if e.ChannelID != 7 || e.ID != 0 {
				t.Errorf("ChannelID, ID = %d, %d; want 7, 0", e.ChannelID, e.ID)
			}
			if got := entryVals(&e); !equalVals(got, tt.want) {
				t.Errorf("ParseSensorPayload(%d, %q) = %v, want %v", tt.field, tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSensorPayloadInvalid(t *testing.T) {
	for _, tt := range invalidSensorPayloads {
		t.Run(tt.desc, func(t *testing.T) {
			e, err := channels.ParseSensorPayload(testChannel(), tt.field, []byte(tt.in), channels.DefaultLimits())
			if err == nil {
				t.Fatalf("ParseSensorPayload(%d, %q) = %v, want an error", tt.field, tt.in, entryVals(&e))
			}
			if e != (channels.Entry{}) {
				t.Errorf("ParseSensorPayload returned %v with its error", entryVals(&e))
			}
			if !errors.Is(err, tt.err) || channels.ErrorCode(err) != channels.EINVALID {
				t.Errorf("error %v: want an EINVALID wrapping %v", err, tt.err)
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

func TestParseSensorPayloadLimits(t *testing.T) {
	ch := testChannel()
	// 255 runes in 510 bytes is the limit.
	atLimit := `{"value":"` + strings.Repeat("é", 255) + `"}`
	if _, err := channels.ParseSensorPayload(ch, 1, []byte(atLimit), channels.Limits{}); err != nil {
		t.Errorf("255 runes: %v", err)
	}
	// Exactly 3000 bytes.
	full := `{"value":1,"pad":"` + strings.Repeat("x", 3000-20) + `"}`
	if len(full) != 3000 {
		t.Fatalf("test payload is %d bytes", len(full))
	}
	if _, err := channels.ParseSensorPayload(ch, 1, []byte(full), channels.Limits{}); err != nil {
		t.Errorf("3000 bytes: %v", err)
	}
	if _, err := channels.ParseSensorPayload(ch, 1, []byte(full+" "), channels.Limits{}); !errors.Is(err, channels.ErrTooLarge) {
		t.Errorf("3001 bytes: %v, want ErrTooLarge", err)
	}
	for _, tc := range []struct {
		lim channels.Limits
		in  string
		err error
	}{
		{channels.Limits{MaxPayload: 16, MaxValueLen: 3}, `{"value":"abc"}`, nil},
		{channels.Limits{MaxPayload: 16, MaxValueLen: 3}, `{"value":"abcd"}`, channels.ErrPayload},
		{channels.Limits{MaxPayload: 16, MaxValueLen: 3}, `{"value":123}`, nil},
		{channels.Limits{MaxPayload: 16, MaxValueLen: 3}, `{"value":1234}`, channels.ErrPayload},
		{channels.Limits{MaxPayload: 16, MaxValueLen: 3}, `{"value":1}     `, nil}, // 16 bytes
		{channels.Limits{MaxPayload: 16, MaxValueLen: 3}, `{"value":1}      `, channels.ErrTooLarge},
		// Characters are runes of the decoded value, not payload bytes.
		{channels.Limits{MaxPayload: 18, MaxValueLen: 3}, `{"value":"ééé"}`, nil},
		{channels.Limits{MaxPayload: 32, MaxValueLen: 1}, `{"value":"\u00e9"}`, nil},
		{channels.Limits{MaxPayload: 32, MaxValueLen: 1}, `{"value":"\u00e9\u00e9"}`, channels.ErrPayload},
	} {
		_, err := channels.ParseSensorPayload(ch, 1, []byte(tc.in), tc.lim)
		if (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("ParseSensorPayload(%q, %+v): %v, want %v", tc.in, tc.lim, err, tc.err)
		}
	}
}

// TestParseSensorPayloadDeep checks that nesting far beyond what a payload
// limit allows is refused, not followed until the stack runs out.
func TestParseSensorPayloadDeep(t *testing.T) {
	lim := channels.Limits{MaxPayload: 1 << 22}
	for _, in := range []string{
		`{"x":` + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + `,"value":1}`,
		`{"x":` + strings.Repeat(`{"a":`, 200000) + "1" + strings.Repeat("}", 200000) + `,"value":1}`,
	} {
		_, err := channels.ParseSensorPayload(testChannel(), 1, []byte(in), lim)
		if !errors.Is(err, channels.ErrPayload) || !strings.Contains(err.Error(), "depth") {
			t.Errorf("deep payload of %d bytes: %v, want an error about depth", len(in), err)
		}
	}
}

// TestParseSensorPayloadCopies checks that the value does not alias the
// payload, which the broker may reuse.
func TestParseSensorPayloadCopies(t *testing.T) {
	for _, in := range []string{`{"value":"abc"}`, `{"value":123}`, `{"value":true}`} {
		p := []byte(in)
		e, err := channels.ParseSensorPayload(testChannel(), 1, p, channels.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := e.Field(1)
		want = strings.Clone(want)
		for i := range p {
			p[i] = 'Z'
		}
		if v, _ := e.Field(1); v != want {
			t.Errorf("%s: value changed to %q with the payload", in, v)
		}
	}
}

var sensorJSONTests = []struct {
	desc  string
	entry func() channels.Entry
	field int
	want  string
}{
	{"waziup shape", func() channels.Entry {
		e := channels.Entry{ChannelID: 7, ID: 1, CreatedAt: time.Date(2016, 6, 8, 18, 20, 27, 0, time.UTC)}
		e.SetValue(0, "55.6")
		return e
	}, 1, `{"value":"55.6","timestamp":"2016-06-08T18:20:27Z"}`},
	{"local time in UTC", func() channels.Entry {
		e := channels.Entry{CreatedAt: time.Date(2016, 6, 8, 20, 20, 27, 999, time.FixedZone("CEST", 7200))}
		e.SetValue(7, "true")
		return e
	}, 8, `{"value":"true","timestamp":"2016-06-08T18:20:27Z"}`},
	{"escapes", func() channels.Entry {
		e := channels.Entry{CreatedAt: time.Unix(0, 0)}
		e.SetValue(1, "say \"hi\" \\ \t\n\r\x01 é \u2028")
		return e
	}, 2, `{"value":"say \"hi\" \\ \t\n\r\u0001 é \u2028","timestamp":"1970-01-01T00:00:00Z"}`},
	{"unset field", func() channels.Entry {
		e := channels.Entry{CreatedAt: time.Unix(1700000000, 0)}
		e.SetValue(0, "x")
		return e
	}, 2, `{"value":"","timestamp":"2023-11-14T22:13:20Z"}`},
	{"field out of range", func() channels.Entry {
		e := channels.Entry{CreatedAt: time.Unix(1700000000, 0)}
		e.SetValue(channels.Status, "x")
		return e
	}, channels.Status + 1, `{"value":"","timestamp":"2023-11-14T22:13:20Z"}`},
	{"field 0", func() channels.Entry { return channels.Entry{CreatedAt: time.Unix(1700000000, 0)} },
		0, `{"value":"","timestamp":"2023-11-14T22:13:20Z"}`},
}

func TestAppendSensorJSON(t *testing.T) {
	for _, tt := range sensorJSONTests {
		t.Run(tt.desc, func(t *testing.T) {
			e := tt.entry()
			got := channels.AppendSensorJSON([]byte("prefix:"), &e, tt.field)
			if string(got) != "prefix:"+tt.want {
				t.Fatalf("AppendSensorJSON =\n%s\nwant\nprefix:%s", got, tt.want)
			}
			checkSensorJSON(t, got[len("prefix:"):], &e, tt.field)
		})
	}
}

// checkSensorJSON checks that b is the valid sensor JSON of field n of e.
func checkSensorJSON(t *testing.T, b []byte, e *channels.Entry, n int) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("AppendSensorJSON = %s: not valid JSON", b)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("AppendSensorJSON = %s: %v", b, err)
	}
	var want string
	if n >= 1 && n <= channels.NumFields {
		want, _ = e.Field(n)
	}
	if len(m) != 2 || m["value"] != want || m["timestamp"] != e.CreatedAt.UTC().Format(channels.TimeFormat) {
		t.Fatalf("AppendSensorJSON = %s: want value %q and timestamp %v", b, want, e.CreatedAt)
	}
}

// TestSensorRoundTrip parses what subscribers receive as a publish.
func TestSensorRoundTrip(t *testing.T) {
	for _, tt := range validSensorPayloads {
		e, err := channels.ParseSensorPayload(testChannel(), tt.field, []byte(tt.in), channels.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", tt.desc, err)
		}
		checkSensorRoundTrip(t, &e, tt.field)
	}
}

// checkSensorRoundTrip re-parses the sensor JSON of field n of e and
// expects the same value and created_at.
func checkSensorRoundTrip(t *testing.T, e *channels.Entry, n int) {
	t.Helper()
	want := *e
	if want.CreatedAt.IsZero() {
		want.CreatedAt = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	}
	b := channels.AppendSensorJSON(nil, &want, n)
	got, err := channels.ParseSensorPayload(testChannel(), n, b, channels.Limits{MaxPayload: 1 << 16, MaxValueLen: 1 << 16})
	if err != nil || got != want {
		t.Fatalf("ParseSensorPayload(AppendSensorJSON = %s) = %v, %v; want %v", b, entryVals(&got), err, entryVals(&want))
	}
}

func ExampleParseSensorPayload() {
	ch := &channels.Channel{ID: 7, Name: "weather", Fields: [channels.NumFields]string{"temperature", "humidity"}}

	topic, _ := channels.ParseSensorTopic("devices/weather/sensors/humidity/value")
	// The broker looks the channel up by ID or name; here it is ch.
	n, _ := channels.ResolveSensor(ch, topic.Sensor)
	e, err := channels.ParseSensorPayload(ch, n, []byte(`{"value":55.60,"timestamp":"2016-06-08T18:20:27Z"}`), channels.DefaultLimits())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s\n", channels.AppendSensorJSON(nil, &e, n))

	_, err = channels.ResolveSensor(ch, "pressure")
	fmt.Println(err)
	// Output:
	// {"value":"55.60","timestamp":"2016-06-08T18:20:27Z"}
	// channel 7 has no enabled field labelled "pressure"; name a sensor field1..field8 or by its label
}

func FuzzParseSensorTopic(f *testing.F) {
	for _, tt := range validSensorTopics {
		f.Add(tt.in)
	}
	for _, tt := range invalidSensorTopics {
		if len(tt.in) < 1000 {
			f.Add(tt.in)
		}
	}
	for _, tt := range sensorTopicLevels {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := channels.ParseSensorTopic(s)
		if err != nil {
			if !errors.Is(err, channels.ErrTopic) || channels.ErrorCode(err) != channels.EINVALID {
				t.Fatalf("ParseSensorTopic(%q): error %v is not an EINVALID ErrTopic", s, err)
			}
			if st != (channels.SensorTopic{}) {
				t.Fatalf("ParseSensorTopic(%q) returned %+v with its error", s, st)
			}
		} else {
			if !channels.ValidTopicLevel(st.Channel) || !channels.ValidTopicLevel(st.Sensor) {
				t.Fatalf("ParseSensorTopic(%q) = %+v: invalid level", s, st)
			}
			if back := channels.SensorTopicFor(st.Channel, st.Sensor); back != s {
				t.Fatalf("ParseSensorTopic(%q) = %+v, which builds %q", s, st, back)
			}
			if id, err := channels.ParseID(st.Channel); channels.LooksLikeID(st.Channel) != (st.ChannelID != 0) || st.ChannelID != 0 && (err != nil || id != st.ChannelID) {
				t.Fatalf("ParseSensorTopic(%q) = %+v: channel ID and level disagree", s, st)
			}
		}
		// Any string as a level: valid levels round-trip, others fail. A
		// channel level that looks like an ID must be one.
		valid := channels.ValidTopicLevel(s)
		_, idErr := channels.ParseID(s)
		validChannel := valid && (!channels.LooksLikeID(s) || idErr == nil)
		for i, topic := range []string{channels.SensorTopicFor(s, "field1"), channels.SensorTopicFor("7", s)} {
			st, err := channels.ParseSensorTopic(topic)
			valid := []bool{validChannel, valid}[i]
			if valid != (err == nil) || valid && []string{st.Channel, st.Sensor}[i] != s {
				t.Fatalf("ParseSensorTopic(%q) = %+v, %v; ValidTopicLevel(%q) = %v", topic, st, err, s, valid)
			}
		}
		// Resolution against a channel that has s as a label never
		// panics, and SensorLabel offers only labels that resolve back.
		ch := &channels.Channel{ID: 7, Fields: sensorFields}
		ch.Fields[1] = s
		if n, err := channels.ResolveSensor(ch, s); err == nil {
			if !ch.FieldEnabled(n) || s != channels.FieldName(n) && s != ch.Fields[n-1] {
				t.Fatalf("ResolveSensor(%q) = field%d, labelled %q", s, n, ch.Fields[n-1])
			}
		} else if n != 0 {
			t.Fatalf("ResolveSensor(%q) = %d with error %v", s, n, err)
		}
		for n := 1; n <= channels.NumFields; n++ {
			label, ok := channels.SensorLabel(ch, n)
			if !ok {
				continue
			}
			if m, err := channels.ResolveSensor(ch, label); err != nil || m != n {
				t.Fatalf("SensorLabel(%d) = %q, which resolves to %d, %v", n, label, m, err)
			}
			if st, err := channels.ParseSensorTopic(channels.SensorTopicFor("7", label)); err != nil || st.Sensor != label {
				t.Fatalf("SensorLabel(%d) = %q, which is no topic level: %v", n, label, err)
			}
		}
	})
}

func FuzzParseSensorPayload(f *testing.F) {
	for _, tt := range validSensorPayloads {
		f.Add(int8(tt.field), []byte(tt.in))
	}
	for _, tt := range invalidSensorPayloads {
		if len(tt.in) < 1000 {
			f.Add(int8(tt.field), []byte(tt.in))
		}
	}
	ch := testChannel()
	f.Fuzz(func(t *testing.T, field int8, payload []byte) {
		for _, lim := range []channels.Limits{{}, {MaxPayload: 64, MaxValueLen: 4}} {
			e, err := channels.ParseSensorPayload(ch, int(field), payload, lim)
			if err != nil {
				if !errors.Is(err, channels.ErrPayload) && !errors.Is(err, channels.ErrTooLarge) ||
					channels.ErrorCode(err) != channels.EINVALID {
					t.Fatalf("ParseSensorPayload(%d, %q): error %v is not an EINVALID ErrPayload", field, payload, err)
				}
				if e != (channels.Entry{}) {
					t.Fatalf("ParseSensorPayload(%d, %q) returned an entry with its error", field, payload)
				}
				if len(err.Error()) > 200 {
					t.Fatalf("error message is %d bytes long: %q", len(err.Error()), err)
				}
				continue
			}
			checkEntry(t, ch, &e, lim)
			if e.Set != 1<<(field-1) {
				t.Fatalf("ParseSensorPayload(%d, %q) sets %#x", field, payload, e.Set)
			}
			v, _ := e.Field(int(field))
			if !utf8.ValidString(v) {
				t.Fatalf("value %q is not valid UTF-8", v)
			}
			checkSensorReference(t, payload, v)
			b := channels.AppendSensorJSON(nil, &e, int(field))
			checkSensorJSON(t, b, &e, int(field))
			checkSensorRoundTrip(t, &e, int(field))
		}
	})
}

// checkSensorReference decodes an accepted payload with encoding/json's
// Decoder and UseNumber, and expects the same value text and no trailing
// data.
func checkSensorReference(t *testing.T, payload []byte, v string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("ParseSensorPayload accepted %q, but the decoder says %v", payload, err)
	}
	if dec.More() {
		t.Fatalf("ParseSensorPayload accepted %q with trailing data", payload)
	}
	var want string
	switch x := m["value"].(type) {
	case string:
		want = x
	case json.Number:
		want = x.String()
	case bool:
		want = fmt.Sprint(x)
	default:
		t.Fatalf("ParseSensorPayload accepted %q with value %#v", payload, x)
	}
	if v != want {
		t.Fatalf("ParseSensorPayload(%q) value = %q, decoder says %q", payload, v, want)
	}
}

var benchSensorPayloads = []struct {
	desc string
	in   string
}{
	{"waziup", `{"value":"55.6","timestamp":"2016-06-08T18:20:27Z"}`},
	{"number", `{"value":23.50}`},
	{"date_received", `{"value":"55.6","timestamp":"2016-06-08T18:20:27Z","date_received":"2016-06-08T18:20:28Z"}`},
}

func BenchmarkParseSensorPayload(b *testing.B) {
	ch := testChannel()
	for _, bb := range benchSensorPayloads {
		p := []byte(bb.in)
		b.Run(bb.desc, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := channels.ParseSensorPayload(ch, 1, p, channels.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseSensorTopic(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := channels.ParseSensorTopic("devices/weather/sensors/temperature/value"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMaxTopicLenFitsLongestTopic(t *testing.T) {
	long := strings.Repeat("n", channels.MaxTopicLevel)
	topic := channels.SensorTopicFor(long, long)
	if _, err := channels.ParseSensorTopic(topic); err != nil {
		t.Fatalf("longest sensor topic refused: %v", err)
	}
	if len(topic) != channels.MaxTopicLen {
		t.Fatalf("longest sensor topic is %d bytes, MaxTopicLen %d", len(topic), channels.MaxTopicLen)
	}
	legacy := "channels/18446744073709551615/subscribe/fields/field8/" + strings.Repeat("K", channels.KeyLen)
	if _, err := channels.ParseTopic(legacy); err != nil || len(legacy) > channels.MaxTopicLen {
		t.Fatalf("longest channel topic (%d bytes): %v", len(legacy), err)
	}
}
