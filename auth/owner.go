package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/feedmq/feedmq/channels"
)

// The owner's console password is chosen by a human, so unlike a device
// password (144 random bits, see password.go) it may be guessable: it is
// stored with argon2id, a slow, memory-hard hash, so that a stolen
// database does not give it away cheaply.
//
// Parameters: OWASP's first argon2id choice (19 MiB, 2 passes, 1 lane),
// which takes a fraction of a second on a Raspberry Pi 3 and leaves room
// in its 1 GB for the broker.
const (
	ownerHashMemory  = 19 * 1024 // KiB
	ownerHashTime    = 2
	ownerHashThreads = 1
	ownerSaltLen     = 16
	ownerKeyLen      = 32

	// OwnerPasswordMinRunes and OwnerPasswordMaxBytes bound a console
	// password: long enough not to be guessed in a few tries, short
	// enough that hashing it costs no more than any other.
	OwnerPasswordMinRunes = 8
	OwnerPasswordMaxBytes = 1024
)

// Bounds on the parameters of a stored hash, so that a damaged or
// doctored record cannot make a verification allocate gigabytes or run
// for minutes.
const (
	maxHashMemory  = 256 * 1024 // KiB
	maxHashTime    = 16
	maxHashThreads = 16
)

// hashSlots caps how many argon2id hashes run at once. Each holds
// ownerHashMemory for its duration; without a cap, a flood of sign-in
// attempts (each one a hash) would take memory in proportion to the
// flood and could get the broker killed on a small board. Two is enough
// for one owner, and keeps the hashes' own memory near 40 MiB (the whole
// process peaked at 120-200 MB RSS under a 100-way sign-in flood, the
// heap's headroom included, and does not grow with the flood).
var hashSlots = make(chan struct{}, 2)

// withHashSlot runs f once a slot is free, or gives up when ctx ends
// first.
func withHashSlot(ctx context.Context, f func()) error {
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-hashSlots }()
	f()
	return nil
}

// CheckOwnerPassword reports why password cannot be a console password,
// or nil when it can.
func CheckOwnerPassword(password string) error {
	switch {
	case len(password) > OwnerPasswordMaxBytes:
		return channels.Errorf(channels.EINVALID, "password is too long: at most %d bytes", OwnerPasswordMaxBytes)
	case !utf8.ValidString(password):
		return channels.Errorf(channels.EINVALID, "password is not valid UTF-8 text")
	case utf8.RuneCountInString(password) < OwnerPasswordMinRunes:
		return channels.Errorf(channels.EINVALID, "password is too short: at least %d characters", OwnerPasswordMinRunes)
	}
	return nil
}

// HashOwnerPassword checks password (CheckOwnerPassword) and returns its
// stored form, a PHC string that carries the parameters and the salt:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// (salt and hash in unpadded standard base64), so that the parameters
// can change later without breaking stored hashes. It waits for a hash
// slot, and fails with ctx's error when ctx ends first.
func HashOwnerPassword(ctx context.Context, password string) (string, error) {
	if err := CheckOwnerPassword(password); err != nil {
		return "", err
	}
	salt := make([]byte, ownerSaltLen)
	mustRead(salt)
	p := ownerHash{memory: ownerHashMemory, time: ownerHashTime, threads: ownerHashThreads, salt: salt}
	err := withHashSlot(ctx, func() {
		p.key = argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, ownerKeyLen)
	})
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// VerifyOwnerPassword reports whether password matches encoded, a string
// from HashOwnerPassword, comparing in constant time. The error is for
// an encoded hash that does not decode, or ctx ending while waiting for
// a hash slot; a wrong password is (false, nil).
func VerifyOwnerPassword(ctx context.Context, encoded, password string) (bool, error) {
	p, err := decodeOwnerHash(encoded)
	if err != nil {
		return false, err
	}
	if len(password) > OwnerPasswordMaxBytes {
		// It cannot have been stored; and hashing it would cost more.
		return false, nil
	}
	var key []byte
	err = withHashSlot(ctx, func() {
		key = argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	})
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// ownerHash is a decoded argon2id PHC string.
type ownerHash struct {
	memory    uint32 // KiB
	time      uint32
	threads   uint8
	salt, key []byte
}

const ownerHashPrefix = "$argon2id$v=19$"

func (p ownerHash) String() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("%sm=%d,t=%d,p=%d$%s$%s", ownerHashPrefix, p.memory, p.time, p.threads,
		b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
}

// errOwnerHash is wrapped by every error of decodeOwnerHash.
var errOwnerHash = errors.New("stored console password hash is malformed")

// decodeOwnerHash parses a PHC argon2id string as String writes it
// (version 19 only) and checks its parameters against the bounds above.
func decodeOwnerHash(s string) (ownerHash, error) {
	bad := func(why string) (ownerHash, error) {
		return ownerHash{}, fmt.Errorf("%w: %s", errOwnerHash, why)
	}
	rest, ok := strings.CutPrefix(s, ownerHashPrefix)
	if !ok {
		return bad("not an argon2id version 19 hash")
	}
	parts := strings.Split(rest, "$")
	if len(parts) != 3 {
		return bad("want parameters, salt and hash")
	}
	var p ownerHash
	params := strings.Split(parts[0], ",")
	if len(params) != 3 {
		return bad("want parameters m, t and p")
	}
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(params[i], name+"=")
		if !ok {
			return bad("want parameters m, t and p in this order")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return bad("parameter " + name + " is not a positive number")
		}
		switch name {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n > maxHashThreads {
				return bad("too many threads")
			}
			p.threads = uint8(n)
		}
	}
	if p.memory > maxHashMemory || p.time > maxHashTime {
		return bad("parameters beyond the bounds this feedmq accepts")
	}
	if p.memory < 8*uint32(p.threads) {
		return bad("memory below 8 KiB per thread")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[1]); err != nil || len(p.salt) < 8 || len(p.salt) > 64 {
		return bad("salt is not 8 to 64 bytes of base64")
	}
	if p.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[2]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return bad("hash is not 16 to 64 bytes of base64")
	}
	// Decoding tolerates some variants (leading zeros, line breaks in
	// base64); one stored form per hash keeps comparisons simple.
	if p.String() != s {
		return bad("not in canonical form")
	}
	return p, nil
}

// Errors of the owner account, wrapped (channels.Error.Err) by errors with
// code EFORBIDDEN.
var (
	// ErrBadPassword: the console password is wrong, or none is set.
	ErrBadPassword = errors.New("wrong console password")
	// ErrBadUserKey: the user API key is wrong or missing.
	ErrBadUserKey = errors.New("wrong user API key")
	// ErrSetupToken: the setup token is wrong or spent, or a password is
	// set already.
	ErrSetupToken = errors.New("setup token not valid")
)

// NewSetupToken returns a one-time token for choosing the first console
// password: 26 lowercase letters, 122 random bits. Lowercase only, so
// that it fits any URL and the log sanitizer, which masks runs of
// capitals and digits as API keys, leaves the one line meant to show it
// intact.
func NewSetupToken() string {
	return randomString("abcdefghijklmnopqrstuvwxyz", 26)
}

// KeysEqual compares two secrets in time that depends only on their
// lengths.
func KeysEqual(a, b string) bool { return keysEqual(a, b) }
