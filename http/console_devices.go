package httpd

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// grantRow is one authorized channel as a form or the list shows it.
type grantRow struct {
	ChannelID          uint64
	ChannelName        string
	Publish, Subscribe bool
}

type deviceRow struct {
	*auth.Device
	Grants   []grantRow
	Activity auth.Activity
}

type devicesData struct {
	Rows             []deviceRow
	Count, Max       int
	MaxChannels      int
	ActivityNotShown string // why live connections are missing, if they are
}

// deviceForm is the "Add a new device" and "Edit" form.
type deviceForm struct {
	ID                uint64 // 0 for a new device
	ClientID          string // and username, on the edit page
	Name, Description string
	Rows              []grantRow
	Choices           []*channels.Channel // channels not yet in Rows
	MaxChannels       int
	Count, Max        int    // devices, for "3 of 100 devices"
	FormID            string // one-time id of "Add Device" (see sentOnce)
	// Rules is the access rules box: one "ACCESS PATTERN" a line, kept
	// as typed over "Add Channel" round trips.
	Rules    string
	MaxRules int
}

// credFormat is one "Download Credentials" format, built into the page:
// the password is never kept on the server after the page is sent.
type credFormat struct {
	Name, Label, File string
	Body              string
	Href              template.URL // a data: URL of Body
}

type credData struct {
	Device   *auth.Device
	Password string
	Formats  []credFormat
	Reset    bool
}

var credFiles = map[string]struct{ label, file, mime string }{
	"text":    {"Plain text", "mqtt_credentials_%d.txt", "text/plain"},
	"env":     {"Environment (.env)", "mqtt_%d.env", "text/plain"},
	"arduino": {"Arduino (mqtt_secrets.h)", "mqtt_secrets.h", "text/plain"},
	"json":    {"JSON", "mqtt_device_%d.json", "application/json"},
}

func (c *Console) deviceRoutes(q *req, rest []string) bool {
	switch {
	case len(rest) == 0 || (len(rest) == 1 && rest[0] == ""):
		if q.post() {
			return false
		}
		c.deviceList(q)
	case len(rest) == 1 && rest[0] == "new":
		c.deviceEdit(q, nil)
	default:
		id, ok := pathID(rest[0])
		if !ok || len(rest) > 2 {
			return false
		}
		d, err := c.opts.Admin.Device(q.ctx(), id)
		if err != nil {
			c.adminError(q, err)
			return true
		}
		if len(rest) == 1 {
			c.deviceEdit(q, d)
			return true
		}
		switch rest[1] {
		case "password":
			c.resetPassword(q, d)
		case "delete":
			c.deleteDevice(q, d)
		default:
			return false
		}
	}
	return true
}

// channelNames maps channel IDs to names, and lists the channels.
func (c *Console) channelNames(q *req) (map[uint64]string, []*channels.Channel, error) {
	list, err := c.opts.Admin.ListChannels(q.ctx())
	if err != nil {
		return nil, nil, err
	}
	names := make(map[uint64]string, len(list))
	for _, ch := range list {
		names[ch.ID] = ch.Name
	}
	return names, list, nil
}

func rowsOf(grants []auth.Grant, names map[uint64]string) []grantRow {
	rows := make([]grantRow, len(grants))
	for i, g := range grants {
		name, ok := names[g.ChannelID]
		if !ok {
			name = "(deleted channel)"
		}
		rows[i] = grantRow{ChannelID: g.ChannelID, ChannelName: name, Publish: g.Publish, Subscribe: g.Subscribe}
	}
	return rows
}

func (c *Console) deviceList(q *req) {
	devs, err := c.opts.Admin.ListDevices(q.ctx())
	if err != nil {
		c.adminError(q, err)
		return
	}
	names, _, err := c.channelNames(q)
	if err != nil {
		c.adminError(q, err)
		return
	}
	d := devicesData{Count: len(devs), Max: c.opts.MaxDevices, MaxChannels: c.opts.MaxChannelsPerDevice}
	act, err := c.opts.Admin.DeviceActivity(q.ctx())
	if err != nil {
		// The list is still useful without live connections.
		d.ActivityNotShown = errText(err)
	}
	for _, dev := range devs {
		d.Rows = append(d.Rows, deviceRow{Device: dev, Grants: rowsOf(dev.Channels, names), Activity: act[dev.ID]})
	}
	c.render(q, http.StatusOK, "devices", page{Title: "Devices", Nav: "devices", Data: d})
}

