package channels

import (
	"unicode"
	"unicode/utf8"
)

// ValidText reports whether s is valid UTF-8 of at most max bytes without
// control characters (C0, DEL, C1), so that a name printed by the CLI
// cannot move the cursor or recolour a terminal, and a log or page shows
// what was stored. Multi-line text (descriptions, metadata) may also hold
// tabs and line breaks.
func ValidText(s string, max int, multiline bool) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\t' || r == '\n' || r == '\r')) {
			return false
		}
	}
	return true
}
