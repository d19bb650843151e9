package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

func TestCheckOwnerPassword(t *testing.T) {
	for _, tc := range []struct {
		desc, password string
		want           string // part of the message; "" for valid
	}{
		{"empty", "", "too short: at least 8"},
		{"seven ASCII", "abcdefg", "too short"},
		{"eight ASCII", "abcdefgh", ""},
		{"seven runes in 14 bytes", "ééééééé", "too short"},
		{"eight runes", "éééééééé", ""},
		{"spaces count", "a b c d ", ""},
		{"1024 bytes", strings.Repeat("x", 1024), ""},
		{"1025 bytes", strings.Repeat("x", 1025), "too long: at most 1024 bytes"},
		{"invalid UTF-8", "abcdefgh\xff", "not valid UTF-8"},
		{"lone continuation byte", "\x80abcdefgh", "not valid UTF-8"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := auth.CheckOwnerPassword(tc.password)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckOwnerPassword: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "password") {
				t.Fatalf("CheckOwnerPassword = %v, want a message about the password containing %q", err, tc.want)
			}
			if code := channels.ErrorCode(err); code != channels.EINVALID {
				t.Fatalf("code %s, want %s", code, channels.EINVALID)
			}
		})
	}
}

func TestHashOwnerPassword(t *testing.T) {
	ctx := context.Background()
	const pw = "correct horse battery"
	h1, err := auth.HashOwnerPassword(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q: not the expected PHC string", h1)
	}
	if strings.Contains(h1, pw) {
		t.Fatal("hash contains the password")
	}
	h2, err := auth.HashOwnerPassword(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: no random salt")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{pw, true},
		{"correct horse battery ", false},
		{"Correct horse battery", false},
		{"", false},
		{strings.Repeat("x", 5000), false},
	} {
		for _, h := range []string{h1, h2} {
			ok, err := auth.VerifyOwnerPassword(ctx, h, tc.password)
			if err != nil || ok != tc.want {
				t.Errorf("VerifyOwnerPassword(%.20q) = %v, %v; want %v", tc.password, ok, err, tc.want)
			}
		}
	}
	if _, err := auth.HashOwnerPassword(ctx, "short"); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("hashing a short password: %v", err)
	}
}

// A hash with other parameters (within bounds) still verifies: they are
// read from the string. This one is m=8192,t=1,p=2 of "password123" with the salt
// "saltsaltsalt".
func TestVerifyOwnerPassword_OtherParameters(t *testing.T) {
	const h = "$argon2id$v=19$m=8192,t=1,p=2$c2FsdHNhbHRzYWx0$lgs+J39/drHIkqt4Cf5fdYsFOV8g5RaMidRSdfz8rEQ"
	ok, err := auth.VerifyOwnerPassword(context.Background(), h, "password123")
	if err != nil || !ok {
		t.Fatalf("VerifyOwnerPassword = %v, %v", ok, err)
	}
}

func TestVerifyOwnerPassword_Malformed(t *testing.T) {
	const salt, key = "c2FsdHNhbHRzYWx0", "lgs+J39/drHIkqt4Cf5fdYsFOV8g5RaMidRSdfz8rEQ"
	for _, h := range []string{
		"",
		"sha256:abcd",
		"$argon2i$v=19$m=8192,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=16$m=8192,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8192,t=1$" + salt + "$" + key,
		"$argon2id$v=19$t=1,m=8192,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8192,t=1,p=2$" + salt,
		"$argon2id$v=19$m=8192,t=1,p=2$" + salt + "$" + key + "$",
		"$argon2id$v=19$m=0,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8192,t=0,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8192,t=1,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=-1,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=4294967296,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=4194304,t=1,p=2$" + salt + "$" + key, // 4 GiB
		"$argon2id$v=19$m=8192,t=1000,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8192,t=1,p=255$" + salt + "$" + key,
		"$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8192,t=1,p=2$c2FsdA$" + key,
		"$argon2id$v=19$m=8192,t=1,p=2$" + salt + "$c2hvcnQ",
		"$argon2id$v=19$m=8192,t=1,p=2$" + salt + "=$" + key,
		"$argon2id$v=19$m=8192,t=1,p=2$" + salt + "$" + key + "!",
		"$argon2id$v=19$m=08192,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8192,t=1,p=2$" + salt + "$" + key + "\n",
	} {
		ok, err := auth.VerifyOwnerPassword(context.Background(), h, "password123")
		if ok || err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("VerifyOwnerPassword(%q) = %v, %v; want a malformed-hash error", h, ok, err)
		}
	}
}

// Waiting for a hash slot ends with the caller's context.
func TestHashOwnerPassword_Cancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := auth.FillHashSlots()
	defer done()
	if _, err := auth.HashOwnerPassword(ctx, "password123"); !errors.Is(err, context.Canceled) {
		t.Fatalf("HashOwnerPassword with every slot taken: %v", err)
	}
	h := "$argon2id$v=19$m=8192,t=1,p=2$c2FsdHNhbHRzYWx0$lgs+J39/drHIkqt4Cf5fdYsFOV8g5RaMidRSdfz8rEQ"
	if _, err := auth.VerifyOwnerPassword(ctx, h, "password123"); !errors.Is(err, context.Canceled) {
		t.Fatalf("VerifyOwnerPassword with every slot taken: %v", err)
	}
}

func TestNewSetupToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := auth.NewSetupToken()
		if len(tok) != 26 || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("token %q: want 26 lowercase letters", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q drawn twice", tok)
		}
		seen[tok] = true
	}
}

func FuzzDecodeOwnerHash(f *testing.F) {
	f.Add("$argon2id$v=19$m=8192,t=1,p=2$c2FsdHNhbHRzYWx0$lgs+J39/drHIkqt4Cf5fdYsFOV8g5RaMidRSdfz8rEQ")
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=99999999999,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, s string) {
		auth.DecodeOwnerHashForTest(t, s)
	})
}
