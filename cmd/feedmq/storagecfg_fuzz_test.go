package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParsePassword(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"pw", "pw", ""},
		{"pw\n", "pw", ""},
		{"pw\r\n", "pw", ""},
		{"pw\n\n  \n", "pw", ""},
		{" spaced pw ", " spaced pw ", ""}, // kept verbatim: spaces may be part of it
		{"", "", "is empty"},
		{"\n", "", "is empty"},
		{"\r\npw", "", "is empty"},
		{"pw\nmore", "", "more than one line"},
		{"p\x00w", "", "NUL"},
	} {
		got, err := parsePassword("f", []byte(tc.in))
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parsePassword(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
		if s := strings.TrimSpace(tc.in); err != nil && len(s) > 1 && strings.Contains(err.Error(), s) {
			t.Errorf("the error repeats the file: %v", err)
		}
	}
}

// A password file is outside input: whatever it holds, parsePassword
// returns one line without its end, or an error that does not repeat it.
func FuzzParsePassword(f *testing.F) {
	for _, s := range []string{"pw", "pw\r\n", "a\nb", "\x00", "", "\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pw, err := parsePassword("FILE", b)
		if err != nil {
			if pw != "" {
				t.Fatal("a password with an error")
			}
			if len(b) > 3 && strings.Contains(err.Error(), string(b)) {
				t.Fatalf("the error repeats the file: %v", err)
			}
			return
		}
		if pw == "" || strings.ContainsAny(pw, "\n\x00") || strings.HasSuffix(pw, "\r") {
			t.Fatalf("password %q", pw)
		}
		if !bytes.HasPrefix(b, []byte(pw)) {
			t.Fatalf("password %q is not the file's start", pw)
		}
	})
}
