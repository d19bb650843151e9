package channels_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

var (
	feedK   = channels.KindsOf(channels.KindFeed)
	fieldK  = channels.KindsOf(channels.KindField)
	sensorK = channels.KindsOf(channels.KindSensor)
)

var validFilters = []struct {
	in       string
	kinds    channels.KindSet
	wildcard bool
}{
	{"channels/7/subscribe", feedK, false},
	{"channels/7/subscribe/fields/field3", fieldK, false},
	{"channels/7/subscribe/fields/+", fieldK, false},
	{"channels/7/subscribe/json", channels.KindsOf(channels.KindLegacy), false},
	{"channels/7/subscribe/json/" + readKey, channels.KindsOf(channels.KindLegacy), false},
	{"channels/7/subscribe/fields/+/" + readKey, channels.KindsOf(channels.KindLegacy), false},
	{"devices/7/sensors/field1/value", sensorK | channels.KindsOf(channels.KindSensorName), false},
	{"devices/7/sensors/Temp/value", channels.KindsOf(channels.KindSensorName), false},
	{"devices/Greenhouse/sensors/field1/value", channels.KindsOf(channels.KindSensorName), false},
	{"#", feedK | fieldK | sensorK, true},
	{"+/#", feedK | fieldK | sensorK, true},
	{"channels/#", feedK | fieldK, true},
	{"channels/+/subscribe", feedK, true},
	{"channels/+/subscribe/#", feedK | fieldK, true},
	{"channels/7/#", feedK | fieldK, true},
	{"channels/7/subscribe/#", feedK | fieldK, true},
	{"channels/+/subscribe/fields/+", fieldK, true},
	{"channels/+/subscribe/fields/field8", fieldK, true},
	{"+/+/+", feedK, true},
	{"+/+/+/+/+", fieldK | sensorK, true},
	{"+/7/+/+/+", fieldK | sensorK, true},
	{"+/18446744073709551615/subscribe", feedK, true},
	{"devices/+/sensors/+/value", sensorK, true},
	{"devices/7/sensors/+/value", sensorK, true},
	{"devices/+/sensors/field2/value", sensorK, true},
	{"devices/#", sensorK, true},
	{"+/+/sensors/#", sensorK, true},
}

var invalidFilters = []struct{ in, msg string }{
	{"", "empty level"},
	{"channels/7/publish", "cannot be subscribed"},
	{"channels/7/publish/fields/field1", "cannot be subscribed"},
	{"$SYS/#", "$SYS"},
	{"$share/g/channels/7/subscribe", "$SYS"},
	{"channels/01/subscribe", "leading zeros"},
	{"channels/01/+", "matches no feedmq topic"},
	{"+/01/subscribe", "matches no feedmq topic"},
	{"channels/01/#", "matches no feedmq topic"},
	{"devices/01/sensors/+/value", "matches no feedmq topic"},
	{"devices/01/#", "matches no feedmq topic"},
	{"devices/01/sensors/field1/value", "leading zeros"},
	{"devices/0/sensors/field1/value", "leading zeros"},
	{"channels/18446744073709551616/+", "matches no feedmq topic"},
	{"channels/" + strings.Repeat("9", 60000) + "/+", "no feedmq topic is longer"},
	{strings.Repeat("+/", channels.MaxTopicLen/2+1) + "#", "no feedmq topic is longer"},
	{"devices/Greenhouse/sensors/+/value", "matches no feedmq topic"},
	{"devices/+/sensors/Temp/value", "matches no feedmq topic"},
	{"channels/+/subscribe/json", "matches no feedmq topic"},
	{"channels/+/subscribe/fields/field9", "matches no feedmq topic"},
	{"channels/+/publish", "matches no feedmq topic"},
	{"+/+", "matches no feedmq topic"},
	{"+/+/+/+", "matches no feedmq topic"},
	{"+/+/+/+/+/+", "matches no feedmq topic"},
	{"channels/+/subscribe/#/x", "matches no feedmq topic"},
	{"a+/7/subscribe", "matches no feedmq topic"},
	{"feeds/#", "matches no feedmq topic"},
}

