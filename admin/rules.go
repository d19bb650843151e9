package admin

import (
	"context"
	"fmt"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// ACLImportOptions tune ImportACL.
type ACLImportOptions struct {
	// Replace makes each list the file gives rules for hold exactly
	// those; otherwise the file's rules are added as AllowRules adds.
	Replace bool `json:"replace"`
	// DryRun reports what the import would do and changes nothing.
	DryRun bool `json:"dry_run"`
}

// ACLImportResult is what an import did, or would do.
type ACLImportResult struct {
	DryRun  bool `json:"dry_run"`
	Replace bool `json:"replace"`
	// Lists are the lists the file gives rules for, anonymous first, then
	// everyone, then the users in the file's order.
	Lists []ACLImportList `json:"lists"`
}

// ACLImportList is one list an import changes.
type ACLImportList struct {
	Target auth.RuleTarget `json:"target"`
	// User is the file's user name, DeviceName the device it named;
	// both "" for anonymous and everyone.
	User       string `json:"user,omitempty"`
	DeviceName string `json:"device_name,omitempty"`
	// FromFile is how many rules the file gives the list.
	FromFile int `json:"from_file"`
	// Rules is the list after the import.
	Rules []auth.Rule `json:"rules"`
}

// AllowRules adds rules to the list of target. A rule whose pattern the
// list has already replaces that rule's access, so a list holds one rule
// per pattern and the last allow said what it is. The broker checks the
// registry on every packet, so live connections see the change at once.
// It returns the list after the change.
func (l *Local) AllowRules(ctx context.Context, target auth.RuleTarget, rules []auth.Rule) ([]auth.Rule, error) {
	if len(rules) == 0 {
		return nil, channels.Errorf(channels.EINVALID, "give at least one rule")
	}
	return l.changeRules(ctx, target, func(have []auth.Rule) ([]auth.Rule, error) {
		return auth.MergeRules(have, rules)
	})
}

// DisallowRules removes the rules on patterns from the list of target:
// ENOTFOUND wrapping auth.ErrNoRule, and no change, when one of them has
// no rule there. It returns the list after the change.
func (l *Local) DisallowRules(ctx context.Context, target auth.RuleTarget, patterns []string) ([]auth.Rule, error) {
	if len(patterns) == 0 {
		return nil, channels.Errorf(channels.EINVALID, "give at least one topic pattern")
	}
	return l.changeRules(ctx, target, func(have []auth.Rule) ([]auth.Rule, error) {
		out, err := auth.RemoveRules(have, patterns)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", target, err)
		}
		return out, nil
	})
}

