package httpd_test

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// The XML answers are hand-written here in Rails to_xml style: dasherised
// keys, type attributes, nil="true" for nulls, two-space indentation.

const weatherChannelXML = `<channel>
  <id type="integer">1</id>
  <name>Weather</name>
  <description>Roof sensors</description>
  <field1>Temperature</field1>
  <field2>Humidity</field2>
  <field4>Pressure</field4>
  <created-at type="dateTime">2026-11-01T09:00:00Z</created-at>
  <updated-at type="dateTime">2026-11-01T09:00:00Z</updated-at>
  <last-entry-id type="integer">4</last-entry-id>
`

func TestXMLReads(t *testing.T) {
	w := newWeather(t)
	for _, c := range []struct {
		path  string
		query []string
		want  string
	}{
		{"feeds.xml", []string{"results=2"}, weatherChannelXML + `  <feeds type="array">
    <feed>
      <created-at type="dateTime">2026-11-22T10:30:00Z</created-at>
      <entry-id type="integer">3</entry-id>
      <field1 nil="true"></field1>
      <field2>41</field2>
      <field4 nil="true"></field4>
    </feed>
    <feed>
      <created-at type="dateTime">2026-11-22T11:00:00Z</created-at>
      <entry-id type="integer">4</entry-id>
      <field1>23,5 &#34;x&#34;</field1>
      <field2 nil="true"></field2>
      <field4>1013</field4>
    </feed>
  </feeds>
</channel>
`},
		{"feeds.xml", []string{"results=0"}, weatherChannelXML + `  <feeds type="array"></feeds>
</channel>
`},
		{"fields/2.xml", []string{"results=1", "timezone=America/New_York"}, strings.ReplaceAll(weatherChannelXML, "09:00:00Z", "04:00:00-05:00") + `  <feeds type="array">
    <feed>
      <created-at type="dateTime">2026-11-22T06:00:00-05:00</created-at>
      <entry-id type="integer">4</entry-id>
      <field2 nil="true"></field2>
    </feed>
  </feeds>
</channel>
`},
		{"feeds/last.xml", []string{"location=true", "status=true"}, `<feed>
  <created-at type="dateTime">2026-11-22T11:00:00Z</created-at>
  <entry-id type="integer">4</entry-id>
  <field1>23,5 &#34;x&#34;</field1>
  <field2 nil="true"></field2>
  <field4>1013</field4>
  <latitude type="decimal" nil="true"></latitude>
  <longitude type="decimal" nil="true"></longitude>
  <elevation nil="true"></elevation>
  <status nil="true"></status>
</feed>
`},
		{"feeds/entry/2.xml", []string{"location=true"}, `<feed>
  <created-at type="dateTime">2026-11-22T10:15:00Z</created-at>
  <entry-id type="integer">2</entry-id>
  <field1>22</field1>
  <field2 nil="true"></field2>
  <field4 nil="true"></field4>
  <latitude type="decimal">52.5</latitude>
  <longitude type="decimal">13.4</longitude>
  <elevation>34</elevation>
</feed>
`},
		{"fields/2/last.xml", nil, `<feed>
  <created-at type="dateTime">2026-11-22T10:30:00Z</created-at>
  <entry-id type="integer">3</entry-id>
  <field2>41</field2>
</feed>
`},
	} {
		r := w.get(w.url(c.path, c.query...))
		r.want(t, 200, ctXML, xmlHead+c.want)
		wellFormed(t, c.path, r.body)
	}
}

// wellFormed checks that body parses as XML.
func wellFormed(t *testing.T, what, body string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(body))
	for {
		_, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Errorf("%s: not well-formed XML: %v\n%s", what, err, body)
			}
			return
		}
	}
}

