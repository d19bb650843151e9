package auth_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

const (
	alnum    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	keyChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	draws    = 1000
)

// drawDistinct calls gen n times, checks that no value repeats and returns
// how often each character occurred, so callers can also check that the
// whole alphabet is used.
func drawDistinct(t *testing.T, n int, gen func() string, check func(string)) map[rune]int {
	t.Helper()
	seen := make(map[string]bool, n)
	chars := make(map[rune]int)
	for range n {
		s := gen()
		check(s)
		if seen[s] {
			t.Fatalf("value %q drawn twice in %d draws", s, n)
		}
		seen[s] = true
		for _, c := range s {
			chars[c]++
		}
	}
	return chars
}

// allUsed fails unless every character of alphabet occurred: with
// thousands of draws a missing one means the generator is biased or uses
// a truncated alphabet.
func allUsed(t *testing.T, chars map[rune]int, alphabet string) {
	t.Helper()
	for _, c := range alphabet {
		if chars[c] == 0 {
			t.Fatalf("character %q never drawn; the generator does not use the whole alphabet", c)
		}
	}
	if len(chars) != len(alphabet) {
		t.Fatalf("drew %d distinct characters, want %d", len(chars), len(alphabet))
	}
}

func TestNewClientID(t *testing.T) {
	chars := drawDistinct(t, draws, auth.NewClientID, func(id string) {
		if len(id) != auth.ClientIDLen || auth.ClientIDLen != 23 {
			t.Fatalf("NewClientID() = %q: %d characters, want 23", id, len(id))
		}
		if strings.Trim(id, alnum) != "" {
			t.Fatalf("NewClientID() = %q: want only A-Z, a-z and 0-9", id)
		}
	})
	allUsed(t, chars, alnum)
}

func TestNewPassword(t *testing.T) {
	drawDistinct(t, draws, auth.NewPassword, func(pw string) {
		if len(pw) != 24 {
			t.Fatalf("NewPassword() = %q: %d characters, want 24", pw, len(pw))
		}
		b, err := base64.URLEncoding.DecodeString(pw)
		if err != nil {
			t.Fatalf("NewPassword() = %q: not URL-safe base64: %v", pw, err)
		}
		if len(b) != auth.PasswordBytes || auth.PasswordBytes != 18 {
			t.Fatalf("NewPassword() = %q decodes to %d bytes, want 18", pw, len(b))
		}
	})
}

func TestNewAPIKey(t *testing.T) {
	chars := drawDistinct(t, draws, auth.NewAPIKey, func(k string) {
		if !channels.ValidKey(k) {
			t.Fatalf("NewAPIKey() = %q: not a valid channel key", k)
		}
	})
	allUsed(t, chars, keyChars)
}

func TestHashPassword(t *testing.T) {
	for _, pw := range []string{auth.NewPassword(), "", "a", "pässwörd", strings.Repeat("x", 1000)} {
		h := auth.HashPassword(pw)
		if !strings.HasPrefix(h, "sha256:") {
			t.Fatalf("HashPassword(%q) = %q: want a sha256: prefix", pw, h)
		}
		// Short passwords like "a" are hex digits and may occur by chance.
		if len(pw) >= 8 && strings.Contains(h, pw) {
			t.Fatalf("HashPassword(%q) = %q contains the password", pw, h)
		}
		if again := auth.HashPassword(pw); again != h {
			t.Fatalf("HashPassword(%q) is not deterministic: %q, then %q", pw, h, again)
		}
		if !auth.VerifyPassword(h, pw) {
			t.Fatalf("VerifyPassword(HashPassword(%q), %q) = false", pw, pw)
		}
	}
	if auth.HashPassword("a") == auth.HashPassword("b") {
		t.Fatal("different passwords hash alike")
	}
}

func TestVerifyPassword(t *testing.T) {
	const pw = "hunter2hunter2hunter2hun"
	good := auth.HashPassword(pw)
	hexSum := strings.TrimPrefix(good, "sha256:")

	tests := []struct {
		name     string
		hash     string
		password string
		want     bool
	}{
		{"match", good, pw, true},
		{"wrong password", good, pw + "x", false},
		{"prefix of password", good, pw[:len(pw)-1], false},
		{"empty password", good, "", false},
		{"case differs", good, strings.ToUpper(pw), false},
		{"empty hash", "", pw, false},
		{"empty hash empty password", "", "", false},
		{"prefix only", "sha256:", pw, false},
		{"prefix only empty password", "sha256:", "", false},
		{"no prefix", hexSum, pw, false},
		{"other scheme", "md5:" + hexSum, pw, false},
		{"upper-case prefix", "SHA256:" + hexSum, pw, false},
		{"bad hex", "sha256:" + strings.Repeat("zz", 32), pw, false},
		{"odd hex", "sha256:" + hexSum[:63], pw, false},
		{"short hex", "sha256:" + hexSum[:32], pw, false},
		{"trailing garbage", good + "00", pw, false},
		{"password as hash", pw, pw, false},
		{"hash as password", good, good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.VerifyPassword(tt.hash, tt.password); got != tt.want {
				t.Fatalf("VerifyPassword(%q, %q) = %v, want %v", tt.hash, tt.password, got, tt.want)
			}
		})
	}
}

func TestNewPasswordNeverLooksLikeAnOption(t *testing.T) {
	for range 5000 {
		if p := auth.NewPassword(); p[0] == '-' {
			t.Fatalf("password %q starts with '-'", p)
		}
	}
}