// changeRules replaces the list of target with change's result, in the
// store and then in the registry.
func (l *Local) changeRules(ctx context.Context, target auth.RuleTarget, change func([]auth.Rule) ([]auth.Rule, error)) ([]auth.Rule, error) {
	if err := target.Check(); err != nil {
		return nil, err
	}
	var out []auth.Rule
	err := l.change(ctx, func(ctx context.Context) (func(), error) {
		have, err := l.rulesOf(ctx, target)
		if err != nil {
			return nil, err
		}
		if out, err = change(have); err != nil {
			return nil, err
		}
		var c auth.RulesChange
		switch target.Scope {
		case auth.ScopeDevice:
			c.Devices = map[uint64][]auth.Rule{target.Device: out}
		case auth.ScopeAnonymous:
			c.Anonymous = &out
		case auth.ScopeEveryone:
			c.Everyone = &out
		}
		return l.applyRules(ctx, c)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// rulesOf returns the stored list of target; l.mu is held.
func (l *Local) rulesOf(ctx context.Context, target auth.RuleTarget) ([]auth.Rule, error) {
	if target.Scope == auth.ScopeDevice {
		d, err := l.Devices.FindDevice(ctx, target.Device)
		if err != nil {
			return nil, err
		}
		return d.Rules, nil
	}
	anon, every, err := l.Rules.SharedRules(ctx)
	if target.Scope == auth.ScopeAnonymous {
		return anon, err
	}
	return every, err
}

// applyRules stores c and returns what brings the registry in step once
// it is committed; l.mu is held.
func (l *Local) applyRules(ctx context.Context, c auth.RulesChange) (func(), error) {
	changed, err := l.Rules.SetRules(ctx, c)
	if err != nil {
		return nil, err
	}
	return func() {
		for _, d := range changed {
			l.Registry.PutDevice(d)
		}
		if c.Anonymous != nil {
			l.Registry.SetAnonymousRules(*c.Anonymous)
		}
		if c.Everyone != nil {
			l.Registry.SetCommonRules(*c.Everyone)
		}
	}, nil
}

// AccessRules returns the anonymous connections' and everyone's rules
// and those of every device that has any.
func (l *Local) AccessRules(ctx context.Context) (*auth.AccessRules, error) {
	anon, every, err := l.Rules.SharedRules(ctx)
	if err != nil {
		return nil, err
	}
	devs, err := l.Devices.ListDevices(ctx)
	if err != nil {
		return nil, err
	}
	out := &auth.AccessRules{Anonymous: anon, Everyone: every}
	for _, d := range devs {
		if len(d.Rules) > 0 {
			out.Devices = append(out.Devices, auth.DeviceRuleList{ID: d.ID, Name: d.Name, Username: d.Username, Rules: d.Rules})
		}
	}
	return out, nil
}

// ImportACL applies a Mosquitto ACL file (auth.ParseACL): its anonymous
// rules to the anonymous connections, its pattern rules to everyone, and
// each user's rules to the device whose username, or else whose name,
// is the user's name. All or nothing: a user that names no device, or
// several, or a list that would break a limit, fails the import (listing
// every such user) before anything changes.
func (l *Local) ImportACL(ctx context.Context, acl *auth.ACL, o ACLImportOptions) (*ACLImportResult, error) {
	if acl == nil {
		acl = &auth.ACL{}
	}
	for _, list := range [][]auth.Rule{acl.Anonymous, acl.Everyone} {
		if err := auth.CheckRules(list); err != nil {
			return nil, err
		}
	}
	for _, u := range acl.Users {
		if err := auth.CheckRules(u.Rules); err != nil {
			return nil, fmt.Errorf("user %q: %w", clipName(u.Name), err)
		}
	}
	var res *ACLImportResult
	err := l.change(ctx, func(ctx context.Context) (func(), error) {
		var done func()
		var err error
		res, done, err = l.importACL(ctx, acl, o)
		return done, err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// importACL is ImportACL once the file's rules are checked: it returns
// what the import does and what brings the registry in step once it is
// committed. l.mu is held.
func (l *Local) importACL(ctx context.Context, acl *auth.ACL, o ACLImportOptions) (*ACLImportResult, func(), error) {
	devs, err := l.Devices.ListDevices(ctx)
	if err != nil {
		return nil, nil, err
	}
	anon, every, err := l.Rules.SharedRules(ctx)
	if err != nil {
		return nil, nil, err
	}
	res := &ACLImportResult{DryRun: o.DryRun, Replace: o.Replace}
	var c auth.RulesChange
	merge := func(have, add []auth.Rule) ([]auth.Rule, error) {
		if o.Replace {
			return append([]auth.Rule(nil), add...), nil
		}
		return auth.MergeRules(have, add)
	}
	if len(acl.Anonymous) > 0 {
		out, err := merge(anon, acl.Anonymous)
		if err != nil {
			return nil, nil, fmt.Errorf("anonymous connections: %w", err)
		}
		c.Anonymous = &out
		res.Lists = append(res.Lists, ACLImportList{Target: auth.RuleTarget{Scope: auth.ScopeAnonymous}, FromFile: len(acl.Anonymous), Rules: out})
	}
	if len(acl.Everyone) > 0 {
		out, err := merge(every, acl.Everyone)
		if err != nil {
			return nil, nil, fmt.Errorf("everyone: %w", err)
		}
		c.Everyone = &out
		res.Lists = append(res.Lists, ACLImportList{Target: auth.RuleTarget{Scope: auth.ScopeEveryone}, FromFile: len(acl.Everyone), Rules: out})
	}
	var unknown, ambiguous, twice []string
	byDevice := map[uint64]string{}
	for _, u := range acl.Users {
		d, n := deviceForUser(devs, u.Name)
		switch {
		case n == 0:
			unknown = append(unknown, fmt.Sprintf("%q", clipName(u.Name)))
			continue
		case n > 1:
			ambiguous = append(ambiguous, fmt.Sprintf("%q", clipName(u.Name)))
			continue
		}
		if other, ok := byDevice[d.ID]; ok {
			twice = append(twice, fmt.Sprintf("%q and %q (device %d)", clipName(other), clipName(u.Name), d.ID))
			continue
		}
		byDevice[d.ID] = u.Name
		out, err := merge(d.Rules, u.Rules)
		if err != nil {
			return nil, nil, fmt.Errorf("user %q (device %d): %w", clipName(u.Name), d.ID, err)
		}
		if c.Devices == nil {
			c.Devices = map[uint64][]auth.Rule{}
		}
		c.Devices[d.ID] = out
		res.Lists = append(res.Lists, ACLImportList{Target: auth.DeviceRules(d.ID), User: u.Name, DeviceName: d.Name, FromFile: len(u.Rules), Rules: out})
	}
	switch {
	case len(unknown) > 0:
		return nil, nil, channels.Errorf(channels.ENOTFOUND, "the ACL file names users that are no device's username or name: %s; "+
			"create devices with those names (feedmq device create --name NAME) or edit the file; nothing was imported", strings.Join(unknown, ", "))
	case len(ambiguous) > 0:
		return nil, nil, channels.Errorf(channels.ECONFLICT, "the ACL file names users that several devices are named: %s; "+
			"rename the devices or write their usernames in the file; nothing was imported", strings.Join(ambiguous, ", "))
	case len(twice) > 0:
		return nil, nil, channels.Errorf(channels.ECONFLICT, "the ACL file names one device as two users: %s; join their sections; nothing was imported", strings.Join(twice, ", "))
	}
	if o.DryRun || len(res.Lists) == 0 {
		return res, nil, nil
	}
	done, err := l.applyRules(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	return res, done, nil
}

// deviceForUser finds the device an ACL file's user name stands for: the
// one with that username, else those with that name (n of them; d is
// the first).
func deviceForUser(devs []*auth.Device, name string) (d *auth.Device, n int) {
	for _, dev := range devs {
		if dev.Username == name {
			return dev, 1
		}
	}
	for _, dev := range devs {
		if dev.Name == name {
			if d == nil {
				d = dev
			}
			n++
		}
	}
	return d, n
}

// clipName bounds a name quoted in an error.
func clipName(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
