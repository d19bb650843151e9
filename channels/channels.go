// Package channels is the feed domain of feedmq: channels with up to eight
// fields, the entries written to them, the MQTT topics and payloads that
// carry entries, and the JSON that subscribers receive.
//
// The package is plain Go: it does no I/O and imports no broker, database
// or CLI library. Storage implements Store; the broker parses topics and
// payloads with ParseTopic and ParsePayload and fans out Entry.AppendJSON.
package channels

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// NumFields is the number of data fields a channel has (field1..field8).
const NumFields = 8

// KeyLen is the length of a channel API key: 16 characters from A-Z0-9.
const KeyLen = 16

// MaxNameLen bounds channel names and descriptions so that a listing stays
// readable and a stored record stays small.
const (
	MaxNameLen        = 255
	MaxDescriptionLen = 2000
	MaxLabelLen       = 255
)

// Channel is a feed that devices write entries to.
type Channel struct {
	ID          uint64
	Name        string
	Description string
	Public      bool
	// Fields holds the label of each field; an empty label means the field
	// is disabled and writes to it are refused.
	Fields   [NumFields]string
	WriteKey string
	ReadKey  string
	// RateLimit is the minimum interval between two entries; 0 means none.
	RateLimit time.Duration
	// MaxEntries keeps only the newest MaxEntries entries; 0 keeps all.
	MaxEntries uint64
	// MaxAge deletes entries older than MaxAge; 0 keeps all. Retention is
	// applied in the background, so a feed may briefly exceed either.
	MaxAge time.Duration
	// Location of the channel as decimal strings ("" when unset), kept as
	// written because ThingSpeak answers them as strings: latitude
	// -90..90, longitude -180..180, elevation in metres.
	Latitude, Longitude, Elevation string
	// Metadata is free text for scripts (JSON, XML, anything); Tags are
	// search words; URL is a web page about the channel.
	Metadata  string
	Tags      []string
	URL       string
	CreatedAt time.Time
	UpdatedAt time.Time
	// LastEntryID is the entry_id of the newest entry, 0 when empty. It is
	// maintained by the store.
	LastEntryID uint64
}

// FieldEnabled reports whether field n (1..8) accepts values.
func (c *Channel) FieldEnabled(n int) bool {
	return n >= 1 && n <= NumFields && c.Fields[n-1] != ""
}

// Validate checks the settings a user controls.
func (c *Channel) Validate() error {
	if strings.TrimSpace(c.Name) == "" {
		return Errorf(EINVALID, "channel name is required")
	}
	if !ValidText(c.Name, MaxNameLen, false) {
		return Errorf(EINVALID, "channel name must be valid UTF-8 of at most %d bytes without control characters", MaxNameLen)
	}
	if LooksLikeID(c.Name) {
		// Sensor topics take an ID or a name in the same level.
		return Errorf(EINVALID, "channel name %s looks like a channel ID: a name needs a character other than 0-9", quoteShort(c.Name))
	}
	if !ValidText(c.Description, MaxDescriptionLen, true) {
		return Errorf(EINVALID, "channel description must be valid UTF-8 of at most %d bytes without control characters other than tabs and line breaks", MaxDescriptionLen)
	}
	enabled := 0
	for i, l := range c.Fields {
		if !ValidText(l, MaxLabelLen, false) {
			return Errorf(EINVALID, "label of field%d must be valid UTF-8 of at most %d bytes without control characters", i+1, MaxLabelLen)
		}
		if l != "" {
			enabled++
		}
	}
	if enabled == 0 {
		return Errorf(EINVALID, "a channel needs at least one enabled field")
	}
	if !ValidKey(c.WriteKey) || !ValidKey(c.ReadKey) {
		return Errorf(EINVALID, "API keys must be %d characters from A-Z and 0-9", KeyLen)
	}
	if c.RateLimit < 0 {
		return Errorf(EINVALID, "rate limit must not be negative")
	}
	if c.MaxAge < 0 {
		return Errorf(EINVALID, "max age must not be negative")
	}
	return c.validateSettings()
}

// DefaultFields returns the labels of a channel created without --field:
// all eight fields enabled as "Field 1".."Field 8".
func DefaultFields() [NumFields]string {
	var f [NumFields]string
	for i := range f {
		f[i] = "Field " + strconv.Itoa(i+1)
	}
	return f
}

// ValidKey reports whether k has the shape of a channel API key.
func ValidKey(k string) bool {
	if len(k) != KeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// FieldName returns "field<n>".
func FieldName(n int) string { return fmt.Sprintf("field%d", n) }
