package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/feedmq/feedmq/channels"
)

// MaxRules bounds each list of access rules: a device's, the anonymous
// connections' and everyone's. Every packet on a free topic walks two
// lists, so they stay short; a set-up needing more writes wildcards.
const MaxRules = 100

// ErrNoRule is the cause (channels.Error.Err, code ENOTFOUND) of an
// error about removing a rule that is not in the list.
var ErrNoRule = errors.New("no access rule with that topic pattern")

// MarshalText spells the access as the rule syntax does, so a rule
// crossing the admin socket reads "read" rather than 1.
func (a Access) MarshalText() ([]byte, error) {
	if a != AccessDeny && a != AccessRead && a != AccessWrite && a != AccessReadWrite {
		return nil, fmt.Errorf("access %d has no name", a)
	}
	return []byte(a.String()), nil
}

// UnmarshalText is ParseAccess.
func (a *Access) UnmarshalText(b []byte) error {
	v, err := ParseAccess(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// ParseRule parses a rule written "ACCESS PATTERN", as String writes it:
// read, write, readwrite or deny, spaces, and the topic pattern, which
// runs to the end (MQTT topics may hold spaces; surrounding ones are
// dropped).
func ParseRule(s string) (Rule, error) {
	s = strings.TrimSpace(s)
	word, rest := s, ""
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		word, rest = s[:i], s[i+1:]
	}
	if s == "" {
		return Rule{}, channels.Errorf(channels.EINVALID, `an access rule is empty; write it as "readwrite home/#"`)
	}
	a, err := ParseAccess(word)
	if err != nil {
		return Rule{}, channels.Errorf(channels.EINVALID, `access rule %q: begin it with read, write, readwrite or deny, as in "readwrite home/#"`, clip(s))
	}
	r := Rule{Access: a, Pattern: strings.TrimSpace(rest)}
	if err := ValidPattern(r.Pattern); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// RuleScope is whose list of access rules a change is to.
type RuleScope string

const (
	ScopeDevice    RuleScope = "device"    // one device's own rules
	ScopeAnonymous RuleScope = "anonymous" // connections without a username
	ScopeEveryone  RuleScope = "everyone"  // every connection, with the above
)

// RuleTarget names one list of access rules: a device's (Device set), the
// anonymous connections' or everyone's.
type RuleTarget struct {
	Scope  RuleScope `json:"scope"`
	Device uint64    `json:"device,omitempty"`
}

// DeviceRules is the target of device id's rules.
func DeviceRules(id uint64) RuleTarget { return RuleTarget{Scope: ScopeDevice, Device: id} }

// String names the target for messages.
func (t RuleTarget) String() string {
	switch t.Scope {
	case ScopeDevice:
		return "device " + strconv.FormatUint(t.Device, 10)
	case ScopeAnonymous:
		return "anonymous connections"
	case ScopeEveryone:
		return "everyone"
	}
	return fmt.Sprintf("unknown rule list %q", clip(string(t.Scope)))
}

// Check returns an EINVALID error for a target that names no list.
func (t RuleTarget) Check() error {
	switch {
	case t.Scope == ScopeDevice && t.Device != 0:
		return nil
	case (t.Scope == ScopeAnonymous || t.Scope == ScopeEveryone) && t.Device == 0:
		return nil
	}
	return channels.Errorf(channels.EINVALID, "%s: want a device ID, anonymous or everyone", t)
}

// CheckRules returns why rules cannot be one list of access rules, or
// nil: every pattern valid, none twice (a list has one rule per
// pattern), at most MaxRules.
func CheckRules(rules []Rule) error {
	if len(rules) > MaxRules {
		return channels.Errorf(channels.EINVALID, "a list of access rules holds at most %d rules, got %d", MaxRules, len(rules))
	}
	seen := make(map[string]bool, len(rules))
	for _, r := range rules {
		if _, err := r.Access.MarshalText(); err != nil {
			return channels.Errorf(channels.EINVALID, "rule for %q: %v", clip(r.Pattern), err)
		}
		if err := ValidPattern(r.Pattern); err != nil {
			return err
		}
		if seen[r.Pattern] {
			return channels.Errorf(channels.EINVALID, "topic pattern %q is given twice; a list has one rule per pattern", clip(r.Pattern))
		}
		seen[r.Pattern] = true
	}
	return nil
}

// MergeRules returns have with add applied: a rule whose pattern is
// already listed replaces that rule's access in place (so allowing
// "read home/#" on a readwrite home/# makes it read-only), others are
// appended in order. The result is checked with CheckRules.
func MergeRules(have, add []Rule) ([]Rule, error) {
	out := append([]Rule(nil), have...)
	at := make(map[string]int, len(out))
	for i, r := range out {
		at[r.Pattern] = i
	}
	for _, r := range add {
		if err := ValidPattern(r.Pattern); err != nil {
			return nil, err
		}
		if i, ok := at[r.Pattern]; ok {
			out[i].Access = r.Access
			continue
		}
		at[r.Pattern] = len(out)
		out = append(out, r)
	}
	if err := CheckRules(out); err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveRules returns have without the rules of patterns. It changes
// nothing and returns an ENOTFOUND error wrapping ErrNoRule when one of
// the patterns has no rule.
func RemoveRules(have []Rule, patterns []string) ([]Rule, error) {
	drop := make(map[string]bool, len(patterns))
	for _, p := range patterns {
		drop[p] = true
	}
	out := make([]Rule, 0, len(have))
	for _, r := range have {
		if drop[r.Pattern] {
			delete(drop, r.Pattern)
			continue
		}
		out = append(out, r)
	}
	for _, p := range patterns {
		if drop[p] {
			return nil, &channels.Error{Code: channels.ENOTFOUND, Err: ErrNoRule,
				Message: fmt.Sprintf("no access rule with topic pattern %q", clip(p))}
		}
	}
	return out, nil
}

// RuleStrings spells rules as "ACCESS PATTERN" strings, [] for none.
func RuleStrings(rules []Rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.String()
	}
	return out
}

// AccessRules is every list of access rules: the anonymous connections',
// everyone's, and those of the devices that have any.
type AccessRules struct {
	Anonymous []Rule
	Everyone  []Rule
	Devices   []DeviceRuleList // ordered by device ID
}

// DeviceRuleList is one device's rules, with what names the device.
type DeviceRuleList struct {
	ID       uint64
	Name     string
	Username string
	Rules    []Rule
}

// AccessRulesJSON is the JSON shape of AccessRules that every front
// shows: rules as "ACCESS PATTERN" strings.
type AccessRulesJSON struct {
	Anonymous []string             `json:"anonymous"`
	Everyone  []string             `json:"everyone"`
	Devices   []DeviceRuleListJSON `json:"devices"`
}

// DeviceRuleListJSON is one device's entry in AccessRulesJSON.
type DeviceRuleListJSON struct {
	ID       uint64   `json:"id"`
	Name     string   `json:"name"`
	Username string   `json:"username"`
	Rules    []string `json:"rules"`
}

// JSON returns a's JSON shape, with [] rather than null for empty lists.
func (a *AccessRules) JSON() AccessRulesJSON {
	j := AccessRulesJSON{Anonymous: RuleStrings(a.Anonymous), Everyone: RuleStrings(a.Everyone), Devices: []DeviceRuleListJSON{}}
	for _, d := range a.Devices {
		j.Devices = append(j.Devices, DeviceRuleListJSON{ID: d.ID, Name: d.Name, Username: d.Username, Rules: RuleStrings(d.Rules)})
	}
	return j
}

// RulesChange replaces rule lists: each non-nil list, and each listed
// device's rules.
type RulesChange struct {
	Anonymous *[]Rule
	Everyone  *[]Rule
	Devices   map[uint64][]Rule
}

// RuleStore keeps the rule lists; a device's own rules are kept with the
// device (Store), and RuleStore changes them with the others at once.
type RuleStore interface {
	// SharedRules returns the anonymous connections' and everyone's
	// rules: none in a database that never had any.
	SharedRules(ctx context.Context) (anonymous, everyone []Rule, err error)
	// SetRules applies change in one transaction, setting each changed
	// device's UpdatedAt, and returns the changed devices. ENOTFOUND
	// (wrapping ErrDeviceNotFound) when a device is missing: then
	// nothing changes.
	SetRules(ctx context.Context, change RulesChange) ([]*Device, error)
}
