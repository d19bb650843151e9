package admin

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

func rr(a auth.Access, p string) auth.Rule { return auth.Rule{Access: a, Pattern: p} }

// Rules change the same way through the Local and through the socket,
// and the registry the broker reads follows every change at once.
func TestAllowDisallowRules(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			ctx := context.Background()
			l, c := serveLocal(t)
			var s Service = l
			if via == "socket" {
				s = c
			}
			cr, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "ha"})
			if err != nil {
				t.Fatal(err)
			}
			dev := cr.Device
			reg := l.Registry
			may := func(id uint64, want auth.Access, topic string) bool {
				if id == auth.Anonymous {
					return reg.FreeAccess(id, want, topic, "anon-client", "")
				}
				return reg.FreeAccess(id, want, topic, dev.ClientID, dev.Username)
			}
			if may(dev.ID, auth.AccessWrite, "home/x") {
				t.Fatal("a new device may write a free topic")
			}
			got, err := s.AllowRules(ctx, auth.DeviceRules(dev.ID), []auth.Rule{rr(auth.AccessReadWrite, "home/#"), rr(auth.AccessRead, "news")})
			if err != nil || !reflect.DeepEqual(got, []auth.Rule{rr(auth.AccessReadWrite, "home/#"), rr(auth.AccessRead, "news")}) {
				t.Fatalf("allow = %v, %v", got, err)
			}
			if !may(dev.ID, auth.AccessWrite, "home/x") || !may(dev.ID, auth.AccessRead, "news") || may(dev.ID, auth.AccessWrite, "news") {
				t.Fatal("the registry does not follow the allow")
			}
			// The same pattern again replaces its access in place.
			got, err = s.AllowRules(ctx, auth.DeviceRules(dev.ID), []auth.Rule{rr(auth.AccessRead, "home/#")})
			if err != nil || !reflect.DeepEqual(got, []auth.Rule{rr(auth.AccessRead, "home/#"), rr(auth.AccessRead, "news")}) {
				t.Fatalf("re-allow = %v, %v", got, err)
			}
			if may(dev.ID, auth.AccessWrite, "home/x") {
				t.Fatal("write still allowed after home/# became read-only")
			}
			if d, _ := s.Device(ctx, dev.ID); !reflect.DeepEqual(d.Rules, got) {
				t.Fatalf("device rules %v", d.Rules)
			}

			if _, err := s.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeAnonymous}, []auth.Rule{rr(auth.AccessRead, "public/#")}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, []auth.Rule{rr(auth.AccessWrite, "tele/%c/#"), rr(auth.AccessDeny, "public/secret")}); err != nil {
				t.Fatal(err)
			}
			if !may(auth.Anonymous, auth.AccessRead, "public/a") || may(auth.Anonymous, auth.AccessRead, "public/secret") ||
				!may(dev.ID, auth.AccessWrite, "tele/"+dev.ClientID+"/SENSOR") || !may(auth.Anonymous, auth.AccessWrite, "tele/anon-client/x") {
				t.Fatal("anonymous or everyone's rules not applied")
			}

			list, err := s.AccessRules(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := &auth.AccessRules{
				Anonymous: []auth.Rule{rr(auth.AccessRead, "public/#")},
				Everyone:  []auth.Rule{rr(auth.AccessWrite, "tele/%c/#"), rr(auth.AccessDeny, "public/secret")},
				Devices:   []auth.DeviceRuleList{{ID: dev.ID, Name: "ha", Username: dev.Username, Rules: got}},
			}
			if !reflect.DeepEqual(list, want) {
				t.Fatalf("AccessRules =\n%+v\nwant\n%+v", list, want)
			}

			// Disallow removes by pattern; a missing one changes nothing.
			_, err = s.DisallowRules(ctx, auth.DeviceRules(dev.ID), []string{"news", "home/+"})
			if !errors.Is(err, auth.ErrNoRule) || channels.ErrorCode(err) != channels.ENOTFOUND || !strings.Contains(err.Error(), `"home/+"`) {
				t.Fatalf("disallow of a missing pattern: %v", err)
			}
			if !may(dev.ID, auth.AccessRead, "news") {
				t.Fatal("a failed disallow removed a rule")
			}
			got, err = s.DisallowRules(ctx, auth.DeviceRules(dev.ID), []string{"news"})
			if err != nil || !reflect.DeepEqual(got, []auth.Rule{rr(auth.AccessRead, "home/#")}) || may(dev.ID, auth.AccessRead, "news") {
				t.Fatalf("disallow = %v, %v", got, err)
			}
			if got, err := s.DisallowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, []string{"tele/%c/#", "public/secret"}); err != nil || len(got) != 0 {
				t.Fatalf("disallow everyone's = %v, %v", got, err)
			}
			if may(dev.ID, auth.AccessWrite, "tele/"+dev.ClientID+"/SENSOR") || !may(auth.Anonymous, auth.AccessRead, "public/secret") {
				t.Fatal("everyone's rules still apply")
			}

			// Refusals.
			for _, c := range []struct {
				target auth.RuleTarget
				rules  []auth.Rule
				code   string
			}{
				{auth.DeviceRules(99), []auth.Rule{rr(auth.AccessRead, "a")}, channels.ENOTFOUND},
				{auth.RuleTarget{Scope: "all"}, []auth.Rule{rr(auth.AccessRead, "a")}, channels.EINVALID},
				{auth.RuleTarget{Scope: auth.ScopeDevice}, []auth.Rule{rr(auth.AccessRead, "a")}, channels.EINVALID},
				{auth.DeviceRules(dev.ID), []auth.Rule{rr(auth.AccessRead, "channels/1/subscribe")}, channels.EINVALID},
				{auth.RuleTarget{Scope: auth.ScopeAnonymous}, []auth.Rule{rr(auth.AccessRead, "$SYS/#")}, channels.EINVALID},
				{auth.RuleTarget{Scope: auth.ScopeAnonymous}, []auth.Rule{rr(auth.AccessRead, strings.Repeat("a", auth.MaxRulePattern+1))}, channels.EINVALID},
				{auth.RuleTarget{Scope: auth.ScopeAnonymous}, nil, channels.EINVALID},
			} {
				if _, err := s.AllowRules(ctx, c.target, c.rules); channels.ErrorCode(err) != c.code {
					t.Errorf("allow %v on %v: %v, want %s", c.rules, c.target, err, c.code)
				}
			}
			var many []auth.Rule
			for i := range auth.MaxRules {
				many = append(many, rr(auth.AccessRead, "t/"+strings.Repeat("x", i)))
			}
			if _, err := s.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, many); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, []auth.Rule{rr(auth.AccessRead, "one/more")}); channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "at most 100") {
				t.Errorf("rule 101: %v", err)
			}
		})
	}
}

