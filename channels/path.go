package channels

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxPathLen is the longest path a binding accepts, in bytes, and
// MaxPathDepth the most steps (keys and indexes) one may take: a sensor's
// reading sits a few levels deep at most.
const (
	MaxPathLen   = 256
	MaxPathDepth = 16
)

// Path is a parsed binding path: a small subset of JSONPath that names one
// value of a payload. The grammar:
//
//	$               the whole payload
//	$.name          key "name" of an object (or of a form-encoded payload)
//	$.a.b           key "b" of the object at key "a"
//	$.a[0]          the first element of the array at key "a"
//	$['key']        a key in brackets, for keys with spaces, dots or
//	$["key"]        other characters a dotted name cannot hold; \' \"
//	                and \\ stand for the quote and the backslash
//
// A dotted name is any run of characters other than . [ ] ' " * and
// white space or control characters. Wildcards (*), recursive descent
// (..), slices, filters and negative indexes are refused: a path names
// exactly one value.
type Path struct {
	raw   string
	steps []pathStep
}

// pathStep is one key (index < 0) or array index.
type pathStep struct {
	key   string
	index int
}

// String returns the path as it was written.
func (p Path) String() string { return p.raw }

// Root reports whether p is $, the whole payload.
func (p Path) Root() bool { return len(p.steps) == 0 }

// ParsePath parses a binding path. Errors are *Error values with code
// EINVALID whose messages say what is wrong and where.
func ParsePath(s string) (Path, error) {
	switch {
	case s == "":
		return Path{}, pathError(s, "is empty: start it with $, such as $.temperature")
	case len(s) > MaxPathLen:
		return Path{}, Errorf(EINVALID, "path is %d bytes long; the limit is %d", len(s), MaxPathLen)
	case !utf8.ValidString(s):
		return Path{}, Errorf(EINVALID, "path is not valid UTF-8")
	case s[0] != '$':
		return Path{}, pathError(s, "must start with $, such as $.temperature")
	}
	p := Path{raw: s}
	for i := 1; i < len(s); {
		if len(p.steps) == MaxPathDepth {
			return Path{}, pathError(s, "takes more than "+strconv.Itoa(MaxPathDepth)+" steps")
		}
		var st pathStep
		var err error
		switch s[i] {
		case '.':
			st, i, err = parseDotted(s, i+1)
		case '[':
			st, i, err = parseBracket(s, i+1)
		default:
			return Path{}, pathError(s, "has "+strconv.Quote(s[i:i+1])+" at byte "+strconv.Itoa(i+1)+" where . or [ should be")
		}
		if err != nil {
			return Path{}, err
		}
		p.steps = append(p.steps, st)
	}
	return p, nil
}

// parseDotted parses the name after a dot at s[i:].
func parseDotted(s string, i int) (pathStep, int, error) {
	start := i
	for i < len(s) {
		c := s[i]
		if c == '.' || c == '[' {
			break
		}
		if c == ']' || c == '\'' || c == '"' || c == '*' || c <= ' ' || c == 0x7f {
			if c == '*' {
				return pathStep{}, 0, pathError(s, "uses the wildcard *: name one key, such as $.temperature")
			}
			return pathStep{}, 0, pathError(s, "has "+strconv.Quote(s[i:i+1])+" in a name: write such keys in brackets, such as $['my key']")
		}
		i++
	}
	if i == start {
		if i < len(s) && s[i] == '.' {
			return pathStep{}, 0, pathError(s, "uses recursive descent (..): name each step, such as $.a.b")
		}
		return pathStep{}, 0, pathError(s, "has an empty name after a dot")
	}
	return pathStep{key: s[start:i], index: -1}, i, nil
}

// parseBracket parses what follows a [ at s[i:]: a quoted key or an index.
func parseBracket(s string, i int) (pathStep, int, error) {
	if i >= len(s) {
		return pathStep{}, 0, pathError(s, "ends inside brackets")
	}
	if q := s[i]; q == '\'' || q == '"' {
		var b strings.Builder
		for i++; i < len(s); i++ {
			c := s[i]
			switch {
			case c == q:
				if i+1 >= len(s) || s[i+1] != ']' {
					return pathStep{}, 0, pathError(s, "has a quoted key not followed by ]")
				}
				return pathStep{key: b.String(), index: -1}, i + 2, nil
			case c == '\\':
				if i+1 >= len(s) || (s[i+1] != '\'' && s[i+1] != '"' && s[i+1] != '\\') {
					return pathStep{}, 0, pathError(s, `has a backslash in a quoted key that escapes neither a quote nor a backslash`)
				}
				i++
				b.WriteByte(s[i])
			case c < ' ' || c == 0x7f:
				return pathStep{}, 0, pathError(s, "has a control character in a quoted key")
			default:
				b.WriteByte(c)
			}
		}
		return pathStep{}, 0, pathError(s, "has a quoted key without its closing quote")
	}
	end := strings.IndexByte(s[i:], ']')
	if end < 0 {
		return pathStep{}, 0, pathError(s, "has [ without ]")
	}
	idx := s[i : i+end]
	switch {
	case idx == "*":
		return pathStep{}, 0, pathError(s, "uses the wildcard [*]: name one element, such as $.values[0]")
	case strings.HasPrefix(idx, "-"):
		return pathStep{}, 0, pathError(s, "uses a negative index: count from the start, such as [0]")
	case strings.ContainsAny(idx, ":?(,"):
		return pathStep{}, 0, pathError(s, "uses a slice, union or filter: name one element, such as [0]")
	}
	n, ok := 0, idx != "" && len(idx) <= 6
	for j := 0; ok && j < len(idx); j++ {
		if !isDigit(idx[j]) || (j == 0 && idx[j] == '0' && len(idx) > 1) {
			ok = false
		}
		n = n*10 + int(idx[j]-'0')
	}
	if !ok {
		return pathStep{}, 0, pathError(s, "has "+quoteShort(idx)+" in brackets: an index is a whole number from 0 to 999999, a key is quoted, such as ['name']")
	}
	return pathStep{index: n}, i + end + 1, nil
}

func pathError(s, what string) error {
	return Errorf(EINVALID, "path %s %s", quoteShort(s), what)
}
