package auth

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// The checks below are the stores' last line: every store refuses, alike,
// text it cannot keep byte for byte. Invalid UTF-8 would come back from
// bbolt's JSON records as U+FFFD (two usernames could become one), and
// PostgreSQL's text holds neither it nor NUL bytes. The admin service
// checks what users type long before; these catch what reaches a store
// another way. Errors name the field, never the value (it may be a hash).

// storable reports whether s is valid UTF-8 without NUL bytes.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

func notStorable(what string) error {
	return channels.Errorf(channels.EINVALID, "%s must be valid UTF-8 text without NUL bytes", what)
}

// CheckStorable refuses a device whose text no store can keep as given
// (EINVALID naming the field).
func (d *Device) CheckStorable() error {
	for _, f := range []struct{ name, v string }{
		{"device name", d.Name}, {"device description", d.Description}, {"device client ID", d.ClientID},
		{"device username", d.Username}, {"device password hash", d.PasswordHash},
	} {
		if !storable(f.v) {
			return notStorable(f.name)
		}
	}
	return CheckStorableRules("device", d.Rules)
}

// CheckStorableRules refuses rules whose patterns no store can keep as
// given; whose names the list in the error ("device", "anonymous").
func CheckStorableRules(whose string, rules []Rule) error {
	for i, r := range rules {
		if !storable(r.Pattern) {
			return notStorable(whose + " rule " + strconv.Itoa(i+1) + "'s pattern")
		}
	}
	return nil
}

// CheckStorable refuses an account whose text no store can keep as given.
func (a *Account) CheckStorable() error {
	if !storable(a.UserAPIKey) {
		return notStorable("account API key")
	}
	if !storable(a.PasswordHash) {
		return notStorable("account password hash")
	}
	return nil
}

// CheckStorable refuses a change whose rule patterns no store can keep as
// given.
func (c RulesChange) CheckStorable() error {
	if c.Anonymous != nil {
		if err := CheckStorableRules("anonymous", *c.Anonymous); err != nil {
			return err
		}
	}
	if c.Everyone != nil {
		if err := CheckStorableRules("everyone's", *c.Everyone); err != nil {
			return err
		}
	}
	for id, rules := range c.Devices {
		if err := CheckStorableRules("device "+strconv.FormatUint(id, 10), rules); err != nil {
			return err
		}
	}
	return nil
}