// Rules survive a restart: a new Local loads them into its registry.
func TestRulesLoadedAtStart(t *testing.T) {
	ctx := context.Background()
	l, _ := serveLocal(t)
	cr, err := l.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Rules: []auth.Rule{rr(auth.AccessWrite, "d/#")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeAnonymous}, []auth.Rule{rr(auth.AccessRead, "pub/#")}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AllowRules(ctx, auth.RuleTarget{Scope: auth.ScopeEveryone}, []auth.Rule{rr(auth.AccessRead, "all/%u")}); err != nil {
		t.Fatal(err)
	}
	again, err := NewLocal(ctx, l.db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	d := cr.Device
	r := again.Registry
	if !r.FreeAccess(d.ID, auth.AccessWrite, "d/x", d.ClientID, d.Username) || !r.FreeAccess(auth.Anonymous, auth.AccessRead, "pub/x", "c", "") ||
		!r.FreeAccess(d.ID, auth.AccessRead, "all/"+d.Username, d.ClientID, d.Username) {
		t.Fatal("rules not loaded at start")
	}
}

func TestDeviceRulesOnCreateAndUpdate(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			ctx := context.Background()
			l, c := serveLocal(t)
			var s Service = l
			if via == "socket" {
				s = c
			}
			rules := []auth.Rule{rr(auth.AccessReadWrite, "zigbee2mqtt/#"), rr(auth.AccessDeny, "zigbee2mqtt/bridge/#")}
			cr, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "z2m", Rules: rules})
			if err != nil || !reflect.DeepEqual(cr.Device.Rules, rules) {
				t.Fatalf("create: %+v, %v", cr, err)
			}
			id := cr.Device.ID
			if !l.Registry.FreeAccess(id, auth.AccessWrite, "zigbee2mqtt/plug", cr.Device.ClientID, cr.Device.Username) {
				t.Fatal("created rules not in the registry")
			}
			d, err := s.UpdateDevice(ctx, id, auth.DeviceUpdate{Rules: &[]auth.Rule{rr(auth.AccessRead, "x")}})
			if err != nil || !reflect.DeepEqual(d.Rules, []auth.Rule{rr(auth.AccessRead, "x")}) {
				t.Fatalf("update: %+v, %v", d, err)
			}
			var none []auth.Rule
			if d, err = s.UpdateDevice(ctx, id, auth.DeviceUpdate{Rules: &none}); err != nil || len(d.Rules) != 0 {
				t.Fatalf("clearing: %+v, %v", d, err)
			}
			// Other changes keep the rules.
			if _, err := s.UpdateDevice(ctx, id, auth.DeviceUpdate{Rules: &rules}); err != nil {
				t.Fatal(err)
			}
			if d, _ = s.UpdateDevice(ctx, id, auth.DeviceUpdate{Name: strPtr("z")}); !reflect.DeepEqual(d.Rules, rules) {
				t.Fatalf("rename lost the rules: %v", d.Rules)
			}
			for _, bad := range [][]auth.Rule{
				{rr(auth.AccessRead, "a"), rr(auth.AccessWrite, "a")},
				{rr(auth.AccessRead, "devices/1")},
			} {
				if _, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "bad", Rules: bad}); channels.ErrorCode(err) != channels.EINVALID {
					t.Errorf("create with %v: %v", bad, err)
				}
				if _, err := s.UpdateDevice(ctx, id, auth.DeviceUpdate{Rules: &bad}); channels.ErrorCode(err) != channels.EINVALID {
					t.Errorf("update with %v: %v", bad, err)
				}
			}
			if d, _ := s.Device(ctx, id); !reflect.DeepEqual(d.Rules, rules) {
				t.Fatalf("refused updates changed the rules: %v", d.Rules)
			}
		})
	}
}

