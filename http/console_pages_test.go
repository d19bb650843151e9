package httpd_test

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// TestConsoleChannels walks the channel pages: create, list, settings
// with both keys, regenerate a key, clear and delete behind a
// confirmation.
func TestConsoleChannels(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	p := b.get("/console/channels/new")
	for _, l := range []string{"Name", "Description", "Field 1", "Field 8", "Latitude", "Longitude", "Elevation (m)", "Metadata", "Tags (comma-separated)", "URL"} {
		if !strings.Contains(p.body, ">"+l+"</label>") {
			t.Errorf("new channel form lacks the label %q", l)
		}
	}
	p = b.post("/console/channels/new", url.Values{"name": {"Greenhouse <north>"}, "description": {"Climate"},
		"field1": {"Temperature"}, "field2": {"Humidity"}})
	if p.status != http.StatusSeeOther || p.resp.Header.Get("Location") != "/console/channels/1?done=created" {
		t.Fatalf("create: %d %s\n%s", p.status, p.resp.Header.Get("Location"), p.body)
	}
	ch, err := e.svc.Channel(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Name != "Greenhouse <north>" || ch.Fields[1] != "Humidity" || ch.Fields[2] != "" || ch.Public {
		t.Errorf("created %+v", ch)
	}
	e.appendEntry(1, time.Date(2026, 12, 6, 9, 30, 0, 0, time.UTC))
	p = b.get("/console/channels")
	if !strings.Contains(p.body, "Greenhouse &lt;north&gt;") || !strings.Contains(p.body, "2026-12-06 09:30:00 UTC") ||
		!strings.Contains(p.body, `badge private`) || !strings.Contains(p.body, "New channel") {
		t.Errorf("list:\n%s", p.body)
	}
	p = b.get("/console/channels/1?done=created")
	if !strings.Contains(p.body, ch.WriteKey) || !strings.Contains(p.body, ch.ReadKey) || !strings.Contains(p.body, "Channel created.") {
		t.Errorf("settings page lacks the keys or the notice:\n%s", p.body)
	}
	if p.resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", p.resp.Header.Get("Cache-Control"))
	}
	// Settings: the whole form is saved; an empty label turns a field off.
	form := url.Values{"name": {"Greenhouse"}, "description": {"Climate"}, "field1": {"Temp"}, "public": {"on"}}
	if p := b.post("/console/channels/1", form); p.status != http.StatusSeeOther {
		t.Fatalf("save: %d\n%s", p.status, p.body)
	}
	ch2, _ := e.svc.Channel(t.Context(), 1)
	if ch2.Name != "Greenhouse" || !ch2.Public || ch2.Fields[0] != "Temp" || ch2.Fields[1] != "" {
		t.Errorf("saved %+v", ch2)
	}
	if p := b.post("/console/channels/1", url.Values{"name": {"Greenhouse"}}); p.status != http.StatusBadRequest || !strings.Contains(p.body, "at least one enabled field") {
		t.Errorf("no fields: %d\n%s", p.status, p.body)
	}
	// Location, metadata, tags and URL.
	form.Set("latitude", "52.52")
	form.Set("longitude", "13.405")
	form.Set("elevation", "34")
	form.Set("metadata", `{"room":"north"}`)
	form.Set("tags", "garden, climate,,")
	form.Set("url", "https://example.com/greenhouse")
	if p := b.post("/console/channels/1", form); p.status != http.StatusSeeOther {
		t.Fatalf("save settings: %d\n%s", p.status, p.body)
	}
	ch2, _ = e.svc.Channel(t.Context(), 1)
	if ch2.Latitude != "52.52" || ch2.Longitude != "13.405" || ch2.Elevation != "34" || ch2.Metadata != `{"room":"north"}` ||
		!slices.Equal(ch2.Tags, []string{"garden", "climate"}) || ch2.URL != "https://example.com/greenhouse" {
		t.Errorf("settings %+v", ch2)
	}
	if p := b.get("/console/channels/1"); !strings.Contains(p.body, `value="garden, climate"`) || !strings.Contains(p.body, `value="52.52"`) {
		t.Errorf("settings page does not show the settings:\n%s", p.body)
	}
	form.Set("latitude", "91")
	if p := b.post("/console/channels/1", form); p.status != http.StatusBadRequest || !strings.Contains(p.body, "atitude") || !strings.Contains(p.body, `value="91"`) {
		t.Errorf("latitude 91: %d\n%s", p.status, p.body)
	}
	form.Set("latitude", "")
	if p := b.post("/console/channels/1", form); p.status != http.StatusSeeOther {
		t.Errorf("unset latitude: %d", p.status)
	}
	if c, _ := e.svc.Channel(t.Context(), 1); c.Latitude != "" || c.Longitude != "13.405" {
		t.Errorf("after unsetting the latitude: %+v", c)
	}
	// Keys.
	if p := b.post("/console/channels/1/keys", url.Values{"key": {"write"}}); p.status != http.StatusSeeOther {
		t.Fatalf("regenerate: %d", p.status)
	}
	ch3, _ := e.svc.Channel(t.Context(), 1)
	if ch3.WriteKey == ch2.WriteKey || ch3.ReadKey != ch2.ReadKey {
		t.Error("write key regeneration changed the wrong key")
	}
	if p := b.post("/console/channels/1/keys", url.Values{"key": {"read"}}); p.status != http.StatusSeeOther {
		t.Fatalf("regenerate: %d", p.status)
	}
	if ch4, _ := e.svc.Channel(t.Context(), 1); ch4.ReadKey == ch3.ReadKey {
		t.Error("read key not regenerated")
	}
	if p := b.post("/console/channels/1/keys", url.Values{"key": {"both"}}); p.status != http.StatusBadRequest {
		t.Errorf("key=both: %d", p.status)
	}
	// Clear: without the checkbox only the confirmation shows.
	p = b.get("/console/channels/1/clear")
	if p.status != 200 || !strings.Contains(p.body, `type="checkbox" name="confirm" value="yes" required`) {
		t.Errorf("clear confirmation:\n%s", p.body)
	}
	if p := b.post("/console/channels/1/clear", nil); p.status != 200 || !strings.Contains(p.body, "Clear the feed") {
		t.Errorf("clear without confirm: %d", p.status)
	}
	if c, _ := e.svc.Channel(t.Context(), 1); c.LastEntryID != 1 {
		t.Fatal("cleared without confirmation")
	}
	if p := b.post("/console/channels/1/clear", url.Values{"confirm": {"yes"}}); p.status != http.StatusSeeOther {
		t.Fatalf("clear: %d", p.status)
	}
	if c, _ := e.svc.Channel(t.Context(), 1); c.LastEntryID != 0 {
		t.Error("not cleared")
	}
	// Delete.
	if p := b.post("/console/channels/1/delete", nil); p.status != 200 {
		t.Errorf("delete without confirm: %d", p.status)
	}
	if p := b.post("/console/channels/1/delete", url.Values{"confirm": {"yes"}}); p.status != http.StatusSeeOther || p.resp.Header.Get("Location") != "/console/channels?done=deleted" {
		t.Fatalf("delete: %d", p.status)
	}
	if _, err := e.svc.Channel(t.Context(), 1); channels.ErrorCode(err) != channels.ENOTFOUND {
		t.Errorf("after delete: %v", err)
	}
	if p := b.get("/console/channels/1"); p.status != http.StatusNotFound || !strings.Contains(p.body, "not found") {
		t.Errorf("deleted channel: %d\n%s", p.status, p.body)
	}
}

