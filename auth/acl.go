package auth

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/feedmq/feedmq/channels"
)

// MaxACLFile bounds a Mosquitto ACL file to import, in bytes.
const MaxACLFile = 1 << 20

// ACL is a Mosquitto ACL file's rules (mosquitto.conf acl_file):
// "topic" lines before any "user" line are the anonymous connections',
// those after "user NAME" are that user's, and "pattern" lines are every
// connection's wherever they stand.
type ACL struct {
	Anonymous []Rule
	Everyone  []Rule
	Users     []ACLUser // in the order the file first names them
}

// ACLUser is one user's rules in an ACL file.
type ACLUser struct {
	Name  string
	Rules []Rule
}

// ParseACL reads a Mosquitto ACL file: blank lines and lines starting
// with # are skipped; "user NAME" starts a user's section (NAME runs to
// the end of the line); "topic [ACCESS] TOPIC" adds a rule to the current
// section; "pattern [ACCESS] TOPIC" adds one for every connection. ACCESS
// is read, write, readwrite (the default when left out) or deny; TOPIC
// runs to the end of the line. As in Mosquitto, %c and %u are substituted
// only in pattern lines, so a topic line holding them is refused rather
// than read with a wider meaning, and so is a pattern line with one inside
// a level (tele/%c-out), which Mosquitto substitutes and feedmq would
// read literally. Two lines on one pattern in one section
// make one rule granting both (deny if either denies), as Mosquitto
// would apply them. Errors name the line; rules on channels/, devices/ or
// $ topics are refused, since channel grants govern those.
func ParseACL(r io.Reader) (*ACL, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxACLFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxACLFile {
		return nil, channels.Errorf(channels.EINVALID, "the ACL file is larger than %d bytes", MaxACLFile)
	}
	// Windows editors may start the file with a byte order mark.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	acl := &ACL{}
	users := map[string]int{} // name -> index in acl.Users
	var cur *[]Rule = &acl.Anonymous
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxACLFile+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fail := func(format string, args ...any) error {
			return channels.Errorf(channels.EINVALID, "ACL file line %d: %s", n, fmt.Sprintf(format, args...))
		}
		word, rest := cutWord(line)
		switch word {
		case "user":
			name := strings.TrimSpace(rest)
			if name == "" {
				return nil, fail("user without a name")
			}
			if len(name) > channels.MaxNameLen || !channels.ValidText(name, channels.MaxNameLen, false) {
				return nil, fail("user name is not valid text of at most %d bytes", channels.MaxNameLen)
			}
			i, ok := users[name]
			if !ok {
				i = len(acl.Users)
				users[name] = i
				acl.Users = append(acl.Users, ACLUser{Name: name})
			}
			cur = &acl.Users[i].Rules
		case "topic", "pattern":
			access := AccessReadWrite
			// An access word followed by nothing is the topic, as in
			// Mosquitto.
			if a, after := cutWord(rest); after != "" && (a == "read" || a == "write" || a == "readwrite" || a == "deny") {
				access, _ = ParseAccess(a)
				rest = after
			}
			pattern := strings.TrimSpace(rest)
			if pattern == "" {
				return nil, fail("%s line without a topic", word)
			}
			if err := ValidPattern(pattern); err != nil {
				return nil, fail("%s", channels.ErrorMessage(err))
			}
			list := cur
			if word == "pattern" && partSubstitution(pattern) {
				return nil, fail("%%c and %%u are substituted only as a whole topic level here, as in tele/%%c/#; Mosquitto also replaces them inside a level, so this line would not mean the same: rewrite it with whole levels")
			}
			if word == "pattern" {
				list = &acl.Everyone
			} else if hasSubstitution(pattern) {
				return nil, fail("%%c and %%u are substituted only in pattern lines; write this one as a pattern line, or drop it")
			}
			*list = addACLRule(*list, Rule{Access: access, Pattern: pattern})
			if len(*list) > MaxRules {
				return nil, fail("more than %d rules for one user (or for anonymous connections, or in pattern lines)", MaxRules)
			}
		default:
			return nil, fail("unknown keyword %q; want user, topic or pattern", clip(word))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, channels.Errorf(channels.EINVALID, "the ACL file: %v", err)
	}
	return acl, nil
}

// cutWord splits s at its first space or tab, dropping the blanks after.
func cutWord(s string) (word, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// hasSubstitution reports whether a pattern has a %c or %u level.
func hasSubstitution(pattern string) bool {
	for _, l := range strings.Split(pattern, "/") {
		if l == "%c" || l == "%u" {
			return true
		}
	}
	return false
}

// partSubstitution reports whether a level of pattern holds %c or %u
// beside other text.
func partSubstitution(pattern string) bool {
	for _, l := range strings.Split(pattern, "/") {
		if l != "%c" && l != "%u" && (strings.Contains(l, "%c") || strings.Contains(l, "%u")) {
			return true
		}
	}
	return false
}

// addACLRule adds r to rules, joining it with a rule on the same pattern
// the way Mosquitto applies two such lines: a deny wins, else the
// accesses add up.
func addACLRule(rules []Rule, r Rule) []Rule {
	for i := range rules {
		if rules[i].Pattern != r.Pattern {
			continue
		}
		if rules[i].Access == AccessDeny || r.Access == AccessDeny {
			rules[i].Access = AccessDeny
		} else {
			rules[i].Access |= r.Access
		}
		return rules
	}
	return append(rules, r)
}
