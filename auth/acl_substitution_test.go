package auth

import (
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

// Mosquitto replaces %c and %u anywhere in a pattern line
// ("pattern write tele/%c-out/#" is the client's own tree there); feedmq
// only as a whole level, so such a line imported as is would become a
// literal pattern that matches nothing: the device silently loses the
// access the file gave it. The import refuses it, naming the line.
func TestParseACLRefusesSubstitutionInsideLevel(t *testing.T) {
	for _, file := range []string{
		"pattern write tele/%c-out/#\n",
		"# x\npattern read users/u_%u/#\n",
		"pattern readwrite %c%u\n",
		"user a\ntopic read x\npattern read dev/%c.state\n",
	} {
		_, err := ParseACL(strings.NewReader(file))
		if channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), "line ") ||
			!strings.Contains(err.Error(), "whole") {
			t.Errorf("ParseACL(%q) = %v; want EINVALID naming the line and the whole-level rule", file, err)
		}
	}
	// Whole levels are substituted; a topic line's % is plain text.
	if _, err := ParseACL(strings.NewReader("pattern write tele/%c/#\npattern read %u/+\ntopic read 100%/x\n")); err != nil {
		t.Errorf("whole-level substitutions refused: %v", err)
	}
}

// A file saved with a UTF-8 byte order mark (Windows editors add one)
// parses as without it: the mark is not part of the first line's keyword.
func TestParseACLByteOrderMark(t *testing.T) {
	for _, file := range []string{"\ufeff# acl\nuser a\ntopic read x/#\n", "\ufeffuser a\r\ntopic read x/#\r\n"} {
		acl, err := ParseACL(strings.NewReader(file))
		if err != nil || len(acl.Users) != 1 || acl.Users[0].Name != "a" || len(acl.Users[0].Rules) != 1 {
			t.Errorf("ParseACL(%q) = %+v, %v", file, acl, err)
		}
	}
}