func (e *consoleEnv) appendEntry(ch uint64, at time.Time) {
	e.t.Helper()
	en := &channels.Entry{ChannelID: ch, CreatedAt: at}
	en.Values[0], en.Set = "21", 1
	if err := e.db.AppendEntry(e.t.Context(), en); err != nil {
		e.t.Fatal(err)
	}
}

var (
	passwordRE = regexp.MustCompile(`<code id="password">([^<]+)</code>`)
	clientRE   = regexp.MustCompile(`<code id="client-id">([^<]+)</code>`)
)

// TestConsoleDevices walks ThingSpeak's device flow: "Add a new device",
// "Add Channel", the rights, "Add Device", credentials shown once with
// their downloads, the list with live connections, "Edit", regenerate
// password and delete.
func TestConsoleDevices(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	for _, name := range []string{"Garden", "Cellar", "Attic"} {
		if _, err := e.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: name, Fields: [8]string{"t"}}); err != nil {
			t.Fatal(err)
		}
	}
	p := b.get("/console/devices")
	if !strings.Contains(p.body, "0 of 3 devices") || !strings.Contains(p.body, "Add a new device") {
		t.Errorf("empty list:\n%s", p.body)
	}
	p = b.get("/console/devices/new")
	for _, s := range []string{">Name</label>", ">Description</label>", "Authorize Channels", ">Add Channel</button>", ">Add Device</button>", `<option value="2">Cellar (2)</option>`} {
		if !strings.Contains(p.body, s) {
			t.Errorf("add form lacks %q", s)
		}
	}
	// "Add Channel" is a round trip that adds a row allowing both.
	p = b.post("/console/devices/new", url.Values{"name": {"ESP32"}, "op": {"add"}, "add_channel": {"2"}})
	if p.status != 200 || !strings.Contains(p.body, `name="channel" value="2"`) || !strings.Contains(p.body, `name="publish" value="2" checked`) ||
		strings.Contains(p.body, `<option value="2">`) || !strings.Contains(p.body, `value="ESP32"`) {
		t.Fatalf("add channel:\n%s", p.body)
	}
	p = b.post("/console/devices/new", url.Values{"name": {"ESP32"}, "op": {"add"}, "add_channel": {"2"}, "channel": {"2"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "in the list already") {
		t.Errorf("duplicate: %d", p.status)
	}
	p = b.post("/console/devices/new", url.Values{"op": {"add"}, "add_channel": {"3"}, "channel": {"1", "2"}})
	if p.status != http.StatusConflict || !strings.Contains(p.body, "at most 2 channels") {
		t.Errorf("third channel: %d\n%s", p.status, p.body)
	}
	p = b.post("/console/devices/new", url.Values{"op": {"remove:2"}, "channel": {"1", "2"}, "publish": {"1", "2"}})
	if !strings.Contains(p.body, `name="channel" value="1"`) || strings.Contains(p.body, `name="channel" value="2"`) {
		t.Errorf("remove:\n%s", p.body)
	}
	p = b.post("/console/devices/new", url.Values{"op": {"add"}, "add_channel": {"99"}})
	if p.status != http.StatusBadRequest {
		t.Errorf("missing channel: %d", p.status)
	}
	p = b.post("/console/devices/new", url.Values{"name": {"ESP32"}, "op": {"save"}, "channel": {"2"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "needs publish, subscribe or both") {
		t.Errorf("no rights: %d\n%s", p.status, p.body)
	}
	// "Add Device".
	p = b.post("/console/devices/new", url.Values{"name": {"ESP32"}, "description": {"north bed"}, "op": {"save"},
		"channel": {"2"}, "publish": {"2"}, "subscribe": {"2"}})
	if p.status != 200 {
		t.Fatalf("add device: %d\n%s", p.status, p.body)
	}
	m, cm := passwordRE.FindStringSubmatch(p.body), clientRE.FindStringSubmatch(p.body)
	if m == nil || cm == nil {
		t.Fatalf("credentials page:\n%s", p.body)
	}
	password, clientID := m[1], cm[1]
	dev, err := e.svc.Device(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if dev.ClientID != clientID || auth.HashPassword(password) != dev.PasswordHash {
		t.Fatal("the page shows other credentials than the device's")
	}
	if g, ok := dev.Grant(2); !ok || !g.Publish || !g.Subscribe || len(dev.Channels) != 1 {
		t.Errorf("grants %+v", dev.Channels)
	}
	for _, s := range []string{`download="mqtt_secrets.h"`, `download="mqtt_device_1.json"`, `download="mqtt_1.env"`, `download="mqtt_credentials_1.txt"`,
		`href="data:text/plain;charset=utf-8,`, "publish to <code>channels/2/publish</code>, subscribe to <code>channels/2/subscribe</code>", `aria-label="Copy password"`, `>Done</a>`, "#define SECRET_MQTT_PASSWORD &#34;" + password} {
		if !strings.Contains(p.body, s) {
			t.Errorf("credentials page lacks %q", s)
		}
	}
	if p.resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("credentials page may be cached")
	}
	// Reloading the answer sends the form again: no second device.
	again := url.Values{"name": {"ESP32"}, "op": {"save"}, "channel": {"2"}, "publish": {"2"}, "form_id": {"reload-reload-reload"}}
	if p := b.post("/console/devices/new", again); p.status != 200 {
		t.Fatalf("first send: %d", p.status)
	}
	if p := b.post("/console/devices/new", again); p.status != http.StatusConflict || !strings.Contains(p.body, "sent already") {
		t.Errorf("second send: %d\n%s", p.status, p.body)
	}
	if p := b.post("/console/devices/new", url.Values{"name": {"x"}, "form_id": {""}}); p.status != http.StatusBadRequest {
		t.Errorf("no form id: %d", p.status)
	}
	if devs, _ := e.svc.ListDevices(t.Context()); len(devs) != 2 {
		t.Fatalf("%d devices", len(devs))
	}
	if err := e.svc.DeleteDevice(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	if p := b.get("/console/devices/new"); !strings.Contains(p.body, `name="form_id" value="`) {
		t.Error("the form has no one-time id")
	}
	// Shown once: no other page has the password.
	since := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	e.admin.activity = map[uint64]auth.Activity{1: {Connections: []auth.Connection{{ClientID: clientID, RemoteAddr: "192.0.2.7:51234", Listener: "mqtt", Since: since}}, LastPublish: &since}}
	p = b.get("/console/devices")
	if strings.Contains(p.body, password) {
		t.Error("the list shows the password")
	}
	for _, s := range []string{"1 of 3 devices", "ESP32", "Cellar", ">publish<", ">subscribe<", "since 2026-12-06 09:00:00 UTC", "192.0.2.7:51234 on mqtt", `aria-label="Edit ESP32"`} {
		if !strings.Contains(p.body, s) {
			t.Errorf("list lacks %q", s)
		}
	}
	if p := b.get("/console/devices/1"); strings.Contains(p.body, password) || !strings.Contains(p.body, `name="subscribe" value="2" checked`) ||
		!strings.Contains(p.body, `<code id="client-id">`+clientID+`</code>`) || !strings.Contains(p.body, `href="/console/devices/1/password"`) {
		t.Errorf("edit page:\n%s", p.body)
	}
	// "Edit" sends the whole grant list.
	if p := b.post("/console/devices/1", url.Values{"name": {"ESP32-b"}, "description": {""}, "op": {"save"}, "channel": {"2", "1"}, "subscribe": {"1"}, "publish": {"2"}}); p.status != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", p.status, p.body)
	}
	if dev, _ := e.svc.Device(t.Context(), 1); dev.Name != "ESP32-b" || dev.Description != "" || len(dev.Channels) != 2 ||
		dev.Channels[0] != (auth.Grant{ChannelID: 2, Publish: true}) || dev.Channels[1] != (auth.Grant{ChannelID: 1, Subscribe: true}) {
		t.Errorf("edited %+v", dev)
	}
	// Regenerate password: confirmation, then new credentials once.
	if p := b.post("/console/devices/1/password", nil); p.status != 200 || !strings.Contains(p.body, "Regenerate the password") {
		t.Errorf("confirm: %d", p.status)
	}
	p = b.post("/console/devices/1/password", url.Values{"confirm": {"yes"}})
	m = passwordRE.FindStringSubmatch(p.body)
	if p.status != 200 || m == nil || m[1] == password {
		t.Fatalf("reset: %d\n%s", p.status, p.body)
	}
	if dev, _ := e.svc.Device(t.Context(), 1); auth.HashPassword(m[1]) != dev.PasswordHash {
		t.Error("reset shows another password than the stored one")
	}
	// Limits: 3 devices; the fourth is refused with the service's message.
	for i := 2; i <= 3; i++ {
		if p := b.post("/console/devices/new", url.Values{"name": {"d" + strconv.Itoa(i)}, "channel": {"1"}, "publish": {"1"}}); p.status != 200 {
			t.Fatalf("device %d: %d", i, p.status)
		}
	}
	if p := b.get("/console/devices"); !strings.Contains(p.body, "3 of 3 devices") || strings.Contains(p.body, `href="/console/devices/new"`) {
		t.Errorf("full list:\n%s", p.body)
	}
	if p := b.post("/console/devices/new", url.Values{"name": {"d4"}, "channel": {"1"}, "publish": {"1"}}); p.status != http.StatusConflict || !strings.Contains(p.body, "Device limit reached (3 devices)") {
		t.Errorf("fourth device: %d\n%s", p.status, p.body)
	}
	// Delete.
	if p := b.post("/console/devices/1/delete", url.Values{"confirm": {"yes"}}); p.status != http.StatusSeeOther {
		t.Fatalf("delete: %d", p.status)
	}
	if p := b.get("/console/devices/1"); p.status != http.StatusNotFound {
		t.Errorf("deleted device: %d", p.status)
	}
}

// TestConsoleLogsNoSecrets: passwords, tokens, session ids and device
// passwords never reach the log, however a flow goes.
func TestConsoleLogsNoSecrets(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	bad := e.browser()
	bad.post("/console/setup", url.Values{"token": {"guessed-token-xyz"}, "password": {"guess-pw-1"}, "confirm": {"guess-pw-1"}})
	b := e.setup(ownerPassword)
	e.browser().post("/console/signin", url.Values{"password": {"guess-pw-2"}})
	b.post("/console/password", url.Values{"current": {"guess-pw-3"}, "password": {"x"}, "confirm": {"x"}})
	e.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "c", Fields: [8]string{"t"}})
	p := b.post("/console/devices/new", url.Values{"name": {"d"}, "channel": {"1"}, "publish": {"1"}})
	m := passwordRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatal("no credentials")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "sign-in failed") || !strings.Contains(logs, "setup token refused") {
		t.Fatalf("the failures were not logged:\n%s", logs)
	}
	for _, secret := range []string{"guessed-token-xyz", "guess-pw-1", "guess-pw-2", "guess-pw-3", ownerPassword, setupToken, b.cookie().Value, b.csrf, m[1]} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains the secret %q:\n%s", secret, logs)
		}
	}
}

