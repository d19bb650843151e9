package auth

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// Access is what an access rule allows on the free topics it matches.
type Access uint8

const (
	// AccessDeny matches topics that are refused whatever else matches,
	// as Mosquitto's "topic deny" lines.
	AccessDeny  Access = 0
	AccessRead  Access = 1 << 0 // subscribe and receive
	AccessWrite Access = 1 << 1 // publish (and a will on the topic)

	AccessReadWrite = AccessRead | AccessWrite
)

// String spells an access as the rule syntax does.
func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessReadWrite:
		return "readwrite"
	}
	return "deny"
}

// Rule is one access rule on free topics, in Mosquitto's ACL style: an
// access and a topic pattern with + and # wildcards, where %c stands for
// the connection's client ID and %u for its username (each only as a
// whole topic level).
type Rule struct {
	Access  Access
	Pattern string
}

// String spells a rule as "ACCESS PATTERN".
func (r Rule) String() string { return r.Access.String() + " " + r.Pattern }

// ParseAccess parses read, write, readwrite or deny.
func ParseAccess(s string) (Access, error) {
	switch s {
	case "read":
		return AccessRead, nil
	case "write":
		return AccessWrite, nil
	case "readwrite":
		return AccessReadWrite, nil
	case "deny":
		return AccessDeny, nil
	}
	return 0, channels.Errorf(channels.EINVALID, "access %q: want read, write, readwrite or deny", clip(s))
}

// MaxRulePattern bounds a rule's pattern, in bytes.
const MaxRulePattern = 1024

// ValidPattern returns why pattern cannot be a rule's pattern, or nil: it
// must be a valid MQTT filter of free topics (no reserved tree, no
// control characters).
func ValidPattern(pattern string) error {
	why := PatternProblem(pattern)
	switch {
	case why == "":
		return nil
	case pattern == "" || len(pattern) > MaxRulePattern:
		return channels.Errorf(channels.EINVALID, "a rule's topic pattern %s", why)
	}
	return channels.Errorf(channels.EINVALID, "topic pattern %q: %s", clip(pattern), why)
}

// PatternProblem is ValidPattern's reason, "" for a valid pattern, without
// the pattern: for messages that must not echo what a client sent.
func PatternProblem(pattern string) string {
	switch {
	case pattern == "":
		return "is empty"
	case len(pattern) > MaxRulePattern:
		return fmt.Sprintf("is longer than %d bytes", MaxRulePattern)
	case !utf8.ValidString(pattern) || strings.ContainsFunc(pattern, isControl):
		// MQTT topics should hold no control characters; a rule with a
		// line break could not be shown or edited one rule a line.
		return "not valid UTF-8 without control characters"
	case channels.Reserved(pattern):
		return "channels/, devices/ and $ topics are governed by channel grants, not rules"
	}
	levels := strings.Split(pattern, "/")
	for i, l := range levels {
		if l == "#" && i != len(levels)-1 {
			return "# must be the last level"
		}
		if len(l) > 1 && strings.ContainsAny(l, "+#") {
			return "+ and # must fill a whole level"
		}
	}
	return ""
}

// MatchRule reports whether pattern matches topic for a connection with
// clientID and username: MQTT filter matching, after %c and %u levels are
// replaced. A topic level that is itself + or # (a subscription filter
// being checked) matches only a pattern level that allows it, so a rule
// for home/+/temp does not allow the filter home/#.
func MatchRule(pattern, topic, clientID, username string) bool {
	for {
		var pl, tl string
		var pmore, tmore bool
		pl, pattern, pmore = strings.Cut(pattern, "/")
		tl, topic, tmore = strings.Cut(topic, "/")
		switch pl {
		case "#":
			return true
		case "+":
			if tl == "#" {
				return false
			}
		case "%c":
			if clientID == "" || tl != clientID || strings.ContainsAny(clientID, "/+#") {
				return false
			}
		case "%u":
			if username == "" || tl != username || strings.ContainsAny(username, "/+#") {
				return false
			}
		default:
			if pl != tl {
				return false
			}
		}
		if !pmore || !tmore {
			if pmore && pattern == "#" {
				return true // home/# matches home itself
			}
			return pmore == tmore
		}
	}
}

// Allows reports whether rules allow want (AccessRead or AccessWrite) on
// topic: no deny rule matches it and some rule with that access does.
func Allows(rules []Rule, want Access, topic, clientID, username string) bool {
	allowed, denied := scanRules(rules, want, topic, clientID, username)
	return allowed && !denied
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// SetAnonymousRules replaces the access rules of connections without a
// username.
func (r *Registry) SetAnonymousRules(rules []Rule) {
	cp := append([]Rule(nil), rules...)
	r.mu.Lock()
	r.anonRules = cp
	r.mu.Unlock()
}

// AnonymousRules returns the access rules of anonymous connections.
func (r *Registry) AnonymousRules() []Rule {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]Rule(nil), r.anonRules...)
}

// SetCommonRules replaces the access rules that apply to every
// connection, anonymous or authenticated, besides its own: Mosquitto's
// pattern lines, usually written with %c or %u.
func (r *Registry) SetCommonRules(rules []Rule) {
	cp := append([]Rule(nil), rules...)
	r.mu.Lock()
	r.commonRules = cp
	r.mu.Unlock()
}

// CommonRules returns the access rules of every connection.
func (r *Registry) CommonRules() []Rule {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]Rule(nil), r.commonRules...)
}

// FreeAccess reports whether device (Anonymous for connections without a
// username), connected as clientID with username, may have want
// (AccessRead to subscribe to a filter or receive a topic, AccessWrite to
// publish) on a free topic or filter. The device's own rules (or the
// anonymous ones) and the rules of every connection count together: a
// deny in either refuses, and otherwise a rule with that access in either
// allows. Default deny: a connection without a matching rule gets
// nothing. Reserved topics are never allowed here.
func (r *Registry) FreeAccess(device uint64, want Access, topic, clientID, username string) bool {
	if channels.Reserved(topic) {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var own []Rule
	if device == Anonymous {
		own = r.anonRules
	} else {
		p, ok := r.devices[device]
		if !ok {
			return false // deleted: its connections are being closed
		}
		own = p.dev.Rules
	}
	a, denied := scanRules(own, want, topic, clientID, username)
	if denied {
		return false
	}
	b, denied := scanRules(r.commonRules, want, topic, clientID, username)
	return !denied && (a || b)
}

// scanRules reports whether some rule with access want matches topic,
// and whether a deny rule does.
func scanRules(rules []Rule, want Access, topic, clientID, username string) (allowed, denied bool) {
	for _, r := range rules {
		if !MatchRule(r.Pattern, topic, clientID, username) {
			continue
		}
		if r.Access == AccessDeny {
			return false, true
		}
		if r.Access&want != 0 {
			allowed = true
		}
	}
	return allowed, false
}
