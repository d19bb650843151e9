package httpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mgmt is a Server whose API fronts a real admin.Local on a temporary
// database, reached over real HTTP requests on the loopback interface.
type mgmt struct {
	t    *testing.T
	base string
	db   testStore
	adm  httpd.Admin
	srv  *httpd.Server
	key  string // the owner's user API key
	logs *syncBuffer
}

type mgmtOptions struct {
	limits  auth.Limits
	backoff auth.Backoff
	noAdmin bool
	// maxBodies is APIOptions.MaxBodyBytesInFlight; console serves the
	// console too.
	maxBodies int64
	console   bool
}

func newMgmt(t *testing.T, o mgmtOptions) *mgmt {
	t.Helper()
	db := openStore(t, nil)
	if o.limits == (auth.Limits{}) {
		o.limits = auth.DefaultLimits()
	}
	l, err := admin.NewLocal(context.Background(), db, o.limits)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := l.Account(context.Background())
	if err != nil || len(acct.UserAPIKey) != 16 {
		t.Fatalf("account: %+v, %v", acct, err)
	}
	if o.backoff == (auth.Backoff{}) {
		o.backoff = auth.Backoff{AfterFailures: 3, Initial: time.Minute, Max: time.Minute}
	}
	m := &mgmt{t: t, db: db, logs: &syncBuffer{}}
	m.adm, m.key = l, acct.UserAPIKey
	api := httpd.APIOptions{
		Store: db, Registry: l.Registry, Publisher: &fakePublisher{store: db},
		KeyThrottle:          auth.NewThrottle(o.backoff),
		MaxBodyBytesInFlight: o.maxBodies,
	}
	var console *httpd.ConsoleOptions
	if o.console {
		console = &httpd.ConsoleOptions{Admin: l}
	}
	if !o.noAdmin {
		api.Admin = m.adm
	}
	m.srv = httpd.NewServer(httpd.ServerOptions{
		Addr:      "127.0.0.1:0",
		Logger:    slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		API:       api,
		Dashboard: httpd.DashboardOptions{Store: db, Registry: l.Registry, Watcher: nopWatcher{}},
		Console:   console,
	})
	if err := m.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.srv.Close() })
	m.base = "http://" + m.srv.Addr().String()
	return m
}

// mresp is an answer to a management request.
type mresp struct {
	status int
	header http.Header
	body   string
}

// do sends a request; body is form-encoded unless it starts with { or [.
func (m *mgmt) do(method, path, body string, header ...string) mresp {
	m.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, m.base+path, rd)
	if err != nil {
		m.t.Fatal(err)
	}
	if body != "" {
		ct := "application/x-www-form-urlencoded"
		if body[0] == '{' || body[0] == '[' {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		m.t.Fatal(err)
	}
	return mresp{resp.StatusCode, resp.Header, string(b)}
}

// ok checks a 200 JSON answer and decodes it into v.
func (r mresp) ok(t *testing.T, v any) {
	t.Helper()
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, Content-Type %q, body %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.body), v); err != nil {
			t.Fatalf("decode %s: %v", r.body, err)
		}
	}
}

// refused checks an error answer in ThingSpeak's shape whose details
// contain detail.
func (r mresp) refused(t *testing.T, status int, code, detail string) {
	t.Helper()
	var e struct {
		Status string `json:"status"`
		Error  struct {
			Code    string `json:"error_code"`
			Details string `json:"details"`
		} `json:"error"`
	}
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if e.Status != fmt.Sprint(status) || e.Error.Code != code || !strings.Contains(e.Error.Details, detail) {
		t.Fatalf("error %+v, want %d %s with %q", e, status, code, detail)
	}
}

