package channels_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

const (
	writeKey = "ABCDEFGHIJKLMNOP"
	readKey  = "0123456789ABCDEF"
)

var validTopics = []struct {
	desc string
	in   string
	want channels.Topic
}{
	{"publish feed", "channels/7/publish",
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 7}},
	{"publish field", "channels/7/publish/fields/field3",
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 7, Field: 3}},
	{"publish field1", "channels/1/publish/fields/field1",
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 1, Field: 1}},
	{"publish field8", "channels/1/publish/fields/field8",
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 1, Field: 8}},
	{"publish legacy key", "channels/1076918/publish/" + writeKey,
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 1076918, Key: writeKey}},
	{"publish legacy field key", "channels/7/publish/fields/field2/" + writeKey,
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 7, Field: 2, Key: writeKey}},
	{"publish digit-only key", "channels/7/publish/" + "1234567890123456",
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 7, Key: "1234567890123456"}},
	{"publish max id", "channels/18446744073709551615/publish",
		channels.Topic{Kind: channels.KindPublish, Action: channels.Publish, ChannelID: 1<<64 - 1}},
	{"subscribe feed", "channels/7/subscribe",
		channels.Topic{Kind: channels.KindFeed, Action: channels.Subscribe, ChannelID: 7}},
	{"subscribe field", "channels/7/subscribe/fields/field8",
		channels.Topic{Kind: channels.KindField, Action: channels.Subscribe, ChannelID: 7, Field: 8}},
	{"subscribe all fields", "channels/7/subscribe/fields/+",
		channels.Topic{Kind: channels.KindField, Action: channels.Subscribe, ChannelID: 7, AllFields: true}},
	{"subscribe legacy json", "channels/7/subscribe/json",
		channels.Topic{Kind: channels.KindLegacy, Action: channels.Subscribe, ChannelID: 7}},
	{"subscribe legacy json key", "channels/7/subscribe/json/" + readKey,
		channels.Topic{Kind: channels.KindLegacy, Action: channels.Subscribe, ChannelID: 7, Key: readKey}},
	{"subscribe legacy field key", "channels/7/subscribe/fields/field3/" + readKey,
		channels.Topic{Kind: channels.KindLegacy, Action: channels.Subscribe, ChannelID: 7, Field: 3, Key: readKey}},
	{"subscribe legacy all fields key", "channels/7/subscribe/fields/+/" + readKey,
		channels.Topic{Kind: channels.KindLegacy, Action: channels.Subscribe, ChannelID: 7, AllFields: true, Key: readKey}},
	{"sensor", "devices/7/sensors/field2/value",
		channels.Topic{Kind: channels.KindSensor, ChannelID: 7, Field: 2, Channel: "7", Sensor: "field2"}},
	{"sensor label", "devices/7/sensors/Temp/value",
		channels.Topic{Kind: channels.KindSensorName, ChannelID: 7, Channel: "7", Sensor: "Temp"}},
	{"sensor name", "devices/Greenhouse/sensors/field1/value",
		channels.Topic{Kind: channels.KindSensorName, Channel: "Greenhouse", Sensor: "field1"}},
	{"sensor field9 is a label", "devices/7/sensors/field9/value",
		channels.Topic{Kind: channels.KindSensorName, ChannelID: 7, Channel: "7", Sensor: "field9"}},
	{"subscribe id 1", "channels/1/subscribe",
		channels.Topic{Kind: channels.KindFeed, Action: channels.Subscribe, ChannelID: 1}},
}

