package httpd_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	httpd "github.com/feedmq/feedmq/http"
)

// embedPaths are the chart and widget pages of field 1 of channel id.
func embedPaths(id uint64) []string {
	return []string{
		fmt.Sprintf("/channels/%d/charts/1", id),
		fmt.Sprintf("/channels/%d/widgets/numeric/1", id),
		fmt.Sprintf("/channels/%d/widgets/gauge/1", id),
	}
}

// checkEmbedHeaders checks that a chart or widget page may be framed by
// any origin and is otherwise locked down.
func checkEmbedHeaders(t *testing.T, path string, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors *") || strings.Contains(csp, "'none'; frame") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("%s: CSP %q", path, csp)
	}
	if xfo := resp.Header.Values("X-Frame-Options"); len(xfo) != 0 {
		t.Errorf("%s: X-Frame-Options %q forbids framing", path, xfo)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: headers %v", path, resp.Header)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
}

// dataAttr returns the value of data-<name> on the page's #embed.
func dataAttr(body, name string) string {
	m := regexp.MustCompile(`\sdata-` + name + `="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		return "<none>"
	}
	return html.UnescapeString(m[1])
}

func TestEmbedAccess(t *testing.T) {
	refusals := &httpd.Refusals{}
	e := newDashEnvWith(t, time.Hour, func(o *httpd.DashboardOptions) {
		o.Refusals = refusals
		o.KeyThrottle = auth.NewThrottle(auth.Backoff{AfterFailures: 3, Initial: time.Minute, Max: 5 * time.Minute})
	})
	pub := e.channel(true, "Temperature")
	priv := e.channel(false, "Power")
	other := e.channel(false, "Other")

	// A public channel needs no key; its pages carry no key.
	for _, p := range embedPaths(pub.ID) {
		resp, body := e.get(p)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
		checkEmbedHeaders(t, p, resp)
		if strings.Contains(body, "api_key") || !strings.Contains(body, `src="/assets/embed.js"`) {
			t.Errorf("%s: page %s", p, body)
		}
	}
	// The console's and dashboard's pages still refuse framing.
	if resp, _ := e.get("/"); resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("dashboard page headers %v", resp.Header)
	}
	if resp, _ := e.get("/assets/embed.js"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("embed.js: %d %v", resp.StatusCode, resp.Header)
	}

	// A private channel: its read key (query or header) opens it, and the
	// page reads the feed and the stream with it.
	for _, p := range embedPaths(priv.ID) {
		resp, body := e.get(p + "?api_key=" + priv.ReadKey)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
		checkEmbedHeaders(t, p, resp)
		if rc := dataAttr(body, "recent"); rc != fmt.Sprintf("/channels/%d/feeds.json?api_key=%s", priv.ID, priv.ReadKey) {
			t.Errorf("%s: recent %q", p, rc)
		}
		if resp, _ := e.get(p, "THINGSPEAKAPIKEY", priv.ReadKey); resp.StatusCode != 200 {
			t.Errorf("%s with the key in a header: %d", p, resp.StatusCode)
		}
	}
	before := refusals.Snapshot()
	// No key, the write key, another channel's key: 401 pages.
	for _, q := range []string{"", "?api_key=" + priv.WriteKey, "?api_key=" + other.ReadKey} {
		p := embedPaths(priv.ID)[0] + q
		resp, body := e.get(p)
		if resp.StatusCode != 401 || !strings.Contains(body, "This channel is private") || strings.Contains(body, "embed.js") {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
		checkEmbedHeaders(t, p, resp)
		if strings.Contains(body, priv.WriteKey) || strings.Contains(body, other.ReadKey) {
			t.Errorf("%s: the page shows the key it was given", p)
		}
	}
	if got := refusals.Snapshot()["auth_required"] - before["auth_required"]; got != 3 {
		t.Errorf("auth_required refusals: %d more, want 3", got)
	}
	// That was two wrong keys; a third throttles the address, after which
	// even the right key is not looked at.
	if resp, _ := e.get(embedPaths(priv.ID)[1] + "?api_key=AAAAAAAAAAAAAAAA"); resp.StatusCode != 401 {
		t.Errorf("third wrong key: %d", resp.StatusCode)
	}
	resp, body := e.get(embedPaths(priv.ID)[2] + "?api_key=" + priv.ReadKey)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many wrong API keys") {
		t.Errorf("throttled: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if refusals.Snapshot()["too_many_requests"] != 1 {
		t.Errorf("refusals %v", refusals.Snapshot())
	}
	// A public channel stays open to the throttled address: it needs no key.
	if resp, _ := e.get(embedPaths(pub.ID)[0]); resp.StatusCode != 200 {
		t.Errorf("public channel from a throttled address: %d", resp.StatusCode)
	}
}

func TestEmbedRoutes(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	pub := e.channel(true, "Temperature", "", "Humidity")
	for _, tc := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/channels/99/charts/1", 404, "Channel 99 does not exist"},
		{"GET", fmt.Sprintf("/channels/%d/charts/2", pub.ID), 404, "Field 2 is not enabled"},
		{"GET", fmt.Sprintf("/channels/%d/charts/3", pub.ID), 200, `data-field="3"`},
		{"HEAD", fmt.Sprintf("/channels/%d/widgets/gauge/3", pub.ID), 200, ""},
		{"POST", fmt.Sprintf("/channels/%d/charts/1", pub.ID), 405, "Use GET"},
		{"GET", fmt.Sprintf("/channels/%d/charts/1?width=5", pub.ID), 400, "width must be auto or a number of pixels from 50 to 4000"},
		{"GET", fmt.Sprintf("/channels/%d/charts/1?color=red%%22onload%%3D", pub.ID), 400, "color must be a color"},
		{"GET", fmt.Sprintf("/channels/%d/charts/1?title=%s", pub.ID, strings.Repeat("x", 300)), 400, "title is longer than 200 bytes"},
		{"GET", fmt.Sprintf("/channels/%d/charts/1?%%zz", pub.ID), 400, "query string is malformed"},
		// Not embed paths: on to the API.
		{"GET", fmt.Sprintf("/channels/%d/charts/9", pub.ID), 404, ""},
		{"GET", fmt.Sprintf("/channels/%d/charts/01", pub.ID), 404, ""},
		{"GET", fmt.Sprintf("/channels/%d/widgets/dial/1", pub.ID), 404, ""},
		{"GET", "/channels/01/charts/1", 404, ""},
	} {
		req, _ := http.NewRequest(tc.method, e.http.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %s: %d %.300s", tc.method, tc.path, resp.StatusCode, b)
		}
		api := resp.Header.Get("X-Next") == "api"
		if embed := tc.want != "" || tc.status == 200; embed == api {
			t.Errorf("%s %s: served by the API %v", tc.method, tc.path, api)
		}
		if !api {
			checkEmbedHeaders(t, tc.path, resp)
		}
	}
}

func TestEmbedOptionsOnPage(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	ch := e.channel(false, `Temp <b>"x"</b>`)
	base := fmt.Sprintf("/channels/%d", ch.ID)

	// Defaults: ThingSpeak's, titles from the channel and field.
	_, body := e.get(base + "/charts/1?api_key=" + ch.ReadKey)
	for name, want := range map[string]string{
		"title": "garden", "xaxis": "Date", "yaxis": `Temp <b>"x"</b>`, "color": "#d62020", "bgcolor": "#ffffff",
		"type": "line", "dynamic": "false", "width": "450", "height": "250",
		"feed": fmt.Sprintf("/channels/%d/fields/1.json?api_key=%s", ch.ID, ch.ReadKey),
	} {
		if got := dataAttr(body, name); got != want {
			t.Errorf("default %s = %q, want %q", name, got, want)
		}
	}
	if strings.Contains(body, "<b>") {
		t.Errorf("field label not escaped: %s", body)
	}

	// Options: text is escaped, read parameters pass on to the feed read,
	// unknown ones are dropped.
	q := "title=%3C%2Ftitle%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&yaxis=%27%3B--&color=00f&type=column&dynamic=true&results=20&average=10&round=1&callback=evil&api_key=" + ch.ReadKey
	_, body = e.get(base + "/charts/1?" + q)
	if strings.Contains(body, "<script>") || strings.Contains(body, "evil") {
		t.Errorf("raw option on the page: %s", body)
	}
	if got := dataAttr(body, "title"); got != "</title><script>alert(1)</script>" {
		t.Errorf("title %q", got)
	}
	if got := dataAttr(body, "feed"); got != fmt.Sprintf("/channels/%d/fields/1.json?api_key=%s&average=10&results=20&round=1", ch.ID, ch.ReadKey) {
		t.Errorf("feed %q", got)
	}
	if dataAttr(body, "aggregated") != "true" || dataAttr(body, "results") != "20" || dataAttr(body, "color") != "#00f" || dataAttr(body, "type") != "column" {
		t.Errorf("chart options: %s", body)
	}
	// A dynamic chart polls its field's newest entries, rounded as its
	// feed, every 15 s (the default), and holds no event stream.
	if got := dataAttr(body, "recent"); got != fmt.Sprintf("/channels/%d/feeds.json?api_key=%s&round=1", ch.ID, ch.ReadKey) {
		t.Errorf("recent %q", got)
	}
	if got := dataAttr(body, "poll"); got != "15" {
		t.Errorf("poll %q, want 15", got)
	}
	if strings.Contains(body, "/events") {
		t.Errorf("the page names an event stream: %s", body)
	}

	// Widgets: the field label is the title; the value comes from
	// fields/<N>/last.json.
	_, body = e.get(base + "/widgets/gauge/1?min=-10&max=40&units=%C2%B0C&decimals=1&api_key=" + ch.ReadKey)
	for name, want := range map[string]string{
		"title": `Temp <b>"x"</b>`, "min": "-10", "max": "40", "units": "°C", "decimals": "1", "dynamic": "true",
		"last": fmt.Sprintf("/channels/%d/fields/1/last.json?api_key=%s", ch.ID, ch.ReadKey),
	} {
		if got := dataAttr(body, name); got != want {
			t.Errorf("gauge %s = %q, want %q", name, got, want)
		}
	}
}

// The poll interval the pages get is the configured one, kept within
// 1 s and 10 min whatever the caller set.
func TestEmbedPollInterval(t *testing.T) {
	for _, tc := range []struct {
		set  time.Duration
		want string
	}{{0, "15"}, {3 * time.Second, "3"}, {time.Millisecond, "1"}, {-time.Second, "1"}, {24 * time.Hour, "600"}} {
		e := newDashEnvWith(t, time.Hour, func(o *httpd.DashboardOptions) { o.EmbedPoll = tc.set })
		ch := e.channel(true, "Temperature")
		for _, p := range embedPaths(ch.ID) {
			if _, body := e.get(p + "?dynamic=true"); dataAttr(body, "poll") != tc.want {
				t.Errorf("EmbedPoll %v: %s poll %q, want %s", tc.set, p, dataAttr(body, "poll"), tc.want)
			}
		}
	}
}
