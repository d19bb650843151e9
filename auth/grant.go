package auth

import (
	"fmt"
	"strings"

	"github.com/feedmq/feedmq/channels"
)

// ParseGrant parses one grant as every front spells it: ID (publish and
// subscribe), ID:pub, ID:sub or ID:pubsub. The ID is spelled as
// everywhere else (channels.ParseID). Errors are EINVALID and quote the
// value, so a front prefixes only the name of its flag or field.
func ParseGrant(v string) (Grant, error) {
	idStr, mode, hasMode := strings.Cut(v, ":")
	id, err := channels.ParseID(idStr)
	if err != nil {
		return Grant{}, channels.Errorf(channels.EINVALID, "%s: want ID, ID:pub, ID:sub or ID:pubsub, e.g. 3:pub", quoteGrant(v))
	}
	g := Grant{ChannelID: id}
	switch {
	case !hasMode || mode == "pubsub":
		g.Publish, g.Subscribe = true, true
	case mode == "pub":
		g.Publish = true
	case mode == "sub":
		g.Subscribe = true
	default:
		return Grant{}, channels.Errorf(channels.EINVALID, "%s: the suffix must be :pub, :sub or :pubsub", quoteGrant(v))
	}
	return g, nil
}

// ParseGrants parses several grants; a channel named twice is an error,
// since one of the two would silently win.
func ParseGrants(vals []string) ([]Grant, error) {
	var out []Grant
	seen := make(map[uint64]bool, len(vals))
	for _, v := range vals {
		g, err := ParseGrant(v)
		if err != nil {
			return nil, err
		}
		if seen[g.ChannelID] {
			return nil, channels.Errorf(channels.EINVALID, "channel %d is given twice", g.ChannelID)
		}
		seen[g.ChannelID] = true
		out = append(out, g)
	}
	return out, nil
}

// quoteGrant quotes a grant value for an error message, cut short: the
// value may come from the network.
func quoteGrant(v string) string {
	const max = 40
	if len(v) > max {
		return fmt.Sprintf("%q...", v[:max])
	}
	return fmt.Sprintf("%q", v)
}