var invalidTopics = []struct {
	desc string
	in   string
	msg  string // part of the error message
}{
	{"empty", "", "empty level"},
	{"no prefix", "feeds/7/publish", "must start with channels/"},
	{"prefix case", "Channels/7/publish", "must start with channels/"},
	{"channels only", "channels", "must start with channels/"},
	{"missing id", "channels//publish", "empty level"},
	{"leading slash", "/channels/7/publish", "empty level"},
	{"trailing slash publish", "channels/7/publish/", "empty level"},
	{"trailing slash subscribe", "channels/7/subscribe/", "empty level"},
	{"double slash", "channels/7//publish", "empty level"},
	{"empty level before key", "channels/7/publish//" + writeKey, "empty level"},
	{"id only", "channels/7", "after the channel ID"},
	{"id 0", "channels/0/publish", "without leading zeros"},
	{"leading zero", "channels/07/publish", "without leading zeros"},
	{"signed id", "channels/+7/publish", "not allowed in a publish topic"},
	{"negative id", "channels/-7/publish", "decimal number"},
	{"hex id", "channels/0x7/publish", "without leading zeros"},
	{"id with space", "channels/7 /publish", "decimal number"},
	{"overflow", "channels/18446744073709551616/publish", "too large"},
	{"huge id", "channels/" + strings.Repeat("9", 1000) + "/publish", "too large"},
	{"wildcard id", "channels/+/subscribe", "only wildcard supported"},
	{"wildcard id publish", "channels/+/publish", "not allowed in a publish topic"},
	{"hash id", "channels/#", "# wildcard"},
	{"hash only", "#", "must start with channels/"},
	{"plus prefix", "+/7/subscribe", "must start with channels/"},
	{"unknown action", "channels/7/write", "publish or subscribe"},
	{"action case", "channels/7/Publish", "publish or subscribe"},
	{"field0", "channels/7/publish/fields/field0", "field1 to field8"},
	{"field9", "channels/7/subscribe/fields/field9", "field1 to field8"},
	{"field10", "channels/7/publish/fields/field10", "field1 to field8"},
	{"field01", "channels/7/publish/fields/field01", "field1 to field8"},
	{"Field1", "channels/7/publish/fields/Field1", "field1 to field8"},
	{"bare digit field", "channels/7/publish/fields/1", "field1 to field8"},
	{"fields without field", "channels/7/publish/fields", "followed by field<N>"},
	{"publish wildcard field", "channels/7/publish/fields/+", "not allowed in a publish"},
	{"publish hash", "channels/7/publish/#", "not allowed in a publish"},
	{"subscribe hash", "channels/7/subscribe/#", "# wildcard"},
	{"subscribe fields hash", "channels/7/subscribe/fields/#", "# wildcard"},
	{"short key", "channels/7/publish/ABCDEFGHIJKLMNO", "16 characters"},
	{"short field key", "channels/7/publish/fields/field1/ABCDEFGHIJKLMNO", "API key in the topic must be 16 characters"},
	{"long key", "channels/7/publish/ABCDEFGHIJKLMNOPQ", "16 characters"},
	{"lowercase key", "channels/7/publish/abcdefghijklmnop", "16 characters"},
	{"key with symbol", "channels/7/publish/ABCDEFGHIJKLMNO-", "16 characters"},
	{"extra level after key", "channels/7/publish/" + writeKey + "/x", "must end with the API key"},
	{"extra levels after field key", "channels/7/publish/fields/field1/" + writeKey + "/x/y", "must end with the API key"},
	{"publish field no fields level", "channels/7/publish/field1", "must be fields or a write API key"},
	{"publish json", "channels/7/publish/json", "must be fields or a write API key"},
	{"subscribe key without json", "channels/7/subscribe/" + readKey, "goes after json"},
	{"subscribe xml", "channels/7/subscribe/xml", "only the json format"},
	{"subscribe csv key", "channels/7/subscribe/csv/" + readKey, "only the json format"},
	{"subscribe JSON case", "channels/7/subscribe/JSON", "fields or json"},
	{"subscribe unknown", "channels/7/subscribe/feed", "fields or json"},
	{"subscribe json bad key", "channels/7/subscribe/json/" + strings.ToLower(readKey), "16 characters"},
	{"subscribe json extra", "channels/7/subscribe/json/" + readKey + "/more", "must end with the API key"},
	{"subscribe plus key", "channels/7/subscribe/fields/+/+", "only wildcard supported"},
	{"subscribe json plus", "channels/7/subscribe/json/+", "only wildcard supported"},
	{"subscribe plus level", "channels/7/subscribe/+", "only wildcard supported"},
	{"subscribe plus action", "channels/7/+", "only wildcard supported"},
	{"publish plus key", "channels/7/publish/+", "not allowed in a publish topic"},
	{"unicode id", "channels/٧/publish", "decimal number"},
	{"unicode level", "channels/7/publish/fields/field３", "field1 to field8"},
	{"NUL in id", "channels/7\x00/publish", "decimal number"},
	{"NUL in key", "channels/7/publish/ABCDEFGHIJKLMNO\x00", "16 characters"},
	{"invalid UTF-8", "channels/7/\xff\xfe", "publish or subscribe"},
	{"10k levels", "channels/7/publish/" + strings.Repeat("a/", 10000) + "a", "16 characters"},
}

