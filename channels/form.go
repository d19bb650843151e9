package channels

import (
	"bytes"
)

// This file decodes application/x-www-form-urlencoded payloads in place:
// the parser keeps only the values it needs and never builds url.Values.

// cutByte slices b around the first c; after is nil if there is none.
func cutByte(b []byte, c byte) (before, after []byte) {
	if i := bytes.IndexByte(b, c); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// appendUnescape appends the form-decoded src to b: %XX becomes the byte
// XX and + a space. The decoded form is never longer than src.
func appendUnescape(b, src []byte) ([]byte, error) {
	for len(src) > 0 {
		i := indexEscape(src)
		if i < 0 {
			return append(b, src...), nil
		}
		b = append(b, src[:i]...)
		if src[i] == '+' {
			b = append(b, ' ')
			src = src[i+1:]
			continue
		}
		c, err := unhexAt(src, i)
		if err != nil {
			return b, err
		}
		b = append(b, c)
		src = src[i+3:]
	}
	return b, nil
}

// indexEscape returns the index of the first % or + in b, or -1. A plain
// loop beats bytes.IndexAny on the short keys and values of a payload.
func indexEscape(b []byte) int {
	for i, c := range b {
		if c == '%' || c == '+' {
			return i
		}
	}
	return -1
}

// checkEscapes reports a bad %XX escape in src.
func checkEscapes(src []byte) error {
	for i := bytes.IndexByte(src, '%'); i >= 0; i = bytes.IndexByte(src, '%') {
		if _, err := unhexAt(src, i); err != nil {
			return err
		}
		src = src[i+3:]
	}
	return nil
}

// unhexAt decodes the escape %XX at src[i].
func unhexAt(src []byte, i int) (byte, error) {
	if i+2 >= len(src) {
		return 0, errEscape
	}
	hi, ok1 := unhex(src[i+1])
	lo, ok2 := unhex(src[i+2])
	if !ok1 || !ok2 {
		return 0, errEscape
	}
	return hi<<4 | lo, nil
}

var errEscape = errorString("% must be followed by two hex digits (write %25 for a literal %)")

type errorString string

func (e errorString) Error() string { return string(e) }

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
