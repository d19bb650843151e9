package httpd

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// maxGrantRows bounds the rows one device form may carry, whatever the
// configured per-device limit, so that a forged form costs little; the
// service refuses more than its limit with its own message.
const maxGrantRows = 256

// parseGrants reads the "Authorize Channels" rows of a device form:
// "channel" lists the rows' channel IDs in order, and "publish" and
// "subscribe" list the IDs whose "Allow Publish" and "Allow Subscribe"
// boxes are checked. Each row's checkbox values repeat its channel ID, so
// that rows can be added and removed without renumbering.
func parseGrants(f url.Values) ([]auth.Grant, error) {
	ids := f["channel"]
	if len(ids) > maxGrantRows {
		return nil, channels.Errorf(channels.EINVALID, "the form lists %d channels; at most %d", len(ids), maxGrantRows)
	}
	grants := make([]auth.Grant, 0, len(ids))
	index := make(map[uint64]int, len(ids))
	for _, s := range ids {
		id, err := channels.ParseID(s)
		if err != nil {
			return nil, channels.Errorf(channels.EINVALID, "channel %s is not a channel ID", shortQuote(s))
		}
		if _, dup := index[id]; dup {
			return nil, channels.Errorf(channels.EINVALID, "channel %d is listed twice", id)
		}
		index[id] = len(grants)
		grants = append(grants, auth.Grant{ChannelID: id})
	}
	for _, right := range []string{"publish", "subscribe"} {
		vals := f[right]
		if len(vals) > len(ids) {
			return nil, channels.Errorf(channels.EINVALID, "more %s boxes than channels", right)
		}
		for _, s := range vals {
			id, err := channels.ParseID(s)
			i, ok := index[id]
			if err != nil || !ok {
				return nil, channels.Errorf(channels.EINVALID, "%s names channel %s, which is not among the device's channels", right, shortQuote(s))
			}
			if right == "publish" {
				grants[i].Publish = true
			} else {
				grants[i].Subscribe = true
			}
		}
	}
	return grants, nil
}

// shortQuote quotes at most 24 bytes of an untrusted value for a message.
func shortQuote(s string) string {
	if len(s) > 24 {
		return strconv.Quote(s[:24]) + "…"
	}
	return strconv.Quote(s)
}

// parseRulesBox parses the device form's access rules box: one rule a
// line ("readwrite home/#"), blank lines skipped, at most auth.MaxRules,
// one per pattern. Errors name the line.
func parseRulesBox(box string) ([]auth.Rule, error) {
	rules := []auth.Rule{}
	for n, line := range strings.Split(box, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if len(rules) == auth.MaxRules {
			return nil, channels.Errorf(channels.EINVALID, "access rules: a device has at most %d", auth.MaxRules)
		}
		r, err := auth.ParseRule(line)
		if err != nil {
			return nil, channels.Errorf(channels.EINVALID, "access rule on line %d: %s", n+1, channels.ErrorMessage(err))
		}
		rules = append(rules, r)
	}
	if err := auth.CheckRules(rules); err != nil {
		return nil, err
	}
	return rules, nil
}
