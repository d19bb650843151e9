package httpd

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/feedmq/feedmq/auth"
)

func TestParseManage(t *testing.T) {
	for _, tc := range []struct {
		ct, query, body string
		vals            map[string]string // name -> last value
		tags            []string          // nil: not set
		grants          []auth.Grant      // nil: not set
		err             string
	}{
		{ct: "application/x-www-form-urlencoded", query: "api_key=K", body: "name=A&tags=x,+y+,,z&channel=1:pub&channel=2",
			vals: map[string]string{"api_key": "K", "name": "A"}, tags: []string{"x", "y", "z"},
			grants: []auth.Grant{{ChannelID: 1, Publish: true}, {ChannelID: 2, Publish: true, Subscribe: true}}},
		// The body wins over the query string.
		{query: "name=Q", body: "name=B", vals: map[string]string{"name": "B"}},
		{ct: "application/json", query: "name=Q", body: `{"name":"J","public_flag":true,"latitude":52.50,"url":null}`,
			vals: map[string]string{"name": "J", "public_flag": "true", "latitude": "52.50"}},
		{ct: "application/json; charset=utf-8", body: `{"tags":["a"," b ",""],"channels":[{"id":3,"publish":true},"4:sub",5]}`,
			tags: []string{"a", "b"}, grants: []auth.Grant{{ChannelID: 3, Publish: true}, {ChannelID: 4, Subscribe: true}, {ChannelID: 5, Publish: true, Subscribe: true}}},
		{ct: "application/json", body: `{"tags":"a, b"}`, tags: []string{"a", "b"}},
		{ct: "application/json", body: `{"channels":[]}`, grants: []auth.Grant{}},
		{body: "channel=", grants: []auth.Grant{}},
		{body: "tags=", tags: []string{}},
		{ct: "application/json", body: "  ", vals: map[string]string{}},
		{ct: "application/json", body: `{"name":["a"]}`, err: "name must be"},
		{ct: "application/json", body: `{"tags":[1]}`, err: "tags must be"},
		{ct: "application/json", body: `{"channels":[{"id":"1"}]}`, grants: []auth.Grant{{ChannelID: 1, Publish: true, Subscribe: true}}},
		{ct: "application/json", body: `{"channels":[{"id":-1}]}`, err: "channels[0].id"},
		{ct: "application/json", body: `{"channels":[{"id":1},{"id":1}]}`, err: "channel 1 is given twice"},
		{ct: "application/json", body: `null`, err: "JSON object"},
		{ct: "application/json", body: `{"a":1}x`, err: "one JSON object"},
		{body: "channel=0", err: "channel (value 1) must be"},
		{body: "channel=1&channel=2:x", err: "channel (value 2) must be"},
		// Members the API does not read are ignored, whatever they hold.
		{ct: "application/json", body: `{"name":"n","s3cret-Passw0rd":{"a":[1]}}`, vals: map[string]string{"name": "n"}},
		{body: "tags=" + strings.Repeat("t,", maxTags+1), err: "at most"},
	} {
		q, _ := url.ParseQuery(tc.query)
		m, aerr := parseManage(q, tc.ct, []byte(tc.body))
		if tc.err != "" {
			if aerr == nil || aerr.status != 400 || !strings.Contains(aerr.details, tc.err) {
				t.Errorf("%q: error %v, want 400 with %q", tc.body, aerr, tc.err)
			}
			continue
		}
		if aerr != nil {
			t.Errorf("%q: %v", tc.body, aerr)
			continue
		}
		for k, v := range tc.vals {
			if m.get(k) != v {
				t.Errorf("%q: %s = %q, want %q", tc.body, k, m.get(k), v)
			}
		}
		if (tc.tags == nil) != (m.tags == nil) || (m.tags != nil && strings.Join(*m.tags, "|") != strings.Join(tc.tags, "|")) {
			t.Errorf("%q: tags %v, want %v", tc.body, m.tags, tc.tags)
		}
		if (tc.grants == nil) != (m.grants == nil) || (m.grants != nil && !equalGrants(*m.grants, tc.grants)) {
			t.Errorf("%q: grants %v, want %v", tc.body, m.grants, tc.grants)
		}
	}
}

// Error messages name the parameter, never what the client sent in it:
// a secret sent in the wrong place must not reach the log.
func TestParseManageDoesNotEcho(t *testing.T) {
	const secret = "s3cret-Passw0rd-xyz"
	for _, tc := range []struct{ ct, body string }{
		{"", "channel=" + secret},
		{"", "channel=1:" + secret},
		{"application/json", `{"channels":["` + secret + `"]}`},
		{"application/json", `{"channels":[{"id":"` + secret + `"}]}`},
		{"application/json", `{"channels":[{"id":1,"` + secret + `":true}]}`},
		{"application/json", `{"name":["` + secret + `"]}`},
	} {
		_, aerr := parseManage(url.Values{}, tc.ct, []byte(tc.body))
		if aerr == nil || strings.Contains(aerr.details, "s3cret") {
			t.Errorf("%s: %v", tc.body, aerr)
		}
	}
}

func equalGrants(a, b []auth.Grant) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzParseManage feeds request bodies and query strings to the decoder
// of channel and device requests: it never panics, refuses with 400 and
// a bounded message, and what it accepts holds valid grants only.
func FuzzParseManage(f *testing.F) {
	f.Add(false, "api_key=K", "name=A&tags=a,b&channel=1:pub&channel=2")
	f.Add(true, "", `{"name":"x","tags":["a"],"channels":[{"id":1,"publish":true},"2:sub",3]}`)
	f.Add(true, "", `{"channels":[{"id":1e3}]}`)
	f.Add(true, "", `{"name":{"x":[1,2]}}`)
	f.Add(false, "channel=", "channel=1:pubsub&channel=1")
	f.Add(true, "", `[]`)
	f.Add(false, "rule[]=read+a%2F%23", "rule[]=deny+a%2Fb&rules=write+%25c%2F%2B")
	f.Add(true, "", `{"rules":["readwrite home/#","deny channels/1"," read x "]}`)
	f.Fuzz(func(t *testing.T, isJSON bool, query, body string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		ct := "application/x-www-form-urlencoded"
		if isJSON {
			ct = "application/json"
		}
		m, aerr := parseManage(q, ct, []byte(body))
		if aerr != nil {
			if aerr.status != 400 || len(aerr.details) > 600 {
				t.Fatalf("error %d with %d bytes of details", aerr.status, len(aerr.details))
			}
			if !utf8.ValidString(aerr.details) && !strings.ContainsAny(body+query, "\x80\xff") {
				// Details quote only what the client sent.
				t.Fatalf("details not UTF-8: %q", aerr.details)
			}
			return
		}
		if m.grants != nil {
			seen := map[uint64]bool{}
			for _, g := range *m.grants {
				if g.ChannelID == 0 || (!g.Publish && !g.Subscribe) || seen[g.ChannelID] {
					t.Fatalf("grants %+v", *m.grants)
				}
				seen[g.ChannelID] = true
			}
		}
		if m.rules != nil {
			if err := auth.CheckRules(*m.rules); err != nil {
				t.Fatalf("rules %v: %v", *m.rules, err)
			}
		}
		if m.tags != nil {
			if len(*m.tags) > maxTags {
				t.Fatalf("%d tags", len(*m.tags))
			}
			for _, tag := range *m.tags {
				if tag == "" || tag != strings.TrimSpace(tag) {
					t.Fatalf("tag %q", tag)
				}
			}
		}
	})
}
