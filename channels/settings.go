package channels

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// Bounds of a channel's location, metadata, tags and URL. They keep a
// stored record small and a channel listing readable; the URL bound is the
// length browsers and proxies reliably handle.
const (
	MaxLocationLen = 32   // bytes of latitude, longitude or elevation
	MaxMetadataLen = 4096 // bytes of metadata
	MaxTags        = 30   // tags per channel
	MaxTagLen      = 255  // bytes of one tag
	MaxURLLen      = 2000 // bytes of the URL
)

// ParseTags splits a comma-separated tag list as a user types it
// ("a, b,,c") into its tags ([a b c]); see NormalizeTags.
func ParseTags(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return NormalizeTags(strings.Split(s, ","))
}

// NormalizeTags trims each tag and drops empty and repeated ones, keeping
// the order of first appearance. It returns nil when no tag is left, so
// an unset list and an empty one look the same. It does not enforce the
// bounds: Channel.Validate does, with a message naming the tag.
func NormalizeTags(tags []string) []string {
	var out []string
	// A set, not a scan of out: the admin service runs this under its
	// lock, on lists as long as a request allows.
	seen := make(map[string]bool)
	for _, t := range tags {
		t = strings.TrimSpace(t)
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}

// validateSettings checks the location, metadata, tags and URL.
func (c *Channel) validateSettings() error {
	if !validCoordinate(c.Latitude, 90) {
		return Errorf(EINVALID, "latitude must be a number from -90 to 90, such as 52.5163, or empty")
	}
	if !validCoordinate(c.Longitude, 180) {
		return Errorf(EINVALID, "longitude must be a number from -180 to 180, such as 13.3777, or empty")
	}
	if c.Elevation != "" && (len(c.Elevation) > MaxLocationLen || !IsDecimal(c.Elevation)) {
		return Errorf(EINVALID, "elevation must be a number of metres such as 34 or -2.5 (at most %d characters), or empty", MaxLocationLen)
	}
	if !ValidText(c.Metadata, MaxMetadataLen, true) {
		return Errorf(EINVALID, "metadata must be valid UTF-8 of at most %d bytes without control characters other than tabs and line breaks", MaxMetadataLen)
	}
	if len(c.Tags) > MaxTags {
		return Errorf(EINVALID, "tags: a channel has at most %d tags, got %d", MaxTags, len(c.Tags))
	}
	for _, t := range c.Tags {
		if err := validTag(t); err != nil {
			return err
		}
	}
	return validURL(c.URL)
}

// validCoordinate reports whether s is empty or a decimal number from
// -limit to limit of at most MaxLocationLen bytes.
func validCoordinate(s string, limit int) bool {
	return s == "" || len(s) <= MaxLocationLen && inRange(s, limit)
}

func validTag(t string) error {
	switch {
	case t == "" || strings.TrimSpace(t) != t:
		return Errorf(EINVALID, "tags must not be empty or start or end with a space")
	case len(t) > MaxTagLen || !utf8.ValidString(t):
		return Errorf(EINVALID, "each tag must be valid UTF-8 of at most %d bytes", MaxTagLen)
	case strings.Contains(t, ","):
		// Tags travel as one comma-separated string (forms, ThingSpeak's
		// API), so a comma inside one would split it on the way back.
		return Errorf(EINVALID, "tag %s contains a comma; tags are separated by commas", quoteShort(t))
	case hasControl(t):
		return Errorf(EINVALID, "tag %s contains a control character", quoteShort(t))
	}
	return nil
}

// validURL accepts "" or an absolute http or https URL with a host.
func validURL(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxURLLen {
		return Errorf(EINVALID, "url must be at most %d bytes", MaxURLLen)
	}
	bad := Errorf(EINVALID, "url must be an absolute http or https URL, such as https://example.com/station, or empty")
	if !utf8.ValidString(s) || hasControl(s) || strings.ContainsAny(s, " \u00a0") {
		return bad
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return bad
	}
	return nil
}

// hasControl reports whether s holds an ASCII or C1 control character.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return true
		}
	}
	return false
}
