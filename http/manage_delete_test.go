package httpd_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// ThingSpeak's documented clear and delete requests carry the user API
// key as a form parameter in the DELETE's body (api_key=XXXX under
// x-www-form-urlencoded), as its PUT and POST do: there it works as in the
// query string, and a wrong key there is refused and changes nothing.
func TestManageDeleteKeyInBody(t *testing.T) {
	m := newMgmt(t, mgmtOptions{backoff: auth.Backoff{AfterFailures: -1}})
	c := m.createChannel("name=Garden")
	w, _ := c.keys()
	if r := m.do("POST", "/update", "api_key="+w+"&field1=1"); r.status != 200 || r.body != "1" {
		t.Fatalf("write: %d %s", r.status, r.body)
	}
	var d deviceJSON
	m.do("POST", "/mqtt/devices.json", "api_key="+m.key+"&name=probe&channel=1").ok(t, &d)

	for _, path := range []string{"/channels/1/feeds.json", "/channels/1.json", "/mqtt/devices/1.json"} {
		m.do("DELETE", path, "api_key=WRONGWRONGWRONG1").refused(t, 401, "error_auth_required", "")
	}
	var s settingsJSON
	m.do("GET", "/channels/1.json?api_key="+m.key, "").ok(t, &s)
	if s.LastEntryID == nil || *s.LastEntryID != 1 {
		t.Fatalf("a refused clear cleared the feed: %+v", s)
	}

	if r := m.do("DELETE", "/channels/1/feeds.json", "api_key="+m.key); r.status != 200 || r.body != "[]" {
		t.Fatalf("clear with the key in the body: %d %s", r.status, r.body)
	}
	m.do("GET", "/channels/1.json?api_key="+m.key, "").ok(t, &s)
	if s.LastEntryID != nil {
		t.Fatalf("feed not cleared: %+v", s)
	}
	m.do("DELETE", "/mqtt/devices/1.json", "api_key="+m.key).ok(t, nil)
	m.do("DELETE", "/channels/1.json", "api_key="+m.key).ok(t, nil)
	m.do("GET", "/channels/1.json?api_key="+m.key, "").refused(t, 404, "error_resource_not_found", "")
	m.do("GET", "/mqtt/devices/1.json?api_key="+m.key, "").refused(t, 404, "error_resource_not_found", "")
	if logs := m.logs.String(); strings.Contains(logs, m.key) || strings.Contains(logs, w) {
		t.Error("a key is in the log")
	}
}

// Only feeds.json (and feeds) clear a feed. A DELETE of feeds.csv is not
// a read: answering it with the feed, 200, tells a script that asked to
// clear it (with the read key even) that it did.
func TestManageDeleteFeedsCSVIsNotARead(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	c := m.createChannel("name=Garden&public_flag=true&field1=t")
	w, rk := c.keys()
	if r := m.do("POST", "/update", "api_key="+w+"&field1=21.5"); r.status != 200 || r.body != "1" {
		t.Fatalf("write: %d %s", r.status, r.body)
	}
	for _, q := range []string{"", "?api_key=" + rk, "?api_key=" + m.key} {
		r := m.do("DELETE", "/channels/1/feeds.csv"+q, "")
		if r.status != 405 || strings.Contains(r.body, "21.5") {
			t.Errorf("DELETE feeds.csv%s: %d %q, want 405", q, r.status, r.body)
		}
	}
	var s settingsJSON
	m.do("GET", "/channels/1.json?api_key="+m.key, "").ok(t, &s)
	if s.LastEntryID == nil || *s.LastEntryID != 1 {
		t.Fatalf("feed changed: %+v", s)
	}
	// The preflight of a clear still offers DELETE.
	if r := m.do("OPTIONS", "/channels/1/feeds.json", ""); !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "DELETE") {
		t.Errorf("preflight: %q", r.header.Get("Access-Control-Allow-Methods"))
	}
}