// deviceEdit serves "Add a new device" (d nil) and "Edit". Without
// JavaScript, "Add Channel" and "Remove" are round trips that re-show
// the form with one row more or less; "Add Device" and "Save Device"
// submit it.
func (c *Console) deviceEdit(q *req, d *auth.Device) {
	title := "Add a new device"
	if d != nil {
		title = "Edit device"
	}
	names, list, err := c.channelNames(q)
	if err != nil {
		c.adminError(q, err)
		return
	}
	f := deviceForm{MaxChannels: c.opts.MaxChannelsPerDevice, Max: c.opts.MaxDevices, MaxRules: auth.MaxRules}
	if d == nil {
		devs, err := c.opts.Admin.ListDevices(q.ctx())
		if err != nil {
			c.adminError(q, err)
			return
		}
		f.Count = len(devs)
	} else {
		f.ID, f.ClientID, f.Name, f.Description = d.ID, d.ClientID, d.Name, d.Description
	}
	show := func(status int, msg string) {
		in := make(map[uint64]bool, len(f.Rows))
		for _, r := range f.Rows {
			in[r.ChannelID] = true
		}
		f.Choices = slices.DeleteFunc(slices.Clone(list), func(ch *channels.Channel) bool { return in[ch.ID] })
		c.render(q, status, "device", page{Title: title, Nav: "devices", Error: msg, Data: f})
	}
	if !q.post() {
		if d != nil {
			f.Rows = rowsOf(d.Channels, names)
			f.Rules = strings.Join(auth.RuleStrings(d.Rules), "\n")
		} else {
			f.FormID = randomToken()
		}
		show(http.StatusOK, "")
		return
	}
	f.Name, f.Description = strings.TrimSpace(q.form("name")), q.form("description")
	f.FormID = q.form("form_id") // kept over "Add Channel" round trips
	f.Rules = q.form("rules")
	grants, err := parseGrants(q.r.PostForm)
	if err != nil {
		show(http.StatusBadRequest, errText(err))
		return
	}
	f.Rows = rowsOf(grants, names)
	switch op := q.form("op"); {
	case op == "add":
		id, err := channels.ParseID(q.form("add_channel"))
		if _, ok := names[id]; err != nil || !ok {
			show(http.StatusBadRequest, "Choose a channel to add.")
			return
		}
		if slices.ContainsFunc(grants, func(g auth.Grant) bool { return g.ChannelID == id }) {
			show(http.StatusBadRequest, "That channel is in the list already.")
			return
		}
		if f.MaxChannels > 0 && len(grants) >= f.MaxChannels {
			show(http.StatusConflict, "A device may be authorized for at most "+strconv.Itoa(f.MaxChannels)+" channels.")
			return
		}
		// A new row allows both, as most devices publish and listen.
		f.Rows = append(f.Rows, grantRow{ChannelID: id, ChannelName: names[id], Publish: true, Subscribe: true})
		show(http.StatusOK, "")
		return
	case strings.HasPrefix(op, "remove:"):
		id, err := channels.ParseID(strings.TrimPrefix(op, "remove:"))
		if err == nil {
			f.Rows = slices.DeleteFunc(f.Rows, func(r grantRow) bool { return r.ChannelID == id })
		}
		show(http.StatusOK, "")
		return
	case op != "" && op != "save":
		show(http.StatusBadRequest, "Unknown button.")
		return
	}
	// A form without the box (a page from before it existed) keeps the
	// device's rules.
	var rules *[]auth.Rule
	if q.r.PostForm.Has("rules") {
		rs, err := parseRulesBox(f.Rules)
		if err != nil {
			show(http.StatusBadRequest, errText(err))
			return
		}
		rules = &rs
	}
	if d == nil {
		if !c.sentOnce(q) {
			return
		}
		spec := auth.DeviceSpec{Name: f.Name, Description: f.Description, Grants: grants}
		if rules != nil {
			spec.Rules = *rules
		}
		creds, err := c.opts.Admin.CreateDevice(q.ctx(), spec)
		if err != nil {
			c.sessions.forget(q.ss, f.FormID) // no device: the corrected form may be sent
			if status, ok := formError(err); ok {
				show(status, errText(err))
				return
			}
			c.adminError(q, err)
			return
		}
		c.credentials(q, creds, false)
		return
	}
	_, err = c.opts.Admin.UpdateDevice(q.ctx(), d.ID, auth.DeviceUpdate{Name: &f.Name, Description: &f.Description, Grants: &grants, Rules: rules})
	if err != nil {
		if status, ok := formError(err); ok {
			show(status, errText(err))
			return
		}
		c.adminError(q, err)
		return
	}
	http.Redirect(q.w, q.r, "/console/devices?done=dsaved", http.StatusSeeOther)
}

