package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// Subjects. Entries go on <prefix>.entries.<channel_id>, one subject per
// channel so that NATS keeps a publisher's entries of a channel in order;
// takeover notices go on <prefix>.connect.
const (
	subjectRoot = "feedmq"
	// MaxNameLen bounds the cluster name and node ID: both are subject
	// tokens or travel in every notice.
	MaxNameLen = 64
)

func entriesSubject(cluster string, channel uint64) string {
	return subjectRoot + "." + cluster + ".entries." + strconv.FormatUint(channel, 10)
}

func entriesWildcard(cluster string) string { return subjectRoot + "." + cluster + ".entries.*" }

func connectSubject(cluster string) string { return subjectRoot + "." + cluster + ".connect" }

// ValidName checks a cluster name or node ID: 1..MaxNameLen letters,
// digits, '-' or '_'. Anything else could split or widen a NATS subject
// ('.', '*', '>', spaces).
func ValidName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("longer than %d bytes", MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("character %q not allowed (letters, digits, '-' and '_' only)", c)
		}
	}
	return nil
}

// channelFromSubject returns the channel ID that ends an entries subject.
func channelFromSubject(subject string) (uint64, error) {
	i := strings.LastIndexByte(subject, '.')
	return channels.ParseID(subject[i+1:])
}

// wireEntry is the channel-feed JSON of an entry (channels.Entry.AppendJSON),
// as another node publishes it.
type wireEntry struct {
	ChannelID uint64  `json:"channel_id"`
	CreatedAt string  `json:"created_at"`
	EntryID   uint64  `json:"entry_id"`
	Field1    *string `json:"field1"`
	Field2    *string `json:"field2"`
	Field3    *string `json:"field3"`
	Field4    *string `json:"field4"`
	Field5    *string `json:"field5"`
	Field6    *string `json:"field6"`
	Field7    *string `json:"field7"`
	Field8    *string `json:"field8"`
	Latitude  *string `json:"latitude"`
	Longitude *string `json:"longitude"`
	Elevation *string `json:"elevation"`
	Status    *string `json:"status"`
}

// MaxMessage bounds an entry or notice message: an entry of the largest
// payload feedmq accepts is far smaller.
const MaxMessage = 256 << 10

// DecodeEntry parses an entry published by another node. A message that
// is not one (wrong ids, bad time, invalid UTF-8, oversized) is an error:
// NATS may be shared with other software, so nothing is trusted.
func DecodeEntry(b []byte) (channels.Entry, error) {
	var e channels.Entry
	if len(b) > MaxMessage {
		return e, fmt.Errorf("entry message of %d bytes: over %d", len(b), MaxMessage)
	}
	var w wireEntry
	if err := json.Unmarshal(b, &w); err != nil {
		return e, fmt.Errorf("entry message: %w", err)
	}
	if w.ChannelID == 0 {
		return e, errors.New("entry message: channel_id missing or 0")
	}
	if w.EntryID == 0 {
		return e, errors.New("entry message: entry_id missing or 0")
	}
	t, err := time.Parse(channels.TimeFormat, w.CreatedAt)
	if err != nil {
		return e, errors.New("entry message: created_at is not YYYY-MM-DDTHH:MM:SSZ")
	}
	e.ChannelID, e.ID, e.CreatedAt = w.ChannelID, w.EntryID, t.UTC()
	for i, v := range [channels.NumValues]*string{w.Field1, w.Field2, w.Field3, w.Field4, w.Field5,
		w.Field6, w.Field7, w.Field8, w.Latitude, w.Longitude, w.Elevation, w.Status} {
		if v == nil {
			continue
		}
		if !utf8.ValidString(*v) {
			return channels.Entry{}, fmt.Errorf("entry message: %s is not valid UTF-8", channels.ValueName(i))
		}
		e.SetValue(i, *v)
	}
	return e, nil
}

// Notice is a takeover notice: a client connected to Node with this ID at
// At, so any other node's connection with the same ID that is older must
// close. At is zero in notices from nodes that did not send it; such a
// notice closes the connection whatever its age.
type Notice struct {
	ClientID string    `json:"client_id"`
	Node     string    `json:"node"`
	At       time.Time `json:"connected_at,omitzero"`
}

// maxClientID bounds a notice's client ID: MQTT's own limit.
const maxClientID = 65535

func encodeNotice(n Notice) []byte {
	b, _ := json.Marshal(n) // strings and a time within year 0-9999: cannot fail
	return b
}

// DecodeNotice parses a takeover notice.
func DecodeNotice(b []byte) (Notice, error) {
	if len(b) > MaxMessage {
		return Notice{}, fmt.Errorf("connect notice of %d bytes: over %d", len(b), MaxMessage)
	}
	var n Notice
	if err := json.Unmarshal(b, &n); err != nil {
		return Notice{}, fmt.Errorf("connect notice: %w", err)
	}
	switch {
	case n.ClientID == "":
		return Notice{}, errors.New("connect notice: client_id missing")
	case len(n.ClientID) > maxClientID:
		return Notice{}, errors.New("connect notice: client_id too long")
	case !utf8.ValidString(n.ClientID):
		return Notice{}, errors.New("connect notice: client_id is not valid UTF-8")
	case !n.At.IsZero() && n.At.Before(time.Unix(0, 0)):
		return Notice{}, errors.New("connect notice: connected_at before 1970")
	}
	if err := ValidName(n.Node); err != nil {
		return Notice{}, fmt.Errorf("connect notice: node: %w", err)
	}
	return n, nil
}