func TestParseTopic(t *testing.T) {
	for _, tt := range validTopics {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := channels.ParseTopic(tt.in)
			if err != nil {
				t.Fatalf("ParseTopic(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseTopic(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTopicInvalid(t *testing.T) {
	for _, tt := range invalidTopics {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := channels.ParseTopic(tt.in)
			if err == nil {
				t.Fatalf("ParseTopic(%q) = %+v, want an error", tt.in, got)
			}
			if got != (channels.Topic{}) {
				t.Errorf("ParseTopic(%q) returned %+v with its error", tt.in, got)
			}
			if !errors.Is(err, channels.ErrTopic) {
				t.Errorf("error %v does not wrap ErrTopic", err)
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
			if strings.Contains(err.Error(), writeKey) || strings.Contains(err.Error(), readKey) {
				t.Errorf("error %q reveals an API key", err)
			}
		})
	}
}

func TestTopicString(t *testing.T) {
	for _, tt := range validTopics {
		want := keyless(tt.want)
		s := want.String()
		got, err := channels.ParseTopic(s)
		if err != nil || got != want {
			t.Errorf("%s: ParseTopic(%q) = %+v, %v; want %+v", tt.desc, s, got, err, want)
		}
	}
}

// keyless returns what t.String() parses to: t without its key, which
// makes a legacy field topic canonical.
func keyless(t channels.Topic) channels.Topic {
	if t.Key != "" && t.Kind == channels.KindLegacy && (t.Field != 0 || t.AllFields) {
		t.Kind = channels.KindField
	}
	t.Key = ""
	return t
}

func TestFeedTopic(t *testing.T) {
	if got := channels.FeedTopic(7); got != "channels/7/subscribe" {
		t.Errorf("FeedTopic(7) = %q", got)
	}
	if got := channels.FieldTopic(1<<64-1, 8); got != "channels/18446744073709551615/subscribe/fields/field8" {
		t.Errorf("FieldTopic = %q", got)
	}
	for n := 1; n <= channels.NumFields; n++ {
		want := channels.Topic{Kind: channels.KindField, Action: channels.Subscribe, ChannelID: 42, Field: n}
		if got, err := channels.ParseTopic(channels.FieldTopic(42, n)); err != nil || got != want {
			t.Errorf("ParseTopic(FieldTopic(42, %d)) = %+v, %v", n, got, err)
		}
	}
}

func TestParseTopicAllocs(t *testing.T) {
	in := "channels/1076918/publish/fields/field3/" + writeKey
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := channels.ParseTopic(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseTopic allocates %v times, want 0", allocs)
	}
}

func FuzzParseTopic(f *testing.F) {
	for _, tt := range validTopics {
		f.Add(tt.in)
	}
	for _, tt := range invalidTopics {
		if len(tt.in) < 1000 {
			f.Add(tt.in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := channels.ParseTopic(s)
		if err != nil {
			if !errors.Is(err, channels.ErrTopic) || channels.ErrorCode(err) != channels.EINVALID {
				t.Fatalf("ParseTopic(%q): error %v is not an EINVALID ErrTopic", s, err)
			}
			return
		}
		if tp.Kind == channels.KindSensor || tp.Kind == channels.KindSensorName {
			if tp.Action != 0 || tp.Key != "" || tp.AllFields || tp.String() != s ||
				(tp.ChannelID != 0) != channels.LooksLikeID(tp.Channel) ||
				(tp.Kind == channels.KindSensor) != (tp.ChannelID != 0 && tp.Field != 0) {
				t.Fatalf("ParseTopic(%q) = %#v: inconsistent sensor topic", s, tp)
			}
			return
		}
		if tp.Kind < channels.KindPublish || tp.Kind > channels.KindLegacy {
			t.Fatalf("ParseTopic(%q) = %#v: bad kind", s, tp)
		}
		if (tp.Kind == channels.KindPublish) != (tp.Action == channels.Publish) {
			t.Fatalf("ParseTopic(%q) = %#v: kind and action disagree", s, tp)
		}
		if tp.ChannelID < 1 || tp.Field < 0 || tp.Field > channels.NumFields {
			t.Fatalf("ParseTopic(%q) = %+v: out of range", s, tp)
		}
		if tp.Action != channels.Publish && tp.Action != channels.Subscribe {
			t.Fatalf("ParseTopic(%q) = %+v: bad action", s, tp)
		}
		if tp.AllFields && (tp.Field != 0 || tp.Action != channels.Subscribe) {
			t.Fatalf("ParseTopic(%q) = %+v: AllFields with a field or on publish", s, tp)
		}
		if tp.Key != "" && (!channels.ValidKey(tp.Key) || !strings.HasSuffix(s, "/"+tp.Key)) {
			t.Fatalf("ParseTopic(%q) = %+v: bad key", s, tp)
		}
		// The keyless form re-parses to the same topic.
		want := keyless(tp)
		if got, err := channels.ParseTopic(tp.String()); err != nil || got != want {
			t.Fatalf("ParseTopic(%q) = %+v, %v; want %+v", tp.String(), got, err, want)
		}
		if tp.Kind == channels.KindFeed || tp.Kind == channels.KindField && !tp.AllFields {
			rebuilt := channels.FeedTopic(tp.ChannelID)
			if tp.Field != 0 {
				rebuilt = channels.FieldTopic(tp.ChannelID, tp.Field)
			}
			if got, err := channels.ParseTopic(rebuilt); err != nil || got != tp {
				t.Fatalf("ParseTopic(%q) = %+v, %v; want %+v", rebuilt, got, err, tp)
			}
		}
	})
}

var benchTopics = []string{
	"channels/1076918/publish",
	"channels/1076918/publish/fields/field3",
	"channels/1076918/publish/fields/field3/" + writeKey,
	"channels/1076918/subscribe/fields/+",
}

func BenchmarkParseTopic(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := channels.ParseTopic(benchTopics[i%len(benchTopics)]); err != nil {
			b.Fatal(err)
		}
	}
}
