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
	for _, p := range []string{"", "channels/#", "devices/1/x", "$SYS/#", "a/#/b", "a/b#", "a+/b", "x\x00y", "a\nb", "a\tb", "a\x7fb", "a\u0085b", "\xff"} {
		if err := ValidPattern(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestFreeAccessCommonRules(t *testing.T) {
	r := NewRegistry()
	r.PutDevice(&Device{ID: 1, Username: "ann", ClientID: "ann", Rules: []Rule{{AccessReadWrite, "home/#"}}})
	r.PutDevice(&Device{ID: 2, Username: "bob", ClientID: "bob"})
	r.SetAnonymousRules([]Rule{{AccessRead, "public/#"}})
	r.SetCommonRules([]Rule{
		{AccessReadWrite, "tele/%c/#"},
		{AccessRead, "users/%u/#"},
		{AccessDeny, "home/secret/#"},
		{AccessDeny, "public/private"},
	})
	for _, c := range []struct {
		dev                     uint64
		want                    Access
		topic, client, username string
		ok                      bool
	}{
		{1, AccessWrite, "home/kitchen", "ann", "ann", true},
		{1, AccessWrite, "tele/ann/SENSOR", "ann", "ann", true}, // everyone's, with %c
		{2, AccessWrite, "tele/bob/SENSOR", "bob", "bob", true}, // a device without rules of its own
		{2, AccessWrite, "tele/ann/SENSOR", "bob", "bob", false},
		{2, AccessRead, "users/bob/x", "bob", "bob", true},
		{2, AccessWrite, "users/bob/x", "bob", "bob", false},
		{1, AccessRead, "home/secret/code", "ann", "ann", false}, // everyone's deny beats the device's allow
		{2, AccessRead, "home/kitchen", "bob", "bob", false},
		{Anonymous, AccessRead, "public/news", "x", "", true},
		{Anonymous, AccessRead, "public/private", "x", "", false},   // everyone's deny applies to anonymous too
		{Anonymous, AccessWrite, "tele/x/SENSOR", "x", "", true},    // so do everyone's allows
		{Anonymous, AccessRead, "users//x", "x", "", false},         // %u never matches without a username
		{3, AccessWrite, "tele/gone/SENSOR", "gone", "gone", false}, // a deleted device gets nothing
	} {
		if got := r.FreeAccess(c.dev, c.want, c.topic, c.client, c.username); got != c.ok {
			t.Errorf("FreeAccess(%d, %v, %q, %q, %q) = %v, want %v", c.dev, c.want, c.topic, c.client, c.username, got, c.ok)
		}
	}
	// A device's deny beats everyone's allow as well.
	r.PutDevice(&Device{ID: 2, Username: "bob", ClientID: "bob", Rules: []Rule{{AccessDeny, "tele/#"}}})
	if r.FreeAccess(2, AccessWrite, "tele/bob/SENSOR", "bob", "bob") {
		t.Error("the device's deny must win over everyone's allow")
	}
	// The lists are the registry's own copies, and changes apply at once.
	common := r.CommonRules()
	common[0].Pattern = "x"
	if r.CommonRules()[0].Pattern != "tele/%c/#" {
		t.Error("CommonRules must return a copy")
	}
	r.SetCommonRules(nil)
	if r.FreeAccess(1, AccessWrite, "tele/ann/SENSOR", "ann", "ann") || !r.FreeAccess(1, AccessRead, "home/secret/code", "ann", "ann") {
		t.Error("cleared common rules still apply")
	}
}