func strPtr(s string) *string { return &s }

func TestImportACL(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			ctx := context.Background()
			l, c := serveLocal(t)
			var s Service = l
			if via == "socket" {
				s = c
			}
			ha, _ := s.CreateDevice(ctx, auth.DeviceSpec{Name: "homeassistant"})
			z, _ := s.CreateDevice(ctx, auth.DeviceSpec{Name: "zigbee2mqtt", Rules: []auth.Rule{rr(auth.AccessRead, "old/#"), rr(auth.AccessRead, "zigbee2mqtt/#")}})
			s.CreateDevice(ctx, auth.DeviceSpec{Name: "twin"})
			s.CreateDevice(ctx, auth.DeviceSpec{Name: "twin"})
			parse := func(file string) *auth.ACL {
				acl, err := auth.ParseACL(strings.NewReader(file))
				if err != nil {
					t.Fatal(err)
				}
				return acl
			}
			file := "topic read public/#\npattern write tele/%c/#\nuser homeassistant\ntopic readwrite homeassistant/#\n" +
				"user " + z.Device.Username + "\ntopic readwrite zigbee2mqtt/#\n"

			// Unknown users: an error listing them all, nothing applied.
			_, err := s.ImportACL(ctx, parse(file+"user ghost\ntopic a\nuser spook\ntopic b\n"), ACLImportOptions{})
			if channels.ErrorCode(err) != channels.ENOTFOUND || !strings.Contains(err.Error(), `"ghost", "spook"`) || !strings.Contains(err.Error(), "nothing was imported") {
				t.Fatalf("unknown users: %v", err)
			}
			_, err = s.ImportACL(ctx, parse(file+"user twin\ntopic a\n"), ACLImportOptions{})
			if channels.ErrorCode(err) != channels.ECONFLICT || !strings.Contains(err.Error(), `"twin"`) {
				t.Fatalf("ambiguous user: %v", err)
			}
			_, err = s.ImportACL(ctx, parse(file+"user zigbee2mqtt\ntopic a\n"), ACLImportOptions{})
			if channels.ErrorCode(err) != channels.ECONFLICT {
				t.Fatalf("one device named twice: %v", err)
			}
			if list, _ := s.AccessRules(ctx); len(list.Anonymous) != 0 || len(list.Everyone) != 0 || len(list.Devices) != 1 {
				t.Fatalf("a failed import changed rules: %+v", list)
			}

			// A dry run reports and changes nothing.
			res, err := s.ImportACL(ctx, parse(file), ACLImportOptions{DryRun: true})
			if err != nil || !res.DryRun || len(res.Lists) != 4 {
				t.Fatalf("dry run: %+v, %v", res, err)
			}
			wantZ := []auth.Rule{rr(auth.AccessRead, "old/#"), rr(auth.AccessReadWrite, "zigbee2mqtt/#")}
			if l3 := res.Lists[3]; l3.Target != auth.DeviceRules(z.Device.ID) || l3.DeviceName != "zigbee2mqtt" || l3.FromFile != 1 || !reflect.DeepEqual(l3.Rules, wantZ) {
				t.Fatalf("dry run's zigbee2mqtt list: %+v", l3)
			}
			if l.Registry.FreeAccess(auth.Anonymous, auth.AccessRead, "public/x", "c", "") {
				t.Fatal("a dry run changed the registry")
			}

			res, err = s.ImportACL(ctx, parse(file), ACLImportOptions{})
			if err != nil || res.DryRun {
				t.Fatalf("import: %+v, %v", res, err)
			}
			r := l.Registry
			if !r.FreeAccess(auth.Anonymous, auth.AccessRead, "public/x", "c", "") ||
				!r.FreeAccess(ha.Device.ID, auth.AccessWrite, "homeassistant/status", ha.Device.ClientID, ha.Device.Username) ||
				!r.FreeAccess(ha.Device.ID, auth.AccessWrite, "tele/"+ha.Device.ClientID+"/x", ha.Device.ClientID, ha.Device.Username) ||
				!r.FreeAccess(z.Device.ID, auth.AccessRead, "old/x", z.Device.ClientID, z.Device.Username) {
				t.Fatal("imported rules not in the registry")
			}
			if d, _ := s.Device(ctx, z.Device.ID); !reflect.DeepEqual(d.Rules, wantZ) {
				t.Fatalf("merged rules %v", d.Rules)
			}

			// Replace: the lists the file names hold exactly its rules.
			if _, err := s.ImportACL(ctx, parse(file), ACLImportOptions{Replace: true}); err != nil {
				t.Fatal(err)
			}
			if d, _ := s.Device(ctx, z.Device.ID); !reflect.DeepEqual(d.Rules, []auth.Rule{rr(auth.AccessReadWrite, "zigbee2mqtt/#")}) {
				t.Fatalf("replaced rules %v", d.Rules)
			}
			if res, err := s.ImportACL(ctx, parse("# nothing\n"), ACLImportOptions{}); err != nil || len(res.Lists) != 0 {
				t.Fatalf("empty file: %+v, %v", res, err)
			}
			// Over the limit: refused, nothing applied.
			var b strings.Builder
			b.WriteString("user homeassistant\n")
			for i := range auth.MaxRules {
				b.WriteString("topic read m/" + strings.Repeat("x", i) + "\n")
			}
			if _, err := s.ImportACL(ctx, parse(b.String()), ACLImportOptions{}); channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "homeassistant") {
				t.Fatalf("over the limit: %v", err)
			}
		})
	}
}

// The socket's ImportACL checks the rules it receives, whoever sent them.
func TestImportACLChecksRules(t *testing.T) {
	l, _ := serveLocal(t)
	ctx := context.Background()
	for _, acl := range []*auth.ACL{
		{Anonymous: []auth.Rule{rr(auth.AccessRead, "channels/#")}},
		{Everyone: []auth.Rule{rr(auth.Access(8), "a")}},
		{Users: []auth.ACLUser{{Name: "x", Rules: []auth.Rule{rr(auth.AccessRead, "a"), rr(auth.AccessRead, "a")}}}},
	} {
		if _, err := l.ImportACL(ctx, acl, ACLImportOptions{}); channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("%+v: %v", acl, err)
		}
	}
}