func TestParseFilter(t *testing.T) {
	for _, tt := range validFilters {
		f, err := channels.ParseFilter(tt.in)
		if err != nil || f.Kinds != tt.kinds || f.Wildcard != tt.wildcard {
			t.Errorf("ParseFilter(%q) = %+v, %v; want kinds %b wildcard %v", tt.in, f, err, tt.kinds, tt.wildcard)
			continue
		}
		if !f.Wildcard {
			if tp, err := channels.ParseTopic(tt.in); err != nil || tp != f.Topic {
				t.Errorf("ParseFilter(%q).Topic = %+v, ParseTopic gives %+v, %v", tt.in, f.Topic, tp, err)
			}
		}
	}
	for _, tt := range invalidFilters {
		f, err := channels.ParseFilter(tt.in)
		if err == nil {
			t.Errorf("ParseFilter(%.40q) = %+v, want an error", tt.in, f)
			continue
		}
		if !errors.Is(err, channels.ErrTopic) || !strings.Contains(err.Error(), tt.msg) || len(err.Error()) > 300 {
			t.Errorf("ParseFilter(%.40q): %.300v, want a short ErrTopic mentioning %q", tt.in, err, tt.msg)
		}
	}
}

// canonicalTopics are topics of each kind a wildcard may match.
var canonicalTopics = []string{
	"channels/7/subscribe", "channels/18446744073709551615/subscribe",
	"channels/7/subscribe/fields/field1", "channels/7/subscribe/fields/field8",
	"devices/7/sensors/field1/value", "devices/1/sensors/field8/value",
}

// FuzzParseFilter checks ParseFilter against plain MQTT matching: a
// wildcard filter that matches one of the canonical topics must be
// accepted with that topic's kind, and a filter that ParseFilter accepts
// must not claim a kind its matches contradict.
func FuzzParseFilter(f *testing.F) {
	for _, tt := range validFilters {
		f.Add(tt.in)
	}
	for _, tt := range invalidFilters {
		if len(tt.in) < 1000 {
			f.Add(tt.in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := channels.ParseFilter(s)
		if err != nil {
			if !errors.Is(err, channels.ErrTopic) || flt != (channels.Filter{}) || len(err.Error()) > 300 {
				t.Fatalf("ParseFilter(%q) = %+v, %v", s, flt, err)
			}
		} else if flt.Kinds == 0 || flt.Wildcard == (flt.Topic != channels.Topic{}) {
			t.Fatalf("ParseFilter(%q) = %+v", s, flt)
		}
		if !validMQTTFilter(s) {
			return
		}
		for _, topic := range canonicalTopics {
			if !mqttMatch(s, topic) {
				continue
			}
			tp, _ := channels.ParseTopic(topic)
			if err != nil || !flt.Kinds.Has(tp.Kind) {
				t.Fatalf("ParseFilter(%q) = %+v, %v; but it matches %s", s, flt, err, topic)
			}
		}
		if err == nil && flt.Wildcard {
			// Every literal level that stands for an ID is one.
			for _, l := range strings.Split(s, "/") {
				if channels.LooksLikeID(l) {
					if _, err := channels.ParseID(l); err != nil {
						t.Fatalf("ParseFilter(%q) accepted the level %q", s, l)
					}
				}
			}
		}
	})
}

// validMQTTFilter reports whether s is a filter MQTT allows: + and # are
// whole levels, # only last.
func validMQTTFilter(s string) bool {
	if s == "" || len(s) > channels.MaxTopicLen {
		return false
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && l != "+" && l != "#" || l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}

func mqttMatch(filter, topic string) bool {
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(tp) || (l != "+" && l != tp[i]) {
			return false
		}
	}
	return len(f) == len(tp)
}

func TestParseFilterAllocs(t *testing.T) {
	for _, in := range []string{"channels/7/subscribe", "devices/+/sensors/+/value", "#"} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := channels.ParseFilter(in); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0 && in == "channels/7/subscribe" {
			t.Errorf("ParseFilter(%q) allocates %v times, want 0", in, allocs)
		}
	}
}
