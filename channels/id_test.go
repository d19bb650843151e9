package channels_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

var idCases = []struct {
	in   string
	want uint64 // 0: refused
	msg  string
}{
	{"1", 1, ""},
	{"42", 42, ""},
	{"18446744073709551615", 1<<64 - 1, ""},
	{"", 0, "missing"},
	{"0", 0, "leading zeros"},
	{"01", 0, "leading zeros"},
	{"00", 0, "leading zeros"},
	{"007", 0, "leading zeros"},
	{"18446744073709551616", 0, "too large"},
	{"99999999999999999999", 0, "too large"},
	{strings.Repeat("9", 60000), 0, "too large"},
	{"+1", 0, "decimal number"},
	{"-1", 0, "decimal number"},
	{" 1", 0, "decimal number"},
	{"1 ", 0, "decimal number"},
	{"1e3", 0, "decimal number"},
	{"0x1", 0, "leading zeros"},
	{"١", 0, "decimal number"}, // an Arabic-Indic digit
	{"1/", 0, "decimal number"},
	{"+", 0, "decimal number"},
}

func TestParseID(t *testing.T) {
	for _, tt := range idCases {
		got, err := channels.ParseID(tt.in)
		if tt.want != 0 {
			if err != nil || got != tt.want {
				t.Errorf("ParseID(%.30q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || got != 0 {
			t.Errorf("ParseID(%.30q) = %d, %v; want an error", tt.in, got, err)
			continue
		}
		if !errors.Is(err, channels.ErrTopic) || channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("ParseID(%.30q): %v is not an EINVALID ErrTopic", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.msg) || len(err.Error()) > 200 {
			t.Errorf("ParseID(%.30q): error %.300q should mention %q and be short", tt.in, err, tt.msg)
		}
	}
}

func TestParseIDAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := channels.ParseID("18446744073709551615"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseID allocates %v times, want 0", allocs)
	}
}

func TestLooksLikeID(t *testing.T) {
	for in, want := range map[string]bool{
		"1": true, "01": true, "0": true, "007": true, strings.Repeat("9", 300): true,
		"": false, "1a": false, "a1": false, " 1": false, "+1": false, "-1": false, "1.0": false, "١": false,
	} {
		if got := channels.LooksLikeID(in); got != want {
			t.Errorf("LooksLikeID(%.30q) = %v, want %v", in, got, want)
		}
	}
}

// TestValidateNameLikeID: a sensor topic level that looks like an ID is
// read as one, so no channel may be named like that.
func TestValidateNameLikeID(t *testing.T) {
	base := channels.Channel{Name: "ok", Fields: [8]string{"a"}, WriteKey: "AAAAAAAAAAAAAAAA", ReadKey: "BBBBBBBBBBBBBBBB"}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"1", "02", "0", "18446744073709551616", strings.Repeat("7", 255)} {
		c := base
		c.Name = name
		err := c.Validate()
		if channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "looks like a channel ID") || len(err.Error()) > 200 {
			t.Errorf("Validate with name %.30q: %v, want a short EINVALID naming the rule", name, err)
		}
	}
	for _, name := range []string{"1a", "Room 1", "#1", " 1", "1.5", "١"} {
		c := base
		c.Name = name
		if err := c.Validate(); err != nil {
			t.Errorf("Validate with name %q: %v", name, err)
		}
	}
}

func TestTopicName(t *testing.T) {
	for name, want := range map[string]bool{
		"Greenhouse": true, "Room 1": true, "1": false, "02": false, "a/b": false, "a+": false, "": false,
	} {
		ch := &channels.Channel{ID: 3, Name: name}
		got, ok := channels.TopicName(ch)
		if ok != want || ok && got != name {
			t.Errorf("TopicName(%q) = %q, %v; want ok %v", name, got, ok, want)
		}
	}
}

func FuzzParseID(f *testing.F) {
	for _, tt := range idCases {
		if len(tt.in) < 100 {
			f.Add(tt.in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := channels.ParseID(s)
		if err != nil {
			if id != 0 || !errors.Is(err, channels.ErrTopic) || len(err.Error()) > 200 {
				t.Fatalf("ParseID(%q) = %d, %v", s, id, err)
			}
			return
		}
		// One spelling: what parses is exactly the canonical decimal.
		if id == 0 || strconv.FormatUint(id, 10) != s || !channels.LooksLikeID(s) {
			t.Fatalf("ParseID(%q) = %d, not its one spelling", s, id)
		}
	})
}
