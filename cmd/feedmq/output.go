package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// channelJSON is the --json shape of a channel (DESIGN §3).
type channelJSON struct {
	ID          uint64            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Public      bool              `json:"public"`
	WriteAPIKey string            `json:"write_api_key"`
	ReadAPIKey  string            `json:"read_api_key"`
	Fields      map[string]string `json:"fields"` // enabled fields only
	CreatedAt   string            `json:"created_at"`
	LastEntryID uint64            `json:"last_entry_id"`
	// Retention, only when set.
	MaxEntries uint64 `json:"max_entries,omitempty"`
	MaxAge     string `json:"max_age,omitempty"` // Go duration, e.g. "720h0m0s"
	// RateLimit, only when the channel has its own.
	RateLimit string `json:"rate_limit,omitempty"`
	// Location, metadata, tags and URL, only when set.
	Latitude  string   `json:"latitude,omitempty"`
	Longitude string   `json:"longitude,omitempty"`
	Elevation string   `json:"elevation,omitempty"`
	Metadata  string   `json:"metadata,omitempty"`
	Tags      []string `json:"tags,omitempty"`
	URL       string   `json:"url,omitempty"`
}

func newChannelJSON(c *channels.Channel) channelJSON {
	fields := make(map[string]string)
	for i, label := range c.Fields {
		if label != "" {
			fields[channels.FieldName(i+1)] = label
		}
	}
	return channelJSON{
		ID: c.ID, Name: c.Name, Description: c.Description, Public: c.Public,
		WriteAPIKey: c.WriteKey, ReadAPIKey: c.ReadKey, Fields: fields,
		CreatedAt: formatJSONTime(c.CreatedAt), LastEntryID: c.LastEntryID,
		MaxEntries: c.MaxEntries, MaxAge: formatMaxAge(c.MaxAge), RateLimit: formatMaxAge(c.RateLimit),
		Latitude: c.Latitude, Longitude: c.Longitude, Elevation: c.Elevation,
		Metadata: c.Metadata, Tags: c.Tags, URL: c.URL,
	}
}

// formatMaxAge is the JSON form of a retention age; "" (omitted) for none.
func formatMaxAge(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func formatJSONTime(t time.Time) string { return t.UTC().Format(channels.TimeFormat) }

// formatTime is the human and CSV form of a time, as ThingSpeak's CSV.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// writeJSON writes v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; call flush when done.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table { return &table{tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)} }

func (t *table) row(cols ...any) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprint(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printChannelList(w io.Writer, list []*channels.Channel) error {
	t := newTable(w)
	t.row("ID", "NAME", "PUBLIC", "FIELDS", "LAST ENTRY", "CREATED")
	for _, c := range list {
		n := 0
		for i := 1; i <= channels.NumFields; i++ {
			if c.FieldEnabled(i) {
				n++
			}
		}
		t.row(c.ID, c.Name, yesNo(c.Public), n, c.LastEntryID, formatTime(c.CreatedAt))
	}
	return t.flush()
}

func printChannel(w io.Writer, c *channels.Channel) error {
	t := newTable(w)
	t.row("ID:", c.ID)
	t.row("Name:", c.Name)
	if c.Description != "" {
		t.row("Description:", c.Description)
	}
	t.row("Public:", yesNo(c.Public))
	t.row("Write API key:", c.WriteKey)
	t.row("Read API key:", c.ReadKey)
	for i, label := range c.Fields {
		if label != "" {
			t.row(channels.FieldName(i+1)+":", label)
		}
	}
	t.row("Created:", formatTime(c.CreatedAt))
	t.row("Last entry:", c.LastEntryID)
	if c.MaxEntries > 0 {
		t.row("Max entries:", c.MaxEntries)
	}
	if c.MaxAge > 0 {
		t.row("Max age:", c.MaxAge)
	}
	if c.RateLimit > 0 {
		t.row("Rate limit:", c.RateLimit)
	}
	for _, r := range [][2]string{
		{"Latitude:", c.Latitude}, {"Longitude:", c.Longitude}, {"Elevation:", c.Elevation},
		{"Tags:", strings.Join(c.Tags, ", ")}, {"URL:", c.URL}, {"Metadata:", oneLine(c.Metadata)},
	} {
		if r[1] != "" {
			t.row(r[0], r[1])
		}
	}
	return t.flush()
}

// oneLine returns s, quoted Go-style when it holds a line break or
// another control character, so a table row stays one row and free text
// cannot send escape sequences to the terminal.
func oneLine(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }) {
		return strconv.Quote(s)
	}
	return s
}

// grantString renders a grant in --channel syntax, e.g. "3:pubsub".
func grantString(g auth.Grant) string {
	s := strconv.FormatUint(g.ChannelID, 10)
	switch {
	case g.Publish && g.Subscribe:
		return s + ":pubsub"
	case g.Publish:
		return s + ":pub"
	}
	return s + ":sub"
}

func grantsString(gs []auth.Grant) string {
	if len(gs) == 0 {
		return "-"
	}
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = grantString(g)
	}
	return strings.Join(parts, " ")
}

func printDeviceList(w io.Writer, list []*auth.Device, acts map[uint64]auth.Activity) error {
	t := newTable(w)
	t.row("ID", "NAME", "USERNAME", "CHANNELS", "CREATED", "CONNECTED", "SINCE", "ADDRESS", "LISTENER", "LAST PUBLISH")
	for _, d := range list {
		a := acts[d.ID]
		connected, since, addr, listener := "no", "-", "-", "-"
		if n := len(a.Connections); n > 0 {
			// The newest: an older one is being taken over.
			c := a.Connections[n-1]
			connected, since, addr, listener = "yes", formatTime(c.Since), c.RemoteAddr, c.Listener
			if n > 1 {
				connected = fmt.Sprintf("yes (%d)", n)
			}
		}
		t.row(d.ID, d.Name, d.Username, grantsString(d.Channels), formatTime(d.CreatedAt),
			connected, since, addr, listener, lastPublish(a))
	}
	return t.flush()
}

// lastPublish is the table form of a device's last publish time.
func lastPublish(a auth.Activity) string {
	if a.LastPublish == nil {
		return "-"
	}
	return formatTime(*a.LastPublish)
}

// printDevice writes a device and, when act is set, what the running
// server knows of it.
func printDevice(w io.Writer, d *auth.Device, act *auth.Activity) error {
	t := newTable(w)
	t.row("ID:", d.ID)
	t.row("Name:", d.Name)
	if d.Description != "" {
		t.row("Description:", oneLine(d.Description))
	}
	t.row("Client ID:", d.ClientID)
	t.row("Username:", d.Username)
	t.row("Channels:", grantsString(d.Channels))
	if len(d.Rules) == 0 {
		t.row("Rules:", "none (no free topics but everyone's rules)")
	}
	for i, r := range d.Rules {
		label := ""
		if i == 0 {
			label = "Rules:"
		}
		t.row(label, r.String())
	}
	t.row("Created:", formatTime(d.CreatedAt))
	if act != nil {
		if len(act.Connections) == 0 {
			t.row("Connected:", "no")
		}
		for _, c := range act.Connections {
			t.row("Connected:", fmt.Sprintf("since %s from %s on %s", formatTime(c.Since), c.RemoteAddr, c.Listener))
		}
		t.row("Last publish:", lastPublish(*act))
	}
	return t.flush()
}