// A textarea's line breaks arrive as CRLF; they are stored as LF, so a
// description the page allowed (maxlength counts a break once) fits.
func TestConsoleTextareaLineBreaks(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	desc := strings.Repeat("x", 999) + "\r\n" + strings.Repeat("y", 999) + "\r\n" // 2000 characters in the page
	p := b.post("/console/channels/new", url.Values{"name": {"Lines"}, "description": {desc}, "field1": {"T"},
		"metadata": {"{\r\n\"a\": 1\r\n}"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("create: %d\n%s", p.status, p.body)
	}
	ch, err := e.svc.Channel(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.ReplaceAll(desc, "\r\n", "\n"); ch.Description != want || ch.Metadata != "{\n\"a\": 1\n}" {
		t.Errorf("stored %q / %q", ch.Description, ch.Metadata)
	}
}

// TestConsoleEntryCount checks that the console says how many entries a
// feed holds, not its last entry_id, once retention dropped some.
func TestConsoleEntryCount(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	ch, err := e.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "capped", Fields: [8]string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		e.appendEntry(ch.ID, e.clock.now().Add(time.Duration(i-10)*time.Minute))
	}
	three := uint64(3)
	if _, err := e.svc.UpdateChannel(t.Context(), ch.ID, auth.ChannelUpdate{MaxEntries: &three}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Prune(t.Context(), e.clock.now()); err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatUint(ch.ID, 10)
	if p := b.get("/console/channels"); !strings.Contains(p.body, `<td data-label="Entries">3</td>`) {
		t.Errorf("channel list:\n%s", p.body)
	}
	if p := b.get("/console/channels/" + id); !strings.Contains(p.body, "The feed has 3 entries (the last is number 8).") {
		t.Errorf("channel page:\n%s", p.body)
	}
	if p := b.get("/console/channels/" + id + "/clear"); !strings.Contains(p.body, "All 3 entries of channel "+id) {
		t.Errorf("clear confirmation:\n%s", p.body)
	}
}