// More tags than the parser takes at all are refused with the limit a
// channel really has, not the parser's bound: a client told "at most 100"
// that sends 100 is only refused again.
func TestManageTooManyTagsNamesTheLimit(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	m.createChannel("name=Garden")
	want := "at most " + strconv.Itoa(channels.MaxTags) + " tags"
	list := `["` + strings.ReplaceAll(manyTags(101), ",", `","`) + `"]`
	for _, tc := range []struct{ create, update string }{
		{"name=x&tags=" + manyTags(101), "tags=" + manyTags(101)},
		{`{"name":"x","tags":` + list + `}`, `{"tags":` + list + `}`},
	} {
		m.do("POST", "/channels.json?api_key="+m.key, tc.create).refused(t, 400, "error_bad_request", want)
		m.do("PUT", "/channels/1.json?api_key="+m.key, tc.update).refused(t, 400, "error_bad_request", want)
	}
}

// curl -d '{"name":...}' sends JSON as application/x-www-form-urlencoded
// (and some clients send it with no type): read as a form it sets nothing,
// so a PUT answered 200 while it changed nothing. It is refused, 400,
// saying how to send JSON, and changes nothing.
func TestManageJSONSentAsForm(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	m.createChannel("name=Garden")
	m.do("POST", "/mqtt/devices.json?api_key="+m.key, "name=probe&channel=1").ok(t, nil)
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/channels/1.json", `{"name":"Renamed","public_flag":true}`},
		{"POST", "/channels.json", ` {"name":"New"}`},
		{"PUT", "/mqtt/devices/1.json", `{"name":"Renamed","channels":[]}`},
	} {
		for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", ""} {
			r := m.do(tc.method, tc.path+"?api_key="+m.key, tc.body, "Content-Type", ct)
			r.refused(t, 400, "error_bad_request", "application/json")
		}
	}
	var c settingsJSON
	m.do("GET", "/channels/1.json?api_key="+m.key, "").ok(t, &c)
	var d deviceJSON
	m.do("GET", "/mqtt/devices/1.json?api_key="+m.key, "").ok(t, &d)
	var list []settingsJSON
	m.do("GET", "/channels.json?api_key="+m.key, "").ok(t, &list)
	if c.Name != "Garden" || c.PublicFlag || d.Name != "probe" || len(d.Channels) != 1 || len(list) != 1 {
		t.Fatalf("changed: %+v %+v %d channels", c, d, len(list))
	}
	// The same bodies as JSON work.
	m.do("PUT", "/channels/1.json?api_key="+m.key, `{"name":"Renamed"}`).ok(t, &c)
	if c.Name != "Renamed" {
		t.Fatalf("JSON update: %+v", c)
	}
}

// A form may name its grants channels=, as the JSON body does, not only
// channel=: read as an unknown parameter, channels=1 created a device
// authorized for nothing, or left a device's grants as they were, and
// answered 200.
func TestManageFormChannelsPlural(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	m.createChannel("name=Garden")
	m.createChannel("name=Cellar")
	var d deviceJSON
	m.do("POST", "/mqtt/devices.json?api_key="+m.key, "name=probe&channels=1:pub").ok(t, &d)
	if len(d.Channels) != 1 || d.Channels[0] != (auth.Grant{ChannelID: 1, Publish: true}) {
		t.Fatalf("created with channels=1:pub: %+v", d.Channels)
	}
	m.do("PUT", "/mqtt/devices/1.json?api_key="+m.key, "channels=2&channels=1:sub").ok(t, &d)
	if len(d.Channels) != 2 {
		t.Fatalf("updated with channels=: %+v", d.Channels)
	}
	m.do("PUT", "/mqtt/devices/1.json?api_key="+m.key, "channels=1&channel=1").refused(t, 400, "error_bad_request", "twice")
	m.do("PUT", "/mqtt/devices/1.json?api_key="+m.key, "channels=x").refused(t, 400, "error_bad_request", "channels")
	m.do("PUT", "/mqtt/devices/1.json?api_key="+m.key, "channels=").ok(t, &d)
	if len(d.Channels) != 0 {
		t.Fatalf("channels= alone: %+v", d.Channels)
	}
}
