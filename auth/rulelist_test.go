package auth

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

func TestParseRule(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Rule
	}{
		{"readwrite home/#", Rule{AccessReadWrite, "home/#"}},
		{"read  tele/%c/SENSOR ", Rule{AccessRead, "tele/%c/SENSOR"}},
		{"write\tzigbee2mqtt/bridge/request/#", Rule{AccessWrite, "zigbee2mqtt/bridge/request/#"}},
		{"deny home/living room/light", Rule{AccessDeny, "home/living room/light"}},
		{" deny #", Rule{AccessDeny, "#"}},
	} {
		got, err := ParseRule(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRule(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if again, err := ParseRule(got.String()); err != nil || again != got {
			t.Errorf("%q does not round-trip: %v, %v", got.String(), again, err)
		}
	}
	for _, in := range []string{"", "home/#", "readwrite", "readwrite ", "rw home/#", "READ home/#",
		"read channels/1/publish", "read $SYS/#", "write devices/x", "read a/#/b", "read " + strings.Repeat("a", MaxRulePattern+1)} {
		if r, err := ParseRule(in); err == nil || channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("ParseRule(%.40q) = %v, %v; want EINVALID", in, r, err)
		}
	}
}

func TestAccessText(t *testing.T) {
	rules := []Rule{{AccessRead, "a"}, {AccessWrite, "b"}, {AccessReadWrite, "c"}, {AccessDeny, "d"}}
	b, err := json.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"Access":"read","Pattern":"a"},{"Access":"write","Pattern":"b"},{"Access":"readwrite","Pattern":"c"},{"Access":"deny","Pattern":"d"}]`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	var back []Rule
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, rules) {
		t.Errorf("round trip: %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`[{"Access":"all","Pattern":"a"}]`), &back); err == nil {
		t.Error("an unknown access decoded")
	}
	if _, err := json.Marshal(Rule{Access: 7, Pattern: "a"}); err == nil {
		t.Error("an access without a name encoded")
	}
}

func TestMergeRules(t *testing.T) {
	have := []Rule{{AccessReadWrite, "home/#"}, {AccessRead, "news"}}
	got, err := MergeRules(have, []Rule{{AccessRead, "home/#"}, {AccessWrite, "cmd/#"}, {AccessDeny, "news"}})
	want := []Rule{{AccessRead, "home/#"}, {AccessDeny, "news"}, {AccessWrite, "cmd/#"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("MergeRules = %v, %v; want %v", got, err, want)
	}
	if have[0].Access != AccessReadWrite {
		t.Error("MergeRules changed its input")
	}
	if _, err := MergeRules(nil, []Rule{{AccessRead, "channels/#"}}); err == nil {
		t.Error("a reserved pattern merged")
	}
	var many []Rule
	for i := range MaxRules {
		many = append(many, Rule{AccessRead, "t/" + string(rune('a'+i%26)) + "/" + strings.Repeat("x", i)})
	}
	if err := CheckRules(many); err != nil {
		t.Fatal(err)
	}
	if _, err := MergeRules(many, []Rule{{AccessRead, "one/more"}}); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Errorf("rule %d accepted: %v", MaxRules+1, err)
	}
	if _, err := MergeRules(many, []Rule{{AccessWrite, many[5].Pattern}}); err != nil {
		t.Errorf("replacing a rule of a full list: %v", err)
	}
}

func TestCheckRules(t *testing.T) {
	if err := CheckRules([]Rule{{AccessRead, "a"}, {AccessWrite, "b"}}); err != nil {
		t.Error(err)
	}
	for _, rules := range [][]Rule{
		{{AccessRead, "a"}, {AccessWrite, "a"}},
		{{AccessRead, "$SYS/#"}},
		{{Access(9), "a"}},
		{{AccessRead, ""}},
	} {
		if err := CheckRules(rules); channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("CheckRules(%v) = %v", rules, err)
		}
	}
}

func TestRemoveRules(t *testing.T) {
	have := []Rule{{AccessReadWrite, "home/#"}, {AccessRead, "news"}, {AccessDeny, "x"}}
	got, err := RemoveRules(have, []string{"news", "x"})
	if err != nil || !reflect.DeepEqual(got, []Rule{{AccessReadWrite, "home/#"}}) {
		t.Fatalf("RemoveRules = %v, %v", got, err)
	}
	if !reflect.DeepEqual(have, []Rule{{AccessReadWrite, "home/#"}, {AccessRead, "news"}, {AccessDeny, "x"}}) {
		t.Error("RemoveRules changed its input")
	}
	_, err = RemoveRules(have, []string{"news", "home/+"})
	if !errors.Is(err, ErrNoRule) || channels.ErrorCode(err) != channels.ENOTFOUND || !strings.Contains(err.Error(), "home/+") {
		t.Errorf("removing a missing pattern: %v", err)
	}
}

func TestRuleTarget(t *testing.T) {
	for _, tg := range []RuleTarget{DeviceRules(3), {Scope: ScopeAnonymous}, {Scope: ScopeEveryone}} {
		if err := tg.Check(); err != nil {
			t.Errorf("%v: %v", tg, err)
		}
	}
	for _, tg := range []RuleTarget{{Scope: ScopeDevice}, {Scope: ScopeAnonymous, Device: 2}, {Scope: "all"}, {}} {
		if err := tg.Check(); channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("%v: %v", tg, err)
		}
	}
	if s := DeviceRules(3).String(); s != "device 3" {
		t.Error(s)
	}
}
