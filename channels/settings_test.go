package channels_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

var tagCases = []struct {
	in   string
	want []string
}{
	{"", nil},
	{"   ", nil},
	{",,,", nil},
	{"a", []string{"a"}},
	{"a, b,,c", []string{"a", "b", "c"}},
	{" weather station , roof ", []string{"weather station", "roof"}},
	{"a,a, a", []string{"a"}},
	{"b,a,b", []string{"b", "a"}},
	{"Ümlaut,日本", []string{"Ümlaut", "日本"}},
	{"a\tb", []string{"a\tb"}}, // kept; Validate refuses the tab
}

func TestParseTags(t *testing.T) {
	for _, tt := range tagCases {
		if got := channels.ParseTags(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseTags(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizeTags(t *testing.T) {
	for _, tt := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{}, nil},
		{[]string{" ", ""}, nil},
		{[]string{" x ", "y", "x"}, []string{"x", "y"}},
		{[]string{"a,b"}, []string{"a,b"}}, // kept; Validate refuses the comma
	} {
		if got := channels.NormalizeTags(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("NormalizeTags(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// validChannel is a channel that passes Validate.
func validChannel() channels.Channel {
	return channels.Channel{Name: "ok", Fields: [8]string{"a"}, WriteKey: "AAAAAAAAAAAAAAAA", ReadKey: "BBBBBBBBBBBBBBBB"}
}

func TestValidate_Settings(t *testing.T) {
	tags := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "t" + strings.Repeat("x", i)
		}
		return out
	}
	for _, tt := range []struct {
		desc string
		set  func(c *channels.Channel)
		want string // "" for valid, else a part of the message
	}{
		{"unset", func(c *channels.Channel) {}, ""},
		{"all set", func(c *channels.Channel) {
			c.Latitude, c.Longitude, c.Elevation = "52.5163", "13.3777", "34"
			c.Metadata, c.Tags, c.URL = `{"owner":"me"}`, []string{"roof", "weather station"}, "https://example.com/a?b=c#d"
		}, ""},
		{"latitude bounds", func(c *channels.Channel) { c.Latitude, c.Longitude = "-90", "+180.000" }, ""},
		{"latitude leading zeros", func(c *channels.Channel) { c.Latitude = "090.0" }, ""},
		{"latitude over", func(c *channels.Channel) { c.Latitude = "90.0000001" }, "latitude must be a number from -90 to 90"},
		{"latitude word", func(c *channels.Channel) { c.Latitude = "north" }, "latitude must be"},
		{"latitude exponent", func(c *channels.Channel) { c.Latitude = "1e1" }, "latitude must be"},
		{"latitude NaN", func(c *channels.Channel) { c.Latitude = "NaN" }, "latitude must be"},
		{"latitude space", func(c *channels.Channel) { c.Latitude = " 1" }, "latitude must be"},
		{"latitude comma", func(c *channels.Channel) { c.Latitude = "52,5" }, "latitude must be"},
		{"latitude long", func(c *channels.Channel) { c.Latitude = "1." + strings.Repeat("0", 40) }, "latitude must be"},
		{"longitude over", func(c *channels.Channel) { c.Longitude = "-180.5" }, "longitude must be a number from -180 to 180"},
		{"longitude sign only", func(c *channels.Channel) { c.Longitude = "-" }, "longitude must be"},
		{"elevation negative", func(c *channels.Channel) { c.Elevation = "-412.5" }, ""},
		{"elevation large", func(c *channels.Channel) { c.Elevation = "123456789012" }, ""},
		{"elevation Inf", func(c *channels.Channel) { c.Elevation = "Inf" }, "elevation must be a number"},
		{"elevation long", func(c *channels.Channel) { c.Elevation = strings.Repeat("9", channels.MaxLocationLen+1) }, "elevation must be"},
		{"metadata max", func(c *channels.Channel) { c.Metadata = strings.Repeat("m", channels.MaxMetadataLen) }, ""},
		{"metadata newlines", func(c *channels.Channel) { c.Metadata = "<a>\n\t<b/>\n</a>" }, ""},
		{"metadata over", func(c *channels.Channel) { c.Metadata = strings.Repeat("m", channels.MaxMetadataLen+1) }, "metadata must be valid UTF-8 of at most 4096 bytes"},
		{"metadata invalid UTF-8", func(c *channels.Channel) { c.Metadata = "\xff" }, "metadata must be"},
		{"tags max", func(c *channels.Channel) { c.Tags = tags(channels.MaxTags) }, ""},
		{"tags over", func(c *channels.Channel) { c.Tags = tags(channels.MaxTags + 1) }, "tags: a channel has at most 30 tags"},
		{"tag empty", func(c *channels.Channel) { c.Tags = []string{""} }, "tags must not be empty"},
		{"tag untrimmed", func(c *channels.Channel) { c.Tags = []string{"a "} }, "tags must not be empty or start or end with a space"},
		{"tag comma", func(c *channels.Channel) { c.Tags = []string{"a,b"} }, `tag "a,b" contains a comma`},
		{"tag long", func(c *channels.Channel) { c.Tags = []string{strings.Repeat("t", channels.MaxTagLen+1)} }, "each tag must be valid UTF-8 of at most 255 bytes"},
		{"tag max", func(c *channels.Channel) { c.Tags = []string{strings.Repeat("t", channels.MaxTagLen)} }, ""},
		{"tag invalid UTF-8", func(c *channels.Channel) { c.Tags = []string{"\xc3"} }, "each tag must be"},
		{"tag control", func(c *channels.Channel) { c.Tags = []string{"a\x00b"} }, "contains a control character"},
		{"url http", func(c *channels.Channel) { c.URL = "http://192.0.2.1:8080/x" }, ""},
		{"url upper scheme", func(c *channels.Channel) { c.URL = "HTTPS://example.com" }, ""},
		{"url max", func(c *channels.Channel) { c.URL = "https://e.com/" + strings.Repeat("p", channels.MaxURLLen-14) }, ""},
		{"url over", func(c *channels.Channel) { c.URL = "https://e.com/" + strings.Repeat("p", channels.MaxURLLen-13) }, "url must be at most 2000 bytes"},
		{"url relative", func(c *channels.Channel) { c.URL = "/station" }, "url must be an absolute http or https URL"},
		{"url no scheme", func(c *channels.Channel) { c.URL = "example.com" }, "url must be an absolute"},
		{"url javascript", func(c *channels.Channel) { c.URL = "javascript:alert(1)" }, "url must be an absolute"},
		{"url ftp", func(c *channels.Channel) { c.URL = "ftp://example.com/" }, "url must be an absolute"},
		{"url no host", func(c *channels.Channel) { c.URL = "https:///path" }, "url must be an absolute"},
		{"url space", func(c *channels.Channel) { c.URL = "https://example.com/a b" }, "url must be an absolute"},
		{"url newline", func(c *channels.Channel) { c.URL = "https://example.com/\nSet-Cookie: x" }, "url must be an absolute"},
		{"url bad escape", func(c *channels.Channel) { c.URL = "https://example.com/%zz" }, "url must be an absolute"},
	} {
		c := validChannel()
		tt.set(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.desc, err)
		case tt.want != "" && err == nil:
			t.Errorf("%s: accepted", tt.desc)
		case tt.want != "" && (!strings.Contains(err.Error(), tt.want) || channels.ErrorCode(err) != channels.EINVALID):
			t.Errorf("%s: %v (%s), want %q", tt.desc, err, channels.ErrorCode(err), tt.want)
		}
	}
}

// ParseTags never panics, and its tags are trimmed, non-empty, distinct
// and taken from the input; a list that fits the bounds validates.
func FuzzParseTags(f *testing.F) {
	for _, tt := range tagCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags := channels.ParseTags(s)
		seen := map[string]bool{}
		for _, tag := range tags {
			if tag == "" || strings.TrimSpace(tag) != tag || strings.Contains(tag, ",") || !strings.Contains(s, tag) || seen[tag] {
				t.Fatalf("ParseTags(%q) = %q", s, tags)
			}
			seen[tag] = true
		}
		if again := channels.ParseTags(strings.Join(tags, ",")); !reflect.DeepEqual(again, tags) {
			t.Fatalf("ParseTags(%q) = %q, parsed again %q", s, tags, again)
		}
		c := validChannel()
		c.Tags = tags
		err := c.Validate()
		fits := len(tags) <= channels.MaxTags && utf8.ValidString(s)
		for _, tag := range tags {
			fits = fits && len(tag) <= channels.MaxTagLen && !strings.ContainsFunc(tag, func(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 })
		}
		if fits != (err == nil) {
			t.Fatalf("tags %q: Validate = %v", tags, err)
		}
	})
}

// Validate never panics on any location, metadata or URL, accepts only
// bounded values, and refuses with EINVALID.
func FuzzValidateSettings(f *testing.F) {
	f.Add("52.5", "-13.4", "34", "meta", "https://example.com/")
	f.Add("90", "180", "-1.", "", "http://[::1]:80/")
	f.Add("1e3", "NaN", "Inf", "\xff", "javascript:alert(1)")
	f.Fuzz(func(t *testing.T, lat, long, elev, meta, u string) {
		c := validChannel()
		c.Latitude, c.Longitude, c.Elevation, c.Metadata, c.URL = lat, long, elev, meta, u
		err := c.Validate()
		if err != nil {
			if channels.ErrorCode(err) != channels.EINVALID || len(err.Error()) > 200 {
				t.Fatalf("Validate: %v", err)
			}
			return
		}
		for _, s := range []string{lat, long, elev} {
			if len(s) > channels.MaxLocationLen || s != "" && !channels.IsDecimal(s) {
				t.Fatalf("accepted location %q", s)
			}
		}
		if len(meta) > channels.MaxMetadataLen || !utf8.ValidString(meta) {
			t.Fatalf("accepted metadata of %d bytes", len(meta))
		}
		lower := strings.ToLower(u)
		if u != "" && (len(u) > channels.MaxURLLen || !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") || strings.ContainsAny(u, " \n\r\t")) {
			t.Fatalf("accepted url %q", u)
		}
	})
}

// The admin service normalises tags under its lock, and a request may
// carry a megabyte of them: normalising must take time in proportion to
// the input, not its square (150,000 distinct tags took half a minute).
// The deadline is hundreds of times what a linear pass needs.
func TestParseTagsLargeInput(t *testing.T) {
	// A megabyte of distinct tags, as much as one admin request carries:
	// a repeat check that scans the tags kept so far made this take half
	// a minute under the admin lock (BenchmarkParseTags measures it).
	in, want := manyTags()
	if got := len(channels.ParseTags(in)); got != want {
		t.Fatalf("got %d tags, want %d", got, want)
	}
}

func manyTags() (string, int) {
	var b strings.Builder
	n := 0
	for ; b.Len() < 1<<20; n++ {
		b.WriteString(strconv.Itoa(n))
		b.WriteByte(',')
	}
	return b.String(), n
}

func BenchmarkParseTags(b *testing.B) {
	in, _ := manyTags()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		channels.ParseTags(in)
	}
}