// TestXMLEscapes checks that values cannot break out of their element:
// markup, entities and CDATA ends in labels, names and values come back
// as text, and the document stays well-formed.
func TestXMLEscapes(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel(`<x>&amp;"]]>`, "</description><injected/>", true, map[int]string{1: `<b>"a"&'b'</b>`})
	e.entry(ch.ID, now.Add(-time.Minute), map[int]string{0: "</field1><entry-id>99</entry-id>", channels.Status: "a\r\nb\t<c>"})
	r := e.get("/channels/1/feeds.xml?status=true")
	wellFormed(t, "feeds.xml", r.body)
	for _, want := range []string{
		`<name>&lt;x&gt;&amp;amp;&#34;]]&gt;</name>`,
		`<description>&lt;/description&gt;&lt;injected/&gt;</description>`,
		`<field1>&lt;b&gt;&#34;a&#34;&amp;&#39;b&#39;&lt;/b&gt;</field1>`,
		`<field1>&lt;/field1&gt;&lt;entry-id&gt;99&lt;/entry-id&gt;</field1>`,
		"<status>a&#xD;\nb&#x9;&lt;c&gt;</status>",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("feeds.xml lacks %s:\n%s", want, r.body)
		}
	}
	// Decoded, the values are what was written.
	var doc struct {
		Name  string `xml:"name"`
		Feeds []struct {
			Field1 string `xml:"field1"`
			Status string `xml:"status"`
		} `xml:"feeds>feed"`
	}
	if err := xml.Unmarshal([]byte(r.body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Name != `<x>&amp;"]]>` || len(doc.Feeds) != 1 || doc.Feeds[0].Field1 != "</field1><entry-id>99</entry-id>" || doc.Feeds[0].Status != "a\r\nb\t<c>" {
		t.Errorf("decoded %+v", doc)
	}
}

// TestXMLErrors checks the error answers of XML requests: the status of
// the JSON answer, with ThingSpeak's error object as Rails renders a hash.
func TestXMLErrors(t *testing.T) {
	w := newWeather(t)
	id := strconv.FormatUint(w.ch.ID, 10)
	auth := `<hash>
  <status>401</status>
  <error>
    <error-code>error_auth_required</error-code>
    <message>Authorization Required</message>
    <details>Please provide proper authentication details.</details>
  </error>
</hash>
`
	for _, path := range []string{"feeds.xml", "fields/1.xml", "feeds/last.xml", "fields/1/last.xml", "status.xml", "status/last.xml", "feeds/entry/1.xml"} {
		w.get("/channels/"+id+"/"+path).want(t, 401, ctXML, xmlHead+auth)
		w.get("/channels/"+id+"/"+path+"?api_key="+w.ch.WriteKey).want(t, 401, ctXML, xmlHead+auth)
	}
	w.get("/channels/99/feeds.xml").want(t, 404, ctXML, xmlHead+`<hash>
  <status>404</status>
  <error>
    <error-code>error_resource_not_found</error-code>
    <message>Resource Not Found</message>
    <details>Channel 99 does not exist.</details>
  </error>
</hash>
`)
	r := w.get(w.url("feeds.xml", "results=x"))
	if r.status != 400 || !strings.Contains(r.body, "<details>results must be a whole number from 0 to 8000.</details>") {
		t.Errorf("results=x: %d %s", r.status, r.body)
	}
	r = w.get(w.url("feeds.xml", "metadata=maybe"))
	if r.status != 400 || !strings.Contains(r.body, "<details>metadata must be true or false.</details>") {
		t.Errorf("metadata=maybe: %d %s", r.status, r.body)
	}
	r = w.get(w.url("feeds/entry/9.xml"))
	if r.status != 200 || !strings.Contains(r.body, `<entry-id type="integer" nil="true"></entry-id>`) {
		t.Errorf("entry 9: %d %s", r.status, r.body)
	}
	// JSONP is for JSON only.
	r = w.get(w.url("feeds/last.xml", "callback=f"))
	if r.status != 200 || strings.Contains(r.body, "f(") {
		t.Errorf("callback on XML: %d %s", r.status, r.body)
	}
}

// TestUpdateXML checks /update.xml: the stored entry as a <feed>, and
// XML errors.
func TestUpdateXML(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("W", "", true, map[int]string{1: "a", 2: "b"})
	e.post("/update.xml", ctForm, "api_key="+ch.WriteKey+"&field1=1%3C2&lat=52.5&status=ok&created_at=2026-11-22T10:00:00Z").want(t, 200, ctXML, xmlHead+`<feed>
  <channel-id type="integer">1</channel-id>
  <created-at type="dateTime">2026-11-22T10:00:00Z</created-at>
  <entry-id type="integer">1</entry-id>
  <field1>1&lt;2</field1>
  <field2 nil="true"></field2>
  <field3 nil="true"></field3>
  <field4 nil="true"></field4>
  <field5 nil="true"></field5>
  <field6 nil="true"></field6>
  <field7 nil="true"></field7>
  <field8 nil="true"></field8>
  <latitude type="decimal">52.5</latitude>
  <longitude type="decimal" nil="true"></longitude>
  <elevation nil="true"></elevation>
  <status>ok</status>
</feed>
`)
	r := e.get("/update.xml?api_key=WRONGWRONGWRONG1&field1=1")
	if r.status != 401 || !strings.Contains(r.body, "<error-code>error_auth_required</error-code>") {
		t.Errorf("wrong key: %d %s", r.status, r.body)
	}
	r = e.get("/update.xml?api_key=" + ch.WriteKey + "&lat=100")
	if r.status != 400 || !strings.Contains(r.body, "<details>lat must be a decimal number from -90 to 90, such as 52.5163.</details>") {
		t.Errorf("bad lat: %d %s", r.status, r.body)
	}
	r = e.post("/update.xml?api_key="+ch.WriteKey, ctForm, "field1="+strings.Repeat("x", 5000))
	if r.status != 413 || !strings.HasPrefix(r.header.Get("Content-Type"), ctXML) {
		t.Errorf("oversized: %d %s", r.status, r.body)
	}
	if n := len(e.entries(ch.ID)); n != 1 {
		t.Errorf("%d entries stored, want 1", n)
	}
}

// TestChannelSettingsXML checks GET /channels/<id>.xml over a real
// server: the settings of /channels/<id>.json in Rails style, the keys for
// the owner only, and XML refusals.
func TestChannelSettingsXML(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	c := m.createChannel("name=Garden+%3Cbeds%3E&field1=Soil&field3=Air&public_flag=false&tags=roof,a%26b&latitude=52.5&metadata=%3Cm%2F%3E")
	write, read := c.keys()
	r := m.do("GET", "/channels/1.xml?api_key="+m.key, "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), ctXML) {
		t.Fatalf("owner: %d %s", r.status, r.body)
	}
	want := xmlHead + `<channel>
  <id type="integer">1</id>
  <name>Garden &lt;beds&gt;</name>
  <description></description>
  <latitude type="decimal">52.5</latitude>
  <longitude type="decimal" nil="true"></longitude>
  <created-at type="dateTime">` + c.CreatedAt + `</created-at>
  <elevation></elevation>
  <last-entry-id type="integer" nil="true"></last-entry-id>
  <public-flag type="boolean">false</public-flag>
  <url></url>
  <metadata>&lt;m/&gt;</metadata>
  <field1>Soil</field1>
  <field3>Air</field3>
  <tags type="array">
    <tag>
      <name>roof</name>
    </tag>
    <tag>
      <name>a&amp;b</name>
    </tag>
  </tags>
  <api-keys type="array">
    <api-key>
      <api-key>` + write + `</api-key>
      <write-flag type="boolean">true</write-flag>
    </api-key>
    <api-key>
      <api-key>` + read + `</api-key>
      <write-flag type="boolean">false</write-flag>
    </api-key>
  </api-keys>
</channel>
`
	if r.body != want {
		t.Errorf("owner:\n%s\nwant\n%s", r.body, want)
	}
	wellFormed(t, "settings", r.body)

	// Public: anyone, without the keys.
	m.do("PUT", "/channels/1.json", "api_key="+m.key+"&public_flag=true")
	r = m.do("GET", "/channels/1.xml", "")
	if r.status != 200 || strings.Contains(r.body, "api-key") || !strings.Contains(r.body, `<public-flag type="boolean">true</public-flag>`) {
		t.Errorf("public: %d %s", r.status, r.body)
	}
	// Unknown channel, bad IDs and writes.
	if r := m.do("GET", "/channels/9.xml?api_key="+m.key, ""); r.status != 404 || !strings.Contains(r.body, "<error-code>error_resource_not_found</error-code>") {
		t.Errorf("channel 9: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/channels/01.xml", "/channels/x.xml", "/channels/1.xml/"} {
		if r := m.do("GET", p, ""); r.status != 404 {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	for _, method := range []string{"PUT", "DELETE", "POST"} {
		r := m.do(method, "/channels/1.xml?api_key="+m.key, "name=x")
		if r.status != 405 || r.header.Get("Allow") != "GET, HEAD, OPTIONS" {
			t.Errorf("%s /channels/1.xml: %d %s", method, r.status, r.body)
		}
	}
	if r := m.do("GET", "/channels/1.json", ""); r.status != 200 || r.body[0] != '{' {
		t.Errorf("channels/1.json after: %d %s", r.status, r.body)
	}
	m.do("PUT", "/channels/1.json", "api_key="+m.key+"&public_flag=false")
	// Wrong keys last: they count towards the address's throttle.
	// Private again: no key, the read key or the write key is refused, in XML.
	for _, q := range []string{"", "?api_key=" + read, "?api_key=" + write, "?api_key=ABCDEFGHIJKLMNOP"} {
		r := m.do("GET", "/channels/1.xml"+q, "")
		if r.status != 401 || !strings.HasPrefix(r.header.Get("Content-Type"), ctXML) ||
			!strings.Contains(r.body, "<error-code>error_auth_required</error-code>") || strings.Contains(r.body, write) {
			t.Errorf("GET /channels/1.xml%s: %d %s", q, r.status, r.body)
		}
	}
}

// TestNewEndpointsOverHTTP sends each new endpoint through a real server
// on the loopback, as curl would.
func TestNewEndpointsOverHTTP(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Door", "", true, map[int]string{1: "Temp", 2: "Hum"})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for _, c := range []struct{ path, ct, body string }{
		{"/channels/1/feeds/last.txt", ctText, "-1"},
		{"/channels/1/fields/1/last.txt", ctText, "-1"},
		{"/channels/1/status/last.txt", ctText, "-1"},
		{"/channels/1/status.json", ctJSON, `{"channel":{"name":"Door"},"feeds":[]}`},
	} {
		if status, ct, body := get(c.path); status != 200 || ct != c.ct || body != c.body {
			t.Errorf("GET %s: %d %s %q, want 200 %s %q", c.path, status, ct, body, c.ct, c.body)
		}
	}
	// An eight-field sketch writing to the two-field channel, in XML.
	resp, err := http.PostForm(srv.URL+"/update.xml", url.Values{"api_key": {ch.WriteKey},
		"field1": {"21"}, "field2": {"40"}, "field3": {"3"}, "field8": {"8"}, "status": {"open"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "<entry-id type=\"integer\">1</entry-id>") ||
		!strings.Contains(string(b), "<field2>40</field2>") || !strings.Contains(string(b), `<field3 nil="true"></field3>`) {
		t.Fatalf("update.xml: %d %s", resp.StatusCode, b)
	}
	for _, c := range []struct{ path, ct, want string }{
		{"/channels/1/status/last.txt", ctText, "open"},
		{"/channels/1/fields/2/last.txt", ctText, "40"},
		{"/channels/1/status.xml?days=100", ctXML, "<status>open</status>"},
		{"/channels/1/feeds.xml?results=8000", ctXML, "<field1>21</field1>"},
		{"/channels/1/feeds/last.xml", ctXML, "<field2>40</field2>"},
		{"/channels/1/fields/1.xml?results=8000", ctXML, "<field1>21</field1>"},
		{"/channels/1/fields/1/last.xml", ctXML, "<field1>21</field1>"},
	} {
		if status, ct, body := get(c.path); status != 200 || ct != c.ct || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %s %q, want %s with %q", c.path, status, ct, body, c.ct, c.want)
		}
	}
}

// TestXMLSameRowsAsJSON checks that XML renders the rows JSON gets, for
// plain, aggregated, rounded and filtered reads: same times, same values,
// entry_id only when JSON has it.
func TestXMLSameRowsAsJSON(t *testing.T) {
	w := newWeather(t)
	for _, q := range [][]string{
		nil, {"average=60"}, {"sum=30", "status=true"}, {"median=60", "round=1"}, {"timescale=15"},
		{"max=30"}, {"min=21.9", "round=0"}, {"results=2", "sum=60"}, {"average=daily", "timezone=Europe/Berlin"},
	} {
		for _, path := range []string{"feeds", "fields/2"} {
			jr := w.get(w.url(path+".json", q...))
			xr := w.get(w.url(path+".xml", q...))
			if jr.status != 200 || xr.status != 200 {
				t.Fatalf("%s %v: json %d %s, xml %d %s", path, q, jr.status, jr.body, xr.status, xr.body)
			}
			var js struct {
				Feeds []map[string]any `json:"feeds"`
			}
			if err := json.Unmarshal([]byte(jr.body), &js); err != nil {
				t.Fatal(err)
			}
			var xs struct {
				Feeds []struct {
					Items []struct {
						XMLName xml.Name
						Nil     string `xml:"nil,attr"`
						Text    string `xml:",chardata"`
					} `xml:",any"`
				} `xml:"feeds>feed"`
			}
			if err := xml.Unmarshal([]byte(xr.body), &xs); err != nil {
				t.Fatalf("%s %v: %v\n%s", path, q, err, xr.body)
			}
			if len(js.Feeds) != len(xs.Feeds) {
				t.Fatalf("%s %v: %d JSON rows, %d XML rows", path, q, len(js.Feeds), len(xs.Feeds))
			}
			for i, row := range xs.Feeds {
				if len(row.Items) != len(js.Feeds[i]) {
					t.Errorf("%s %v row %d: XML keys %v, JSON %v", path, q, i, row.Items, js.Feeds[i])
				}
				for _, it := range row.Items {
					key := strings.ReplaceAll(it.XMLName.Local, "-", "_")
					jv, ok := js.Feeds[i][key]
					var want string
					switch v := jv.(type) {
					case nil:
						want = "<nil>"
					case string:
						want = v
					case float64:
						want = strconv.FormatFloat(v, 'f', -1, 64)
					}
					got := it.Text
					if it.Nil == "true" {
						got = "<nil>"
					}
					if !ok || got != want {
						t.Errorf("%s %v row %d: XML %s = %q, JSON %q (present %v)", path, q, i, key, got, want, ok)
					}
				}
			}
		}
	}
}