// settingsJSON is a channel as the settings API answers it.
type settingsJSON struct {
	ID          uint64  `json:"id"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Latitude    *string `json:"latitude"`
	Longitude   *string `json:"longitude"`
	CreatedAt   string  `json:"created_at"`
	Elevation   string  `json:"elevation"`
	LastEntryID *uint64 `json:"last_entry_id"`
	PublicFlag  bool    `json:"public_flag"`
	URL         string  `json:"url"`
	Metadata    string  `json:"metadata"`
	Field1      *string `json:"field1"`
	Field2      *string `json:"field2"`
	Field3      *string `json:"field3"`
	Tags        []struct {
		Name string `json:"name"`
	} `json:"tags"`
	APIKeys []struct {
		Key   string `json:"api_key"`
		Write bool   `json:"write_flag"`
	} `json:"api_keys"`
}

func (s settingsJSON) keys() (write, read string) {
	for _, k := range s.APIKeys {
		if k.Write {
			write = k.Key
		} else {
			read = k.Key
		}
	}
	return write, read
}

// createChannel creates a channel through the API.
func (m *mgmt) createChannel(form string) settingsJSON {
	m.t.Helper()
	var s settingsJSON
	m.do("POST", "/channels.json", "api_key="+m.key+"&"+form).ok(m.t, &s)
	return s
}

func TestManageChannelLifecycle(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	c := m.createChannel("name=Garden&description=Beds+and+pond&field1=Soil&field3=Air&public_flag=false")
	write, read := c.keys()
	if c.ID != 1 || c.Name != "Garden" || c.Description != "Beds and pond" || c.PublicFlag ||
		c.Field1 == nil || *c.Field1 != "Soil" || c.Field2 != nil || c.Field3 == nil || *c.Field3 != "Air" ||
		c.LastEntryID != nil || !channels.ValidKey(write) || !channels.ValidKey(read) || write == read || c.CreatedAt == "" {
		t.Fatalf("created: %+v", c)
	}
	// The answer's key order is ThingSpeak's.
	raw := m.do("GET", "/channels/1.json?api_key="+m.key, "").body
	order := []string{`"id"`, `"name"`, `"description"`, `"latitude"`, `"longitude"`, `"created_at"`, `"elevation"`,
		`"last_entry_id"`, `"public_flag"`, `"url"`, `"metadata"`, `"field1"`, `"field3"`, `"tags"`, `"api_keys"`}
	last := -1
	for _, k := range order {
		i := strings.Index(raw, k)
		if i <= last {
			t.Fatalf("key %s out of order in %s", k, raw)
		}
		last = i
	}
	if !strings.Contains(raw, `"latitude":null,"longitude":null`) || !strings.Contains(raw, `"elevation":""`) ||
		!strings.Contains(raw, `"api_keys":[{"api_key":"`+write+`","write_flag":true},{"api_key":"`+read+`","write_flag":false}]`) {
		t.Errorf("settings: %s", raw)
	}

	// A private channel's settings need the user key: none, its read
	// key and its write key are refused.
	m.do("GET", "/channels/1.json", "").refused(t, 401, "error_auth_required", "authentication")
	m.do("GET", "/channels/1.json?api_key="+read, "").refused(t, 401, "error_auth_required", "")
	m.do("GET", "/channels/1.json", "", "THINGSPEAKAPIKEY", write).refused(t, 401, "error_auth_required", "")
	var viaHeader settingsJSON
	m.do("GET", "/channels/1.json", "", "THINGSPEAKAPIKEY", m.key).ok(t, &viaHeader)
	if viaHeader.ID != 1 || len(viaHeader.APIKeys) != 2 {
		t.Errorf("with the header key: %+v", viaHeader)
	}

	// PUT changes what it gives, nothing else.
	var u settingsJSON
	m.do("PUT", "/channels/1.json", "api_key="+m.key+"&name=Garden+2&public_flag=true&field3=").ok(t, &u)
	if u.Name != "Garden 2" || u.Description != "Beds and pond" || !u.PublicFlag || u.Field3 != nil || u.Field1 == nil {
		t.Fatalf("updated: %+v", u)
	}
	if w2, r2 := u.keys(); w2 != write || r2 != read {
		t.Errorf("keys changed by an update: %s %s", w2, r2)
	}
	// JSON bodies too; the key may be in the body.
	m.do("PUT", "/channels/1.json", `{"api_key":"`+m.key+`","description":"Pond only","field2":"Water"}`).ok(t, &u)
	if u.Description != "Pond only" || u.Field2 == nil || *u.Field2 != "Water" || u.Name != "Garden 2" {
		t.Fatalf("updated by JSON: %+v", u)
	}
	// Now public: anyone reads the settings, without keys.
	pub := m.do("GET", "/channels/1.json", "")
	var p settingsJSON
	pub.ok(t, &p)
	if p.ID != 1 || p.APIKeys != nil || strings.Contains(pub.body, write) || strings.Contains(pub.body, read) {
		t.Errorf("public settings show keys: %s", pub.body)
	}

	// The owner's list has the keys.
	m.createChannel("name=Cellar")
	var list []settingsJSON
	m.do("GET", "/channels.json?api_key="+m.key, "").ok(t, &list)
	if len(list) != 2 || list[0].ID != 1 || list[1].Name != "Cellar" || len(list[1].APIKeys) != 2 {
		t.Fatalf("list: %+v", list)
	}
	// Without field parameters a channel gets the default fields.
	if list[1].Field1 == nil || list[1].Field3 == nil {
		t.Errorf("default fields: %+v", list[1])
	}

	// Clear answers [] and numbering restarts at 1.
	for range 3 {
		e := &channels.Entry{ChannelID: 1}
		e.SetValue(0, "7")
		if err := m.db.AppendEntry(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	m.do("GET", "/channels/1.json?api_key="+m.key, "").ok(t, &u)
	if u.LastEntryID == nil || *u.LastEntryID != 3 {
		t.Fatalf("last_entry_id before clear: %v", u.LastEntryID)
	}
	r := m.do("DELETE", "/channels/1/feeds.json?api_key="+m.key, "")
	if r.status != 200 || r.body != "[]" {
		t.Fatalf("clear: %d %s", r.status, r.body)
	}
	m.do("GET", "/channels/1.json?api_key="+m.key, "").ok(t, &u)
	if u.LastEntryID != nil {
		t.Errorf("last_entry_id after clear: %v", *u.LastEntryID)
	}
	e := &channels.Entry{ChannelID: 1}
	e.SetValue(0, "8")
	if err := m.db.AppendEntry(context.Background(), e); err != nil || e.ID != 1 {
		t.Errorf("entry after clear: id %d, %v", e.ID, err)
	}
	// ThingSpeak's spelling without the extension clears too.
	if r := m.do("DELETE", "/channels/1/feeds", "", "THINGSPEAKAPIKEY", m.key); r.status != 200 || r.body != "[]" {
		t.Errorf("DELETE /channels/1/feeds: %d %s", r.status, r.body)
	}
	if r := m.do("GET", "/channels/1/feeds.json", ""); r.status != 200 || !strings.Contains(r.body, `"feeds":[]`) {
		t.Errorf("feed after clear: %d %s", r.status, r.body)
	}

	// Delete answers the channel as it was, without its keys.
	r = m.do("DELETE", "/channels/1.json?api_key="+m.key, "")
	var d settingsJSON
	r.ok(t, &d)
	if d.ID != 1 || d.Name != "Garden 2" || d.APIKeys != nil {
		t.Errorf("deleted: %s", r.body)
	}
	m.do("GET", "/channels/1.json?api_key="+m.key, "").refused(t, 404, "error_resource_not_found", "")
	m.do("DELETE", "/channels/1.json?api_key="+m.key, "").refused(t, 404, "error_resource_not_found", "")
	m.do("GET", "/channels.json?api_key="+m.key, "").ok(t, &list)
	if len(list) != 1 || list[0].Name != "Cellar" {
		t.Errorf("list after delete: %+v", list)
	}
}

func TestManageCreateJSON(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	var c settingsJSON
	m.do("POST", "/channels.json", `{"name":"Bench","field1":"Volts","field2":12,"public_flag":true}`,
		"THINGSPEAKAPIKEY", m.key).ok(t, &c)
	if c.Name != "Bench" || !c.PublicFlag || c.Field2 == nil || *c.Field2 != "12" || c.Field3 != nil || len(c.APIKeys) != 2 {
		t.Fatalf("created: %+v", c)
	}
	// A form body with the key in the query string.
	m.do("POST", "/channels.json?api_key="+m.key, "name=Shed&public_flag=1").ok(t, &c)
	if c.ID != 2 || !c.PublicFlag {
		t.Fatalf("created: %+v", c)
	}
}

func TestManagePublicChannels(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	for i := 1; i <= 22; i++ {
		pub := i%11 != 0 // channels 11 and 22 are private
		m.createChannel(fmt.Sprintf("name=Station+%d&public_flag=%t", i, pub))
	}
	type page struct {
		Pagination struct {
			Page    int `json:"current_page"`
			PerPage int `json:"per_page"`
			Total   int `json:"total_entries"`
		} `json:"pagination"`
		Channels []settingsJSON `json:"channels"`
	}
	for _, tc := range []struct {
		query      string
		page       int
		n          int
		first      uint64
		needsNoKey bool
	}{
		{"", 1, 15, 1, true},
		{"?page=1", 1, 15, 1, true},
		{"?page=2", 2, 5, 17, true},
		{"?page=3", 3, 0, 0, true},
		{"?page=2&api_key=" + m.key, 2, 5, 17, false}, // a key changes nothing
	} {
		r := m.do("GET", "/channels/public.json"+tc.query, "")
		var p page
		r.ok(t, &p)
		if p.Pagination.Page != tc.page || p.Pagination.PerPage != 15 || p.Pagination.Total != 20 || len(p.Channels) != tc.n {
			t.Errorf("%s: %+v with %d channels", tc.query, p.Pagination, len(p.Channels))
		}
		if tc.n > 0 && p.Channels[0].ID != tc.first {
			t.Errorf("%s: first channel %d, want %d", tc.query, p.Channels[0].ID, tc.first)
		}
		for _, c := range p.Channels {
			if c.ID == 11 || c.ID == 22 || !c.PublicFlag {
				t.Errorf("%s lists private channel %d", tc.query, c.ID)
			}
		}
		if strings.Contains(r.body, "api_key") {
			t.Errorf("%s shows keys: %s", tc.query, r.body)
		}
		if !strings.HasPrefix(r.body, `{"pagination":{"current_page":`) {
			t.Errorf("%s: shape %.60s", tc.query, r.body)
		}
	}
	for _, bad := range []string{"0", "-1", "x", "1.5", "+2", "99999999999999999999"} {
		m.do("GET", "/channels/public.json?page="+url.QueryEscape(bad), "").refused(t, 400, "error_bad_request", "page")
	}
	m.do("POST", "/channels/public.json", "").refused(t, 405, "error_method_invalid", "GET")
}

// deviceJSON is auth.DeviceJSON as a client decodes it.
type deviceJSON struct {
	ID          uint64       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	ClientID    string       `json:"client_id"`
	Username    string       `json:"username"`
	Password    *string      `json:"password"`
	Channels    []auth.Grant `json:"channels"`
	Rules       []string     `json:"rules"`
	CreatedAt   string       `json:"created_at"`
}

func TestManageDevices(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	m.createChannel("name=Garden")
	m.createChannel("name=Cellar")

	var d deviceJSON
	m.do("POST", "/mqtt/devices.json", "api_key="+m.key+"&name=ESP32+garden&channel=1:pub&channel=2").ok(t, &d)
	if d.ID != 1 || d.Name != "ESP32 garden" || d.Password == nil || *d.Password == "" || d.ClientID == "" ||
		d.Username != d.ClientID || len(d.Channels) != 2 || d.CreatedAt == "" {
		t.Fatalf("created: %+v", d)
	}
	if d.Channels[0] != (auth.Grant{ChannelID: 1, Publish: true}) || d.Channels[1] != (auth.Grant{ChannelID: 2, Publish: true, Subscribe: true}) {
		t.Errorf("grants: %+v", d.Channels)
	}
	password := *d.Password

	var d2 deviceJSON
	m.do("POST", "/mqtt/devices.json", `{"api_key":"`+m.key+`","name":"Cellar probe","channels":[{"id":2,"subscribe":true},"1:pub"]}`).ok(t, &d2)
	if d2.ID != 2 || len(d2.Channels) != 2 || d2.Channels[0] != (auth.Grant{ChannelID: 2, Subscribe: true}) ||
		d2.Channels[1] != (auth.Grant{ChannelID: 1, Publish: true}) {
		t.Fatalf("created by JSON: %+v", d2)
	}

	// The password is never shown again.
	r := m.do("GET", "/mqtt/devices.json?api_key="+m.key, "")
	var list []deviceJSON
	r.ok(t, &list)
	if len(list) != 2 || list[0].ID != 1 || list[1].ID != 2 || strings.Contains(r.body, "password") || strings.Contains(r.body, password) {
		t.Fatalf("list: %s", r.body)
	}
	// As `device list --json`: what the broker knows (nothing here).
	if strings.Count(r.body, `"connections":[],"last_publish_at":null`) != 2 {
		t.Errorf("list without activity: %s", r.body)
	}
	r = m.do("GET", "/mqtt/devices/1.json?api_key="+m.key, "")
	var one deviceJSON
	r.ok(t, &one)
	if one.ID != 1 || one.Password != nil || one.Name != "ESP32 garden" || !strings.Contains(r.body, `"connections":[]`) {
		t.Fatalf("one: %s", r.body)
	}

	// Reset gives a new password, once.
	var reset deviceJSON
	m.do("POST", "/mqtt/devices/1/reset_password.json?api_key="+m.key, "").ok(t, &reset)
	if reset.Password == nil || *reset.Password == password || reset.ID != 1 || reset.ClientID != d.ClientID {
		t.Fatalf("reset: %+v", reset)
	}

	// Delete answers the device as it was, without a password.
	r = m.do("DELETE", "/mqtt/devices/1.json?api_key="+m.key, "")
	var del deviceJSON
	r.ok(t, &del)
	if del.ID != 1 || del.Password != nil {
		t.Fatalf("deleted: %s", r.body)
	}
	m.do("GET", "/mqtt/devices/1.json?api_key="+m.key, "").refused(t, 404, "error_resource_not_found", "")
	m.do("POST", "/mqtt/devices/1/reset_password.json?api_key="+m.key, "").refused(t, 404, "error_resource_not_found", "")
	m.do("DELETE", "/mqtt/devices/1.json?api_key="+m.key, "").refused(t, 404, "error_resource_not_found", "")
}

// TestManageUpdateDevice changes a device's name, description and
// grants; a PUT that gives nothing changes nothing.
func TestManageUpdateDevice(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	m.createChannel("name=Garden")
	m.createChannel("name=Cellar")
	var d deviceJSON
	m.do("POST", "/mqtt/devices.json", "api_key="+m.key+"&name=probe&description=old&channel=1").ok(t, &d)

	r := m.do("PUT", "/mqtt/devices/1.json?api_key="+m.key, `{"description":"in the cellar","channels":[{"id":2,"publish":true}]}`)
	var u deviceJSON
	r.ok(t, &u)
	if u.Name != "probe" || u.Description != "in the cellar" || len(u.Channels) != 1 || u.Channels[0] != (auth.Grant{ChannelID: 2, Publish: true}) || u.Password != nil {
		t.Fatalf("updated: %s", r.body)
	}
	m.do("PUT", "/mqtt/devices/1.json", "api_key="+m.key+"&name=renamed").ok(t, &u)
	if u.Name != "renamed" || u.Description != "in the cellar" || len(u.Channels) != 1 {
		t.Fatalf("renamed: %+v", u)
	}
	// channel= alone removes every grant.
	m.do("PUT", "/mqtt/devices/1.json", "api_key="+m.key+"&channel=").ok(t, &u)
	if len(u.Channels) != 0 {
		t.Fatalf("grants after channel=: %+v", u.Channels)
	}
	m.do("PUT", "/mqtt/devices/1.json", "api_key="+m.key).ok(t, &u)
	if u.Name != "renamed" {
		t.Fatalf("empty PUT: %+v", u)
	}
	m.do("PUT", "/mqtt/devices/9.json", "api_key="+m.key+"&name=x").refused(t, 404, "error_resource_not_found", "")
	m.do("PUT", "/mqtt/devices/1.json", "api_key="+m.key+"&channel=99").refused(t, 400, "error_bad_request", "channels")
}

// ownerEndpoints are every request that needs the user API key.
var ownerEndpoints = []struct{ method, path, body string }{
	{"GET", "/channels.json", ""},
	{"POST", "/channels.json", "name=x"},
	{"GET", "/channels/1.json", ""}, // channel 1 is private
	{"PUT", "/channels/1.json", "name=x"},
	{"PUT", "/channels/2.json", "name=x"}, // public
	{"DELETE", "/channels/1/feeds.json", ""},
	{"DELETE", "/channels/1/feeds", ""},
	{"DELETE", "/channels/1.json", ""},
	{"DELETE", "/channels/2.json", ""},
	{"GET", "/mqtt/devices.json", ""},
	{"POST", "/mqtt/devices.json", "name=x&channel=1"},
	{"GET", "/mqtt/devices/1.json", ""},
	{"PUT", "/mqtt/devices/1.json", "name=x"},
	{"DELETE", "/mqtt/devices/1.json", ""},
	{"POST", "/mqtt/devices/1/reset_password.json", ""},
}

func TestManageRefusesWrongKeys(t *testing.T) {
	// Throttling is off here: every wrong key is looked at.
	m := newMgmt(t, mgmtOptions{backoff: auth.Backoff{AfterFailures: -1}})
	priv := m.createChannel("name=Private")
	pub := m.createChannel("name=Public&public_flag=true")
	var d deviceJSON
	m.do("POST", "/mqtt/devices.json", "api_key="+m.key+"&name=probe&channel=1").ok(t, &d)
	pw, pr := priv.keys()
	qw, qr := pub.keys()
	wrong := []string{"", "AAAAAAAAAAAAAAAA", strings.ToLower(m.key), m.key + "X", m.key[:15], pw, pr, qw, qr, *d.Password, d.Username,
		strings.Repeat("K", 5000)}
	for _, ep := range ownerEndpoints {
		for _, k := range wrong {
			// In the query string, in the header and in the body.
			r := m.do(ep.method, ep.path+"?api_key="+url.QueryEscape(k), ep.body)
			r.refused(t, 401, "error_auth_required", "authentication")
			if k == "" {
				continue
			}
			m.do(ep.method, ep.path, ep.body, "THINGSPEAKAPIKEY", k).refused(t, 401, "error_auth_required", "")
			if ep.body != "" {
				m.do(ep.method, ep.path, ep.body+"&api_key="+url.QueryEscape(k)).refused(t, 401, "error_auth_required", "")
			}
		}
	}
	// Nothing changed.
	var list []settingsJSON
	m.do("GET", "/channels.json?api_key="+m.key, "").ok(t, &list)
	if len(list) != 2 || list[0].Name != "Private" || list[1].Name != "Public" {
		t.Fatalf("channels changed by refused requests: %+v", list)
	}
	var devs []deviceJSON
	m.do("GET", "/mqtt/devices.json?api_key="+m.key, "").ok(t, &devs)
	if len(devs) != 1 || devs[0].Name != "probe" {
		t.Fatalf("devices changed by refused requests: %+v", devs)
	}
	// No key, nor a password, in the log; each refusal says why.
	logs := m.logs.String()
	for _, k := range append(wrong[1:len(wrong)-1], m.key) {
		if strings.Contains(logs, k) {
			t.Errorf("log holds key or secret %q", k)
		}
	}
	if strings.Contains(logs, "KKKKKKKKKK") {
		t.Error("log holds the long key")
	}
	for _, reason := range []string{"reason=\"wrong user API key\"", "reason=\"no user API key\"", "reason=\"user API key of the wrong shape\""} {
		if !strings.Contains(logs, reason) {
			t.Errorf("log lacks %s", reason)
		}
	}
}

func TestManageThrottlesWrongKeys(t *testing.T) {
	m := newMgmt(t, mgmtOptions{backoff: auth.Backoff{AfterFailures: 3, Initial: time.Hour, Max: time.Hour}})
	m.createChannel("name=Garden")
	for i := range 3 {
		m.do("GET", "/channels.json?api_key=WRONGKEY0000000"+fmt.Sprint(i), "").refused(t, 401, "error_auth_required", "")
	}
	// Now even the right key is refused from this address, on every
	// endpoint that takes one, without being looked at.
	for _, ep := range ownerEndpoints {
		r := m.do(ep.method, ep.path+"?api_key="+m.key, ep.body)
		r.refused(t, 429, "error_too_many_requests", "Retry-After")
		if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("%s %s: Retry-After %q", ep.method, ep.path, ra)
		}
	}
	// What needs no key still answers.
	m.do("GET", "/channels/public.json", "").ok(t, nil)
	counts := m.srv.Refusals().Snapshot()
	if counts["auth_required"] != 3 || counts["too_many_requests"] != uint64(len(ownerEndpoints)) {
		t.Errorf("refusals: %v", counts)
	}
}

func TestManageBadInput(t *testing.T) {
	m := newMgmt(t, mgmtOptions{limits: auth.Limits{MaxDevices: 1, MaxChannelsPerDevice: 2}})
	m.createChannel("name=Garden")
	k := "api_key=" + m.key
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, detail       string
	}{
		// IDs that do not exist, overflow, are negative or misspelled.
		{"GET", "/channels/9.json?" + k, "", 404, "error_resource_not_found", "9"},
		{"PUT", "/channels/9.json?" + k, "name=x", 404, "error_resource_not_found", ""},
		{"DELETE", "/channels/9.json?" + k, "", 404, "error_resource_not_found", ""},
		{"DELETE", "/channels/9/feeds.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/channels/18446744073709551616.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/channels/-1.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/channels/01.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/channels/0.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/mqtt/devices/9.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/mqtt/devices/18446744073709551616.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/mqtt/devices/-3.json?" + k, "", 404, "error_resource_not_found", ""},
		{"GET", "/mqtt/devices/1.xml?" + k, "", 404, "error_resource_not_found", ""},
		{"DELETE", "/channels/1/feeds/last.json?" + k, "", 405, "error_method_invalid", ""},
		{"PATCH", "/channels/1.json?" + k, "name=x", 405, "error_method_invalid", "PUT"},
		// Bad channel settings name the field.
		{"POST", "/channels.json?" + k, "description=x", 400, "error_bad_request", "name"},
		{"POST", "/channels.json?" + k, "name=+++", 400, "error_bad_request", "name"},
		{"POST", "/channels.json?" + k, "name=1234", 400, "error_bad_request", "name"},
		{"POST", "/channels.json?" + k, "name=x&public_flag=maybe", 400, "error_bad_request", "public_flag"},
		{"POST", "/channels.json?" + k, "name=x&field3=" + strings.Repeat("L", 300), 400, "error_bad_request", "field3"},
		{"POST", "/channels.json?" + k, "name=" + strings.Repeat("N", 300), 400, "error_bad_request", "name"},
		{"PUT", "/channels/1.json?" + k, "public_flag=yes", 400, "error_bad_request", "public_flag"},
		{"PUT", "/channels/1.json?" + k, "name=", 400, "error_bad_request", "name"},
		{"PUT", "/channels/1.json?" + k, "field1=&field2=&field3=&field4=&field5=&field6=&field7=&field8=", 400, "error_bad_request", "field"},
		// Malformed bodies.
		{"POST", "/channels.json?" + k, `{"name":`, 400, "error_bad_request", "JSON object"},
		{"POST", "/channels.json?" + k, `{"name":"x"} {}`, 400, "error_bad_request", "one JSON object"},
		{"POST", "/channels.json?" + k, `["name"]`, 400, "error_bad_request", "JSON object"},
		{"POST", "/channels.json?" + k, `{"name":{"a":1}}`, 400, "error_bad_request", "name"},
		{"POST", "/channels.json?" + k, "name=%zz", 400, "error_bad_request", "form body"},
		{"POST", "/channels.json?" + k + "&x=%zz", "name=x", 400, "error_bad_request", "query string"},
		// Bad devices name the field.
		{"POST", "/mqtt/devices.json?" + k, "channel=1", 400, "error_bad_request", "name"},
		{"POST", "/mqtt/devices.json?" + k, "name=x&channel=1:rw", 400, "error_bad_request", "channel"},
		{"POST", "/mqtt/devices.json?" + k, "name=x&channel=one", 400, "error_bad_request", "channel"},
		{"POST", "/mqtt/devices.json?" + k, "name=x&channel=1&channel=1:sub", 400, "error_bad_request", "given twice"},
		{"POST", "/mqtt/devices.json?" + k, "name=x&channel=99", 400, "error_bad_request", "channels"},
		{"POST", "/mqtt/devices.json?" + k, `{"name":"x","channels":[{"id":0}]}`, 400, "error_bad_request", "channels[0].id"},
		{"POST", "/mqtt/devices.json?" + k, `{"name":"x","channels":[{"id":1,"publish":false,"subscribe":false}]}`, 400, "error_bad_request", "channels[0]"},
		{"POST", "/mqtt/devices.json?" + k, `{"name":"x","channels":[{"id":1,"admin":true}]}`, 400, "error_bad_request", "channels[0]"},
		{"POST", "/mqtt/devices.json?" + k, `{"name":"x","channels":["1:x"]}`, 400, "error_bad_request", "channels[0]"},
		{"POST", "/mqtt/devices.json?" + k, `{"name":"x","channels":"1"}`, 400, "error_bad_request", "channels must be an array"},
		{"POST", "/mqtt/devices.json?" + k, `{"name":"x","channels":[1,1]}`, 400, "error_bad_request", "given twice"},
	} {
		r := m.do(tc.method, tc.path, tc.body)
		t.Run(tc.method+" "+tc.path+" "+tc.body[:min(len(tc.body), 40)], func(t *testing.T) {
			r.refused(t, tc.status, tc.code, tc.detail)
		})
	}
	// Limits: one device here, two channels per device.
	m.createChannel("name=Cellar")
	m.createChannel("name=Attic")
	m.do("POST", "/mqtt/devices.json?"+k, "name=x&channel=1&channel=2&channel=3").refused(t, 403, "error_limit_reached", "")
	m.do("POST", "/mqtt/devices.json?"+k, "name=first").ok(t, nil)
	m.do("POST", "/mqtt/devices.json?"+k, "name=second").refused(t, 403, "error_limit_reached", "device limit")

	// Oversized bodies get 413 and change nothing.
	big := "name=big&description=" + strings.Repeat("d", httpd.MaxManageBody)
	m.do("POST", "/channels.json?"+k, big).refused(t, 413, "error_request_too_large", "")
	m.do("PUT", "/channels/1.json?"+k, big).refused(t, 413, "error_request_too_large", "")
	m.do("POST", "/mqtt/devices.json?"+k, `{"name":"`+strings.Repeat("d", httpd.MaxManageBody)+`"}`).refused(t, 413, "error_request_too_large", "")
	var c settingsJSON
	m.do("GET", "/channels/1.json?"+k, "").ok(t, &c)
	if c.Name != "Garden" || c.Description != "" {
		t.Errorf("channel changed by refused requests: %+v", c)
	}
	counts := m.srv.Refusals().Snapshot()
	if counts["bad_request"] < 20 || counts["resource_not_found"] < 10 || counts["request_too_large"] != 3 || counts["limit_reached"] != 2 {
		t.Errorf("refusals: %v", counts)
	}
}

// Without an admin service the management paths do not exist, and
// DELETE of a feed is not allowed.
func TestManageWithoutAdmin(t *testing.T) {
	m := newMgmt(t, mgmtOptions{noAdmin: true})
	for _, ep := range ownerEndpoints {
		r := m.do(ep.method, ep.path+"?api_key="+m.key, ep.body)
		if ep.method == "DELETE" && strings.Contains(ep.path, "feeds") && strings.HasSuffix(ep.path, ".json") {
			r.refused(t, 405, "error_method_invalid", "")
			continue
		}
		if r.status != 404 {
			t.Errorf("%s %s: %d %s", ep.method, ep.path, r.status, r.body)
		}
	}
	if r := m.do("GET", "/channels/public.json", ""); r.status != 404 {
		t.Errorf("public.json: %d", r.status)
	}
}

// A browser page may call the API from anywhere (access is by key): the
// preflight lists each route's methods.
func TestManagePreflight(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	for path, want := range map[string]string{
		"/channels.json":                      "GET, POST, OPTIONS",
		"/channels/1.json":                    "GET, PUT, DELETE, OPTIONS",
		"/channels/1/feeds.json":              "GET, HEAD, OPTIONS, DELETE",
		"/mqtt/devices/1/reset_password.json": "POST, OPTIONS",
	} {
		r := m.do("OPTIONS", path, "")
		if r.status != 204 || r.header.Get("Access-Control-Allow-Methods") != want {
			t.Errorf("%s: %d %q", path, r.status, r.header.Get("Access-Control-Allow-Methods"))
		}
	}
}

// nopWatcher is a dashboard Watcher without entries.
type nopWatcher struct{}

func (nopWatcher) WatchEntries(uint64, int) (<-chan []byte, func()) {
	return make(chan []byte), func() {}
}

// Location, metadata, tags and URL: set on create, changed one by one,
// unset with "", and refused with a message naming the field.
func TestManageChannelSettings(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	c := m.createChannel("name=Roof&latitude=52.5163&longitude=13.3777&elevation=34&metadata=%7B%22unit%22%3A%22C%22%7D&tags=weather,+roof,,weather&url=https%3A%2F%2Fexample.org%2Froof")
	if c.Latitude == nil || *c.Latitude != "52.5163" || c.Longitude == nil || *c.Longitude != "13.3777" || c.Elevation != "34" ||
		c.Metadata != `{"unit":"C"}` || c.URL != "https://example.org/roof" || len(c.Tags) != 2 || c.Tags[0].Name != "weather" || c.Tags[1].Name != "roof" {
		t.Fatalf("created: %+v", c)
	}
	raw := m.do("GET", "/channels/1.json?api_key="+m.key, "").body
	if !strings.Contains(raw, `"latitude":"52.5163","longitude":"13.3777",`) || !strings.Contains(raw, `"tags":[{"name":"weather"},{"name":"roof"}]`) {
		t.Errorf("settings: %s", raw)
	}
	var u settingsJSON
	m.do("PUT", "/channels/1.json", `{"api_key":"`+m.key+`","latitude":-33.9,"tags":["sea"],"url":""}`).ok(t, &u)
	if *u.Latitude != "-33.9" || *u.Longitude != "13.3777" || u.URL != "" || len(u.Tags) != 1 || u.Tags[0].Name != "sea" || u.Metadata != `{"unit":"C"}` {
		t.Fatalf("updated: %+v", u)
	}
	m.do("PUT", "/channels/1.json", "api_key="+m.key+"&tags=&latitude=&longitude=").ok(t, &u)
	if u.Latitude != nil || u.Longitude != nil || len(u.Tags) != 0 || u.Elevation != "34" {
		t.Fatalf("unset: %+v", u)
	}
	// tag= filters the lists.
	m.createChannel("name=Cellar&tags=Damp&public_flag=true")
	var list []settingsJSON
	m.do("GET", "/channels.json?tag=damp&api_key="+m.key, "").ok(t, &list)
	if len(list) != 1 || list[0].Name != "Cellar" {
		t.Errorf("tag filter: %+v", list)
	}
	var page struct {
		Channels []settingsJSON `json:"channels"`
	}
	m.do("GET", "/channels/public.json?tag=nothing", "").ok(t, &page)
	if len(page.Channels) != 0 {
		t.Errorf("public tag filter: %+v", page)
	}
	for _, tc := range []struct{ body, field string }{
		{"latitude=91", "latitude"},
		{"latitude=north", "latitude"},
		{"longitude=-180.5", "longitude"},
		{"elevation=high", "elevation"},
		{"url=javascript:alert(1)", "url"},
		{"url=ftp%3A%2F%2Fexample.org", "url"},
		{"metadata=" + strings.Repeat("m", channels.MaxMetadataLen+1), "metadata"},
		{"tags=" + strings.Repeat("t", channels.MaxTagLen+1), "tag"},
		{"tags=" + manyTags(channels.MaxTags+1), "tags"},
	} {
		m.do("PUT", "/channels/1.json?api_key="+m.key, tc.body).refused(t, 400, "error_bad_request", tc.field)
		m.do("POST", "/channels.json?api_key="+m.key, "name=x&"+tc.body).refused(t, 400, "error_bad_request", tc.field)
	}
	m.do("GET", "/channels.json?api_key="+m.key, "").ok(t, &list)
	if len(list) != 2 || list[0].Elevation != "34" {
		t.Errorf("refused changes stored: %+v", list)
	}
}

// manyTags returns n distinct tags, comma-separated.
func manyTags(n int) string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprint("t", i)
	}
	return strings.Join(tags, ",")
}
