package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// ClientIDLen is the length of generated client IDs (and usernames): the
// MQTT 3.1 client-ID limit, and what ThingSpeak generates.
const ClientIDLen = 23

// PasswordBytes is the entropy of a generated password: 18 random bytes,
// 24 base64 characters.
const PasswordBytes = 18

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// hashPrefix names the hash scheme so that it can change later without
// guessing. A fast hash is right here: every password is 144 random bits,
// so there is nothing for a slow hash to protect against.
const hashPrefix = "sha256:"

// NewClientID returns a random client ID of ClientIDLen letters and digits.
// Letters and digits only, so it survives every shell, URL and header file.
func NewClientID() string { return randomString(idAlphabet, ClientIDLen) }

// NewPassword returns a random password: PasswordBytes from crypto/rand in
// URL-safe base64 (letters, digits, '-' and '_'). ThingSpeak's passwords use
// '+' and '/', which break mqtt://user:password@host URLs (mosquitto_pub
// -L) and need quoting in shells; the length and entropy are the same.
//
// It never starts with '-': command-line tools (Python's argparse, for
// one) would take "--password -x..." for an option.
func NewPassword() string {
	b := make([]byte, PasswordBytes)
	for {
		mustRead(b)
		if p := base64.URLEncoding.EncodeToString(b); p[0] != '-' {
			return p
		}
	}
}

// HashPassword returns the stored form of a password.
func HashPassword(password string) string {
	sum := sha256.Sum256([]byte(password))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// VerifyPassword reports whether password matches hash, in time that does
// not depend on where they differ.
func VerifyPassword(hash, password string) bool {
	want, ok := strings.CutPrefix(hash, hashPrefix)
	if !ok {
		return false
	}
	wantSum, err := hex.DecodeString(want)
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(password))
	return subtle.ConstantTimeCompare(sum[:], wantSum) == 1
}

// NewAPIKey returns a channel API key: 16 characters from A-Z0-9.
func NewAPIKey() string {
	return randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 16)
}

// randomString draws n characters uniformly from alphabet, rejecting bytes
// that would bias the choice.
func randomString(alphabet string, n int) string {
	limit := byte(256 - 256%len(alphabet))
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		mustRead(buf)
		for _, c := range buf {
			if c < limit && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// mustRead fills b from crypto/rand, which never fails on Linux since Go
// 1.24 (it crashes the program instead of returning weak randomness).
func mustRead(b []byte) {
	_, _ = rand.Read(b)
}

// keysEqual compares API keys in constant time.
func keysEqual(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
