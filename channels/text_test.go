package channels_test

import (
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

func TestValidText(t *testing.T) {
	for _, tc := range []struct {
		s         string
		max       int
		multiline bool
		want      bool
	}{
		{"Greenhouse", 255, false, true},
		{"Gewächshaus 温室", 255, false, true},
		{"", 255, false, true},
		{"a\x1b[31mred", 255, false, false}, // ESC: recolours a terminal
		{"a\x1b[31mred", 2000, true, false}, // not even in descriptions
		{"two\nlines", 255, false, false},   // a name is one line
		{"two\nlines\tand\r\n", 2000, true, true},
		{"bell\a", 2000, true, false},
		{"del\x7f", 255, false, false},
		{"c1\u0085", 255, false, false}, // NEL, a C1 control
		{"bad\xffutf8", 255, false, false},
		{strings.Repeat("a", 256), 255, false, false},
		{strings.Repeat("a", 255), 255, false, true},
	} {
		if got := channels.ValidText(tc.s, tc.max, tc.multiline); got != tc.want {
			t.Errorf("ValidText(%q, %d, %v) = %v, want %v", tc.s, tc.max, tc.multiline, got, tc.want)
		}
	}
}

func TestValidateRefusesControlCharacters(t *testing.T) {
	base := func() *channels.Channel {
		return &channels.Channel{Name: "ok", Fields: channels.DefaultFields(),
			WriteKey: "AAAAAAAAAAAAAAAA", ReadKey: "BBBBBBBBBBBBBBBB"}
	}
	if err := base().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*channels.Channel){
		"name":        func(c *channels.Channel) { c.Name = "x\x1b]0;pwned\a" },
		"description": func(c *channels.Channel) { c.Description = "x\x1b[2J" },
		"label":       func(c *channels.Channel) { c.Fields[0] = "t\x00" },
		"metadata":    func(c *channels.Channel) { c.Metadata = "{}\x1b[1A" },
	} {
		c := base()
		mutate(c)
		if err := c.Validate(); channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "control characters") {
			t.Errorf("%s with a control character: %v", name, err)
		}
	}
	c := base()
	c.Description, c.Metadata = "line 1\nline 2\ttab", "{\n  \"a\": 1\n}\r\n"
	if err := c.Validate(); err != nil {
		t.Errorf("multi-line description and metadata refused: %v", err)
	}
}