// credentials shows a device's new password, once: it is the answer to
// the POST that made it, and the page carries every download format as a
// data: URL (and as text for copying), so the server keeps nothing.
func (c *Console) credentials(q *req, creds *auth.Credentials, reset bool) {
	d := credData{Device: creds.Device, Password: creds.Password, Reset: reset}
	for _, name := range auth.CredentialFormats() {
		var b bytes.Buffer
		if err := auth.WriteCredentials(&b, name, creds); err != nil {
			c.adminError(q, err)
			return
		}
		meta, ok := credFiles[name]
		if !ok {
			meta.label, meta.file, meta.mime = name, "mqtt_credentials_%d."+name, "text/plain"
		}
		file := meta.file
		if strings.Contains(file, "%d") {
			file = strings.Replace(file, "%d", strconv.FormatUint(creds.Device.ID, 10), 1)
		}
		d.Formats = append(d.Formats, credFormat{
			Name: name, Label: meta.label, File: file, Body: b.String(),
			Href: template.URL("data:" + meta.mime + ";charset=utf-8," + url.PathEscape(b.String())),
		})
	}
	c.render(q, http.StatusOK, "credentials", page{Title: "Device credentials", Nav: "devices", Data: d})
}

func (c *Console) resetPassword(q *req, d *auth.Device) {
	if !confirmed(q) {
		c.confirm(q, "Regenerate password", confirmData{
			Heading: "Regenerate the password of " + d.Name + "?",
			Text:    "A new password is generated and shown once. The old one stops working at once, and live connections that signed in with it are closed.",
			Action:  idPath("/console/devices/", d.ID) + "/password", Check: "Yes, replace this device's password",
			Button: "Regenerate password", Cancel: "/console/devices", FormID: randomToken(),
		})
		return
	}
	if !c.sentOnce(q) {
		return
	}
	creds, err := c.opts.Admin.ResetPassword(q.ctx(), d.ID)
	if err != nil {
		c.sessions.forget(q.ss, q.form("form_id"))
		c.adminError(q, err)
		return
	}
	c.credentials(q, creds, true)
}

func (c *Console) deleteDevice(q *req, d *auth.Device) {
	if !confirmed(q) {
		c.confirm(q, "Delete device", confirmData{
			Heading: "Delete device " + d.Name + "?",
			Text:    "Its credentials stop working at once and its live connections are closed. Channels and their data stay.",
			Action:  idPath("/console/devices/", d.ID) + "/delete", Check: "Yes, delete this device",
			Button: "Delete device", Cancel: "/console/devices",
		})
		return
	}
	if err := c.opts.Admin.DeleteDevice(q.ctx(), d.ID); err != nil {
		c.adminError(q, err)
		return
	}
	http.Redirect(q.w, q.r, "/console/devices?done=ddeleted", http.StatusSeeOther)
}
