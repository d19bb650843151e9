package channels_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

var appendJSONTests = []struct {
	desc  string
	entry func() channels.Entry
	want  string
}{
	{"design example", func() channels.Entry {
		e := channels.Entry{ChannelID: 1, ID: 7, CreatedAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
		e.SetValue(0, "23.5")
		return e
	}, `{"channel_id":1,"created_at":"2026-11-22T10:00:00Z","entry_id":7,"field1":"23.5","field2":null,"field3":null,"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":null}`},
	{"reference capture", func() channels.Entry {
		e := channels.Entry{ChannelID: 1587079, ID: 797, CreatedAt: time.Date(2021, 12, 11, 5, 35, 31, 0, time.UTC)}
		e.SetValue(1, "21")
		return e
	}, `{"channel_id":1587079,"created_at":"2021-12-11T05:35:31Z","entry_id":797,"field1":null,"field2":"21","field3":null,"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":null}`},
	{"every value, local time", func() channels.Entry {
		berlin := time.FixedZone("CET", 3600)
		e := channels.Entry{ChannelID: 18446744073709551615, ID: 1, CreatedAt: time.Date(2014, 12, 31, 23, 59, 59, 0, berlin)}
		for i := 0; i < channels.NumValues; i++ {
			e.SetValue(i, channels.ValueName(i))
		}
		return e
	}, `{"channel_id":18446744073709551615,"created_at":"2014-12-31T22:59:59Z","entry_id":1,"field1":"field1","field2":"field2","field3":"field3","field4":"field4","field5":"field5","field6":"field6","field7":"field7","field8":"field8","latitude":"latitude","longitude":"longitude","elevation":"elevation","status":"status"}`},
	{"empty string is not null", func() channels.Entry {
		e := channels.Entry{ChannelID: 2, ID: 3, CreatedAt: time.Unix(0, 0)}
		e.SetValue(channels.Status, "")
		return e
	}, `{"channel_id":2,"created_at":"1970-01-01T00:00:00Z","entry_id":3,"field1":null,"field2":null,"field3":null,"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":""}`},
	{"escapes", func() channels.Entry {
		e := channels.Entry{ChannelID: 1, ID: 2, CreatedAt: time.Unix(1700000000, 0)}
		e.SetValue(0, `say "hi" \ now`)
		e.SetValue(1, "tab\tnl\ncr\r\x01\x1f")
		e.SetValue(2, "é ✓ 😀 <&>")
		e.SetValue(3, "line\u2028para\u2029")
		e.SetValue(4, "bad\xffutf8")
		return e
	}, `{"channel_id":1,"created_at":"2023-11-14T22:13:20Z","entry_id":2,"field1":"say \"hi\" \\ now","field2":"tab\tnl\ncr\r\u0001\u001f","field3":"é ✓ 😀 <&>","field4":"line\u2028para\u2029","field5":"bad\ufffdutf8","field6":null,"field7":null,"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":null}`},
}

func TestEntryAppendJSON(t *testing.T) {
	for _, tt := range appendJSONTests {
		t.Run(tt.desc, func(t *testing.T) {
			e := tt.entry()
			prefix := []byte("prefix:")
			got := e.AppendJSON(prefix)
			if string(got) != "prefix:"+tt.want {
				t.Fatalf("AppendJSON =\n%s\nwant\n%s", got, "prefix:"+tt.want)
			}
			b := got[len(prefix):]
			if !json.Valid(b) {
				t.Fatalf("not valid JSON: %s", b)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if len(m) != 3+channels.NumValues {
				t.Errorf("JSON has %d keys", len(m))
			}
			if m["channel_id"] != float64(e.ChannelID) || m["entry_id"] != float64(e.ID) ||
				m["created_at"] != e.CreatedAt.UTC().Format(channels.TimeFormat) {
				t.Errorf("decoded %v, %v, %v", m["channel_id"], m["entry_id"], m["created_at"])
			}
			for i := 0; i < channels.NumValues; i++ {
				v, ok := e.Value(i)
				v = strings.ToValidUTF8(v, "\ufffd") // invalid UTF-8 is written as U+FFFD
				got, present := m[channels.ValueName(i)]
				if !present || (ok && got != v) || (!ok && got != nil) {
					t.Errorf("%s = %#v, want %q (set %v)", channels.ValueName(i), got, v, ok)
				}
			}
			// MarshalJSON is AppendJSON.
			mj, err := e.MarshalJSON()
			if err != nil || string(mj) != tt.want {
				t.Errorf("MarshalJSON = %s, %v", mj, err)
			}
		})
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := channels.Entry{ChannelID: 1076918, ID: 797, CreatedAt: time.Date(2021, 12, 11, 5, 35, 31, 0, time.UTC)}
	e.SetValue(0, "23.5")
	e.SetValue(1, "45")
	e.SetValue(channels.Status, `door "open" ✓`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

// AppendTime lays out a time exactly as AppendFormat with TimeFormat does,
// in UTC, for every year (four-digit years by itself, the rest through
// AppendFormat).
func TestAppendTime(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 7, 8, 4, 5, 999999999, time.UTC),
		time.Date(2024, 2, 29, 23, 59, 59, 0, time.FixedZone("east", 5*3600+1800)),
		time.Date(2024, 12, 31, 23, 30, 0, 0, time.FixedZone("west", -8*3600)),
		time.Date(999, 3, 4, 5, 6, 7, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1<<40, 0),
		time.Unix(-1<<40, 0),
	}
	for _, tm := range times {
		want := tm.UTC().AppendFormat([]byte("x"), channels.TimeFormat)
		if got := channels.AppendTime([]byte("x"), tm); !bytes.Equal(got, want) {
			t.Errorf("AppendTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0), int64(0), 0)
	f.Add(int64(1733558400), int64(5), 3600)
	f.Add(int64(253402300799), int64(999999999), -3600)
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", offset%(48*3600)))
		want := tm.UTC().AppendFormat(nil, channels.TimeFormat)
		if got := channels.AppendTime(nil, tm); !bytes.Equal(got, want) {
			t.Fatalf("AppendTime(%v) = %q, want %q", tm, got, want)
		}
	})
}
