package httpd

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

func TestParseGrants(t *testing.T) {
	cases := []struct {
		form string
		want []auth.Grant
		err  string
	}{
		{"", []auth.Grant{}, ""},
		{"channel=3&publish=3&subscribe=3", []auth.Grant{{ChannelID: 3, Publish: true, Subscribe: true}}, ""},
		{"channel=3&channel=1&subscribe=1", []auth.Grant{{ChannelID: 3, Publish: false, Subscribe: false}, {ChannelID: 1, Publish: false, Subscribe: true}}, ""},
		{"channel=5&publish=5&channel=2&publish=2&subscribe=5", []auth.Grant{{ChannelID: 5, Publish: true, Subscribe: true}, {ChannelID: 2, Publish: true, Subscribe: false}}, ""},
		{"channel=abc", nil, `channel "abc" is not a channel ID`},
		{"channel=0", nil, "not a channel ID"},
		{"channel=-1", nil, "not a channel ID"},
		{"channel=" + strings.Repeat("9", 40), nil, "…"},
		{"channel=3&channel=3", nil, "channel 3 is listed twice"},
		{"channel=3&publish=4", nil, `publish names channel "4", which is not among`},
		{"channel=3&subscribe=x", nil, "subscribe names channel"},
		{"channel=3&publish=3&publish=3", nil, "more publish boxes than channels"},
		{strings.Repeat("channel=1&", maxGrantRows+1), nil, "at most 256"},
	}
	for _, c := range cases {
		f, err := url.ParseQuery(c.form)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseGrants(f)
		if c.err != "" {
			if err == nil || channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%.60q: err %v, want one containing %q", c.form, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%q: %v %v, want %v", c.form, got, err, c.want)
		}
	}
}

// FuzzParseGrants: any form either parses into grants on distinct
// channels, each right naming a listed channel, or is refused as invalid
// with a bounded message.
func FuzzParseGrants(f *testing.F) {
	f.Add("channel=3&publish=3&subscribe=3")
	f.Add("channel=1&channel=2&subscribe=2&publish=1")
	f.Add("channel=3&channel=3")
	f.Add("channel=%00&publish=")
	f.Fuzz(func(t *testing.T, form string) {
		v, err := url.ParseQuery(form)
		if err != nil {
			return
		}
		got, err := parseGrants(v)
		if err != nil {
			if channels.ErrorCode(err) != channels.EINVALID || len(err.Error()) > 200 {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(got) != len(v["channel"]) {
			t.Fatalf("%d grants from %d rows", len(got), len(v["channel"]))
		}
		seen := map[uint64]bool{}
		for _, g := range got {
			if g.ChannelID == 0 || seen[g.ChannelID] {
				t.Fatalf("grants %v", got)
			}
			seen[g.ChannelID] = true
		}
	})
}

func TestParseRulesBox(t *testing.T) {
	got, err := parseRulesBox("readwrite homeassistant/#\r\n\n  deny homeassistant/secret  \nwrite tele/%c/#\n")
	want := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "homeassistant/#"}, {Access: auth.AccessDeny, Pattern: "homeassistant/secret"}, {Access: auth.AccessWrite, Pattern: "tele/%c/#"}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := parseRulesBox(" \n\n"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty box: %v, %v", got, err)
	}
	var b strings.Builder
	for i := range auth.MaxRules {
		b.WriteString("read t/" + strings.Repeat("x", i) + "\n")
	}
	full := b.String()
	if got, err := parseRulesBox(full); err != nil || len(got) != auth.MaxRules {
		t.Fatalf("%d rules: %v", auth.MaxRules, err)
	}
	for box, want := range map[string]string{
		"read a\nread channels/1/subscribe": "access rule on line 2: topic pattern \"channels/1/subscribe\": channels/, devices/ and $ topics",
		"\n\nall a":                         "access rule on line 3: access rule \"all a\": begin it with read, write, readwrite or deny",
		"read a\nwrite a":                   `topic pattern "a" is given twice`,
		"read " + strings.Repeat("x", 1025): "line 1: a rule's topic pattern is longer than 1024 bytes",
		"read a\n" + full:                   "a device has at most 100",
	} {
		if _, err := parseRulesBox(box); err == nil || channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: %v, want %q", box, err, want)
		}
	}
}
