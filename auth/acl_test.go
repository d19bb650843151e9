package auth

import (
	"reflect"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

func TestParseACL(t *testing.T) {
	cases := []struct {
		name, file string
		want       ACL
	}{
		{"empty", "", ACL{}},
		{"comments and blanks", "# all\n\n   # indented comment\n\t\n", ACL{}},
		{"anonymous before any user", "topic read public/#\ntopic  write  cmd/x\n", ACL{
			Anonymous: []Rule{{AccessRead, "public/#"}, {AccessWrite, "cmd/x"}}}},
		{"access left out is readwrite", "topic home/#\n", ACL{Anonymous: []Rule{{AccessReadWrite, "home/#"}}}},
		{"users and patterns", strings.Join([]string{
			"# Home Assistant",
			"user homeassistant",
			"topic readwrite homeassistant/#",
			"topic read zigbee2mqtt/#",
			"",
			"pattern write tele/%c/#",
			"user zigbee2mqtt",
			"topic readwrite zigbee2mqtt/#",
			"topic deny zigbee2mqtt/bridge/config/#",
			"pattern read users/%u/#",
			"user homeassistant", // named again: its section goes on
			"topic write cmnd/#",
		}, "\r\n"), ACL{
			Everyone: []Rule{{AccessWrite, "tele/%c/#"}, {AccessRead, "users/%u/#"}},
			Users: []ACLUser{
				{"homeassistant", []Rule{{AccessReadWrite, "homeassistant/#"}, {AccessRead, "zigbee2mqtt/#"}, {AccessWrite, "cmnd/#"}}},
				{"zigbee2mqtt", []Rule{{AccessReadWrite, "zigbee2mqtt/#"}, {AccessDeny, "zigbee2mqtt/bridge/config/#"}}},
			}}},
		{"a topic that looks like an access", "topic read read\ntopic deny\n", ACL{
			Anonymous: []Rule{{AccessRead, "read"}, {AccessReadWrite, "deny"}}}},
		{"spaces in names and topics", "user Living Room Plug\ntopic read home/living room/# \n", ACL{
			Users: []ACLUser{{"Living Room Plug", []Rule{{AccessRead, "home/living room/#"}}}}}},
		{"one pattern twice adds up", "topic read a\ntopic write a\ntopic read b\ntopic deny b\ntopic read b\n", ACL{
			Anonymous: []Rule{{AccessReadWrite, "a"}, {AccessDeny, "b"}}}},
		{"no newline at the end", "pattern readwrite %c/#", ACL{Everyone: []Rule{{AccessReadWrite, "%c/#"}}}},
	}
	for _, c := range cases {
		got, err := ParseACL(strings.NewReader(c.file))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, *got, c.want)
		}
	}
}

func TestParseACLRefuses(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"topic read a\nuser\n", "line 2: user without a name"},
		{"# x\ntopic read channels/1/subscribe\n", "line 2: topic pattern \"channels/1/subscribe\": channels/, devices/ and $ topics"},
		{"topic read $SYS/#\n", "line 1: "},
		{"user a\n\n\npattern write devices/%c\n", "line 4: "},
		{"topic read a/#/b\n", "line 1: topic pattern \"a/#/b\": # must be the last level"},
		{"topic\n", "line 1: topic line without a topic"},
		{"pattern\n", "line 1: pattern line without a topic"},
		{"user a\ntopic read tele/%c/x\n", "line 2: %c and %u are substituted only in pattern lines"},
		{"topic read users/%u\n", "line 1: %c and %u"},
		{"auth_plugin x\n", `line 1: unknown keyword "auth_plugin"`},
		{"Topic read a\n", `line 1: unknown keyword "Topic"`},
		{"topic read " + strings.Repeat("a", MaxRulePattern+1) + "\n", "line 1: a rule's topic pattern is longer than 1024 bytes"},
		{"topic read a\x00b\n", "line 1: "},
		{"user a\xffb\n", "line 1: user name is not valid text"},
		{"user " + strings.Repeat("n", channels.MaxNameLen+1) + "\n", "line 1: user name"},
		{strings.Repeat("x", MaxACLFile+1), "larger than"},
	} {
		_, err := ParseACL(strings.NewReader(c.file))
		if err == nil || channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseACL(%.50q) = %v; want EINVALID with %q", c.file, err, c.want)
		}
	}
	var b strings.Builder
	b.WriteString("user many\n")
	for i := range MaxRules + 1 {
		b.WriteString("topic read t/" + strings.Repeat("x", i) + "\n")
	}
	if _, err := ParseACL(strings.NewReader(b.String())); err == nil || !strings.Contains(err.Error(), "line 102: more than 100 rules") {
		t.Errorf("too many rules: %v", err)
	}
}

// FuzzParseACL checks that any file either parses into rules that are
// all valid, one per pattern in each list, or is refused with a line
// number, without a panic.
func FuzzParseACL(f *testing.F) {
	f.Add("# c\nuser a\ntopic read a/#\npattern write tele/%c/#\n")
	f.Add("topic deny x\ntopic x\nuser b c\ntopic readwrite $SYS/#\n")
	f.Add("pattern read %u/+/#\r\nuser\n")
	f.Fuzz(func(t *testing.T, file string) {
		acl, err := ParseACL(strings.NewReader(file))
		if err != nil {
			if channels.ErrorCode(err) != channels.EINVALID {
				t.Fatalf("error without EINVALID: %v", err)
			}
			return
		}
		lists := [][]Rule{acl.Anonymous, acl.Everyone}
		names := map[string]bool{}
		for _, u := range acl.Users {
			if u.Name == "" || names[u.Name] {
				t.Fatalf("user %q empty or twice", u.Name)
			}
			names[u.Name] = true
			lists = append(lists, u.Rules)
		}
		for _, l := range lists {
			if err := CheckRules(l); err != nil {
				t.Fatalf("parsed an invalid list %v: %v", l, err)
			}
		}
	})
}

// FuzzParseRule checks that a parsed rule is valid and reads back the
// same from its String.
func FuzzParseRule(f *testing.F) {
	f.Add("readwrite home/#")
	f.Add("deny  a b ")
	f.Add("read\t$SYS/#")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if err := CheckRules([]Rule{r}); err != nil {
			t.Fatalf("ParseRule(%q) = %v, invalid: %v", s, r, err)
		}
		if again, err := ParseRule(r.String()); err != nil || again != r {
			t.Fatalf("%q does not round-trip: %v, %v", r.String(), again, err)
		}
	})
}
