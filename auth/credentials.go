package auth

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/feedmq/feedmq/channels"
)

// DeviceJSON is the JSON shape of a device that every front shows (the
// CLI's --json, the HTTP API, the console's download). Password is set
// only in the answer that created it; Activity only where a running
// broker was asked (WithActivity).
type DeviceJSON struct {
	ID          uint64  `json:"id"`
	Name        string  `json:"name"`
	Description string  `json:"description,omitempty"`
	ClientID    string  `json:"client_id"`
	Username    string  `json:"username"`
	Password    string  `json:"password,omitempty"`
	Channels    []Grant `json:"channels"`
	// Rules are the device's access rules on free topics, each
	// "ACCESS PATTERN" (Rule.String); [] for none.
	Rules     []string `json:"rules"`
	CreatedAt string   `json:"created_at"`
	// *Activity adds "connections" and "last_publish_at"; nil leaves both
	// out, so created credentials and their downloaded JSON, which
	// describe the device and not a moment of it, carry neither.
	*Activity
}

// NewDeviceJSON returns d's JSON shape; password is "" except right after
// create and reset-password.
func NewDeviceJSON(d *Device, password string) DeviceJSON {
	grants := append([]Grant{}, d.Channels...) // [] rather than null
	return DeviceJSON{
		ID: d.ID, Name: d.Name, Description: d.Description, ClientID: d.ClientID, Username: d.Username,
		Password: password, Channels: grants, Rules: RuleStrings(d.Rules), CreatedAt: d.CreatedAt.UTC().Format(channels.TimeFormat),
	}
}

// credentialFormats write a device's credentials in each format a user
// may download them in.
var credentialFormats = map[string]func(w io.Writer, c *Credentials) error{
	"text": func(w io.Writer, c *Credentials) error {
		_, err := fmt.Fprintf(w, "username = %s\nclientId = %s\npassword = %s\n", c.Device.Username, c.Device.ClientID, c.Password)
		return err
	},
	"env": func(w io.Writer, c *Credentials) error {
		_, err := fmt.Fprintf(w, "MQTT_USERNAME=%s\nMQTT_CLIENT_ID=%s\nMQTT_PASSWORD=%s\n", c.Device.Username, c.Device.ClientID, c.Password)
		return err
	},
	"arduino": func(w io.Writer, c *Credentials) error {
		_, err := fmt.Fprintf(w, "#define SECRET_MQTT_USERNAME %q\n#define SECRET_MQTT_CLIENT_ID %q\n#define SECRET_MQTT_PASSWORD %q\n",
			c.Device.Username, c.Device.ClientID, c.Password)
		return err
	},
	"json": func(w io.Writer, c *Credentials) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(NewDeviceJSON(c.Device, c.Password))
	},
}

// CredentialFormats lists the formats WriteCredentials knows, sorted.
func CredentialFormats() []string {
	fs := make([]string, 0, len(credentialFormats))
	for f := range credentialFormats {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	return fs
}

// WriteCredentials writes c in format ("text", "env", "arduino" or
// "json"); EINVALID for any other.
func WriteCredentials(w io.Writer, format string, c *Credentials) error {
	f, ok := credentialFormats[format]
	if !ok {
		return channels.Errorf(channels.EINVALID, "unknown credentials format %q (want one of %v)", format, CredentialFormats())
	}
	return f(w, c)
}
