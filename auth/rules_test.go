package auth

import "testing"

func TestMatchRule(t *testing.T) {
	cases := []struct {
		pattern, topic, client, user string
		want                         bool
	}{
		{"home/#", "home", "", "", true},
		{"home/#", "home/kitchen/temp", "", "", true},
		{"home/#", "homes/x", "", "", false},
		{"home/+/temp", "home/kitchen/temp", "", "", true},
		{"home/+/temp", "home/kitchen/hum", "", "", false},
		{"home/+/temp", "home/temp", "", "", false},
		{"home/+", "home/", "", "", true}, // an empty level is a level
		{"home/+/temp", "home/#", "", "", false},
		{"home/+/temp", "home/+/temp", "", "", true},
		{"home/#", "home/+/temp", "", "", true},
		{"#", "anything/at/all", "", "", true},
		{"tele/%c/#", "tele/plug1/SENSOR", "plug1", "", true},
		{"tele/%c/#", "tele/plug2/SENSOR", "plug1", "", false},
		{"tele/%c/#", "tele/%c/SENSOR", "", "", false},
		{"tele/%c/#", "tele/+/SENSOR", "+", "", false},
		{"users/%u/in", "users/ann/in", "c", "ann", true},
		{"users/%u/in", "users/bob/in", "c", "ann", false},
		{"users/%u/in", "users//in", "c", "", false},
		{"a/b", "a/b/c", "", "", false},
		{"a/b/c", "a/b", "", "", false},
		{"a", "a", "", "", true},
	}
	for _, c := range cases {
		if got := MatchRule(c.pattern, c.topic, c.client, c.user); got != c.want {
			t.Errorf("MatchRule(%q, %q, %q, %q) = %v, want %v", c.pattern, c.topic, c.client, c.user, got, c.want)
		}
	}
}

func TestAllowsDenyFirst(t *testing.T) {
	rules := []Rule{{AccessReadWrite, "home/#"}, {AccessDeny, "home/secret/#"}, {AccessRead, "news"}}
	for _, c := range []struct {
		want  Access
		topic string
		ok    bool
	}{
		{AccessWrite, "home/kitchen", true},
		{AccessRead, "home/kitchen", true},
		{AccessRead, "home/secret/x", false},
		{AccessWrite, "news", false},
		{AccessRead, "news", true},
		{AccessRead, "other", false},
	} {
		if got := Allows(rules, c.want, c.topic, "", ""); got != c.ok {
			t.Errorf("Allows(%v, %q) = %v, want %v", c.want, c.topic, got, c.ok)
		}
	}
}

func TestFreeAccessDefaultDeny(t *testing.T) {
	r := NewRegistry()
	r.PutDevice(&Device{ID: 1, Username: "u", ClientID: "u", Rules: []Rule{{AccessWrite, "home/#"}}})
	if !r.FreeAccess(1, AccessWrite, "home/x", "u", "u") || r.FreeAccess(1, AccessRead, "home/x", "u", "u") {
		t.Fatal("device rules not applied")
	}
	if r.FreeAccess(2, AccessWrite, "home/x", "v", "v") || r.FreeAccess(Anonymous, AccessRead, "home/x", "a", "") {
		t.Fatal("no rule must mean no access")
	}
	r.SetAnonymousRules([]Rule{{AccessRead, "public/#"}})
	if !r.FreeAccess(Anonymous, AccessRead, "public/a", "a", "") || r.FreeAccess(Anonymous, AccessRead, "channels/1/subscribe", "a", "") {
		t.Fatal("anonymous rules")
	}
	r.SetAnonymousRules([]Rule{{AccessReadWrite, "#"}})
	if r.FreeAccess(Anonymous, AccessWrite, "channels/1/publish", "a", "") || r.FreeAccess(Anonymous, AccessRead, "$SYS/x", "a", "") {
		t.Fatal("a rule must never reach a reserved tree")
	}
}

func TestValidPattern(t *testing.T) {
	for _, p := range []string{"home/#", "+", "#", "tele/%c/SENSOR", "a//b"} {
		if err := ValidPattern(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "channels/#", "devices/1/x", "$SYS/#", "a/#/b", "a/b#", "a+/b", "x\x00y"} {
		if err := ValidPattern(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}
