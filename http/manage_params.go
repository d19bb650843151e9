package httpd

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// MaxManageBody bounds the body of a channel or device create or update:
// far more than eight labels, a description and metadata need.
const MaxManageBody = 64 << 10

// Bounds on what one create or update may list, so that a small body
// cannot make the server do much work.
const (
	maxTags       = 100
	maxGrantItems = 1000
)

// manageKeys are the parameters the management API reads; a JSON body's
// other members are ignored unread, so that an error message never
// quotes a name the client made up (it might hold a secret).
var manageKeys = map[string]bool{
	"api_key": true, "name": true, "description": true, "latitude": true, "longitude": true,
	"elevation": true, "metadata": true, "tags": true, "url": true, "public_flag": true,
	"field1": true, "field2": true, "field3": true, "field4": true,
	"field5": true, "field6": true, "field7": true, "field8": true,
	"channel": true, "channels": true, "page": true, "tag": true,
	"rules": true, "rule": true, "rule[]": true,
}

// manageReq holds the parameters of a channel or device request: scalar
// values from the query string, then the body (form or JSON), later
// values winning; tags and grants when a JSON body gave them as arrays,
// or when form values were parsed into them.
type manageReq struct {
	vals url.Values
	// tags is set when the request gives tags: a JSON array, or a
	// comma-separated string.
	tags *[]string
	// grants is set when the request gives channels: a JSON array of
	// {"id":1,"publish":true,"subscribe":true} objects or "1:pub"
	// strings, or form values channel=1:pub (repeated).
	grants *[]auth.Grant
	// rules is set when the request gives access rules: a JSON array of
	// "ACCESS PATTERN" strings, or form values rule[]=, rule= or rules=
	// (repeated, one rule each).
	rules *[]auth.Rule
}

// has reports whether the request sets name.
func (m *manageReq) has(name string) bool { return m.vals.Has(name) }

// get returns the value of name (the last one given), or "".
func (m *manageReq) get(name string) string {
	vs := m.vals[name]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// readManage decodes the query string and, for POST, PUT and DELETE, the
// body of a management request (ThingSpeak's clear and delete send
// api_key in a form body). The body may be at most MaxManageBody bytes
// (413 beyond), and is read within the server's body budget (503 when it
// is spent).
func (h *handler) readManage(w http.ResponseWriter, r *http.Request) (*manageReq, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("The query string is malformed: " + err.Error())
	}
	var body []byte
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodDelete {
		var done func()
		body, done, err = h.opts.bodies.read(w, r, MaxManageBody)
		if err != nil {
			return nil, bodyError(err, MaxManageBody)
		}
		defer done()
	}
	return parseManage(q, r.Header.Get("Content-Type"), body)
}

// parseManage merges query values q with a body of contentType: JSON for
// a JSON media type, else form encoding.
func parseManage(q url.Values, contentType string, body []byte) (*manageReq, *apiError) {
	m := &manageReq{vals: q}
	if len(bytes.TrimSpace(body)) > 0 {
		mt, _, _ := mime.ParseMediaType(contentType)
		if mt == "application/json" || strings.HasSuffix(mt, "+json") {
			if aerr := m.addJSON(body); aerr != nil {
				return nil, aerr
			}
		} else {
			// JSON under another type (curl -d sends form's) would read
			// as a form that sets nothing: a PUT would change nothing
			// and answer 200.
			if t := bytes.TrimSpace(body); t[0] == '{' || t[0] == '[' {
				return nil, badRequest("The body is JSON: send it with Content-Type: application/json, or send a form.")
			}
			v, err := url.ParseQuery(string(bytes.TrimRight(body, "\r\n")))
			if err != nil {
				return nil, badRequest("The form body is malformed: " + err.Error())
			}
			for k, vs := range v {
				m.vals[k] = append(m.vals[k], vs...)
			}
		}
	}
	if m.tags == nil && m.has("tags") {
		tags, aerr := splitTags(m.get("tags"))
		if aerr != nil {
			return nil, aerr
		}
		m.tags = &tags
	}
	// A form grants with channel= or channels= (the JSON body's name),
	// each repeated; one of them given empty alone means no channels.
	if m.grants == nil && (m.has("channel") || m.has("channels")) {
		type item struct{ name, v string }
		var vals []item
		for _, name := range []string{"channel", "channels"} {
			for _, v := range m.vals[name] {
				if v != "" {
					vals = append(vals, item{name, v})
				}
			}
		}
		if len(vals) > maxGrantItems {
			return nil, badRequest("channel is given more than " + strconv.Itoa(maxGrantItems) + " times.")
		}
		gs := make([]auth.Grant, 0, len(vals))
		for i, it := range vals {
			g, aerr := parseGrantValue(it.name+" (value "+strconv.Itoa(i+1)+")", it.v)
			if aerr != nil {
				return nil, aerr
			}
			gs = append(gs, g)
		}
		if aerr := noDuplicateGrants("channel", gs); aerr != nil {
			return nil, aerr
		}
		m.grants = &gs
	}
	// As for channels, a rule name given empty alone means no rules.
	if m.rules == nil && (m.has("rule[]") || m.has("rule") || m.has("rules")) {
		var vals []string
		for _, name := range []string{"rule[]", "rule", "rules"} {
			for _, v := range m.vals[name] {
				if strings.TrimSpace(v) != "" {
					vals = append(vals, v)
				}
			}
		}
		rules, aerr := parseRuleValues(vals)
		if aerr != nil {
			return nil, aerr
		}
		m.rules = &rules
	}
	return m, nil
}

// parseRuleValues parses access rules ("readwrite home/#") for a device,
// at most auth.MaxRules, one per pattern. Errors name the rule by its
// place but never quote it: it might be a secret sent in the wrong place.
func parseRuleValues(vals []string) ([]auth.Rule, *apiError) {
	if len(vals) > auth.MaxRules {
		return nil, badRequest("rules: a device has at most " + strconv.Itoa(auth.MaxRules) + " access rules, got " + strconv.Itoa(len(vals)) + ".")
	}
	out := make([]auth.Rule, 0, len(vals))
	seen := make(map[string]int, len(vals))
	for i, v := range vals {
		at := "rules[" + strconv.Itoa(i) + "]"
		v = strings.TrimSpace(v)
		word, rest := v, ""
		if j := strings.IndexAny(v, " \t"); j >= 0 {
			word, rest = v[:j], strings.TrimSpace(v[j+1:])
		}
		a, err := auth.ParseAccess(word)
		if err != nil {
			return nil, badRequest(at + ` must begin with read, write, readwrite or deny, as in "readwrite home/#".`)
		}
		if why := auth.PatternProblem(rest); why != "" {
			return nil, badRequest(at + ": the topic pattern " + why + ".")
		}
		if j, dup := seen[rest]; dup {
			return nil, badRequest(at + " has the topic pattern of rules[" + strconv.Itoa(j) + "]; a device has one rule per pattern.")
		}
		seen[rest] = i
		out = append(out, auth.Rule{Access: a, Pattern: rest})
	}
	return out, nil
}

// errTooManyTags refuses more tags than the parser takes, with the limit
// a channel has (which the admin service checks for fewer).
func errTooManyTags() *apiError {
	return badRequest("tags: a channel has at most " + strconv.Itoa(channels.MaxTags) + " tags, got more than " + strconv.Itoa(maxTags) + ".")
}

// splitTags splits a comma-separated tag list, trimming spaces and
// dropping empty items, as ThingSpeak does.
func splitTags(s string) ([]string, *apiError) {
	tags := []string{}
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	if len(tags) > maxTags {
		return nil, errTooManyTags()
	}
	return tags, nil
}

// addJSON merges a JSON object body. Scalars may be strings, numbers
// (kept as written), booleans or null (not set); tags may also be an
// array of strings and channels an array of grants.
func (m *manageReq) addJSON(body []byte) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return badRequest(`The body must be a JSON object such as {"name":"Weather station"}.`)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("The body must hold one JSON object and nothing after it.")
	}
	for k, raw := range obj {
		if !manageKeys[k] {
			continue
		}
		switch k {
		case "tags":
			if tags, ok := jsonStrings(raw); ok {
				if len(tags) > maxTags {
					return errTooManyTags()
				}
				m.tags = &tags
				continue
			}
		case "channels":
			gs, aerr := jsonGrants(raw)
			if aerr != nil {
				return aerr
			}
			m.grants = &gs
			continue
		case "rules":
			var items []string
			if err := json.Unmarshal(raw, &items); err != nil || items == nil {
				return badRequest(`rules must be an array of strings such as ["readwrite home/#", "read news/+"].`)
			}
			rules, aerr := parseRuleValues(items)
			if aerr != nil {
				return aerr
			}
			m.rules = &rules
			continue
		}
		s, set, ok := jsonScalar(raw)
		if !ok {
			return badRequest(k + " must be a string, a number or true or false.")
		}
		if set {
			m.vals.Set(k, s)
		}
	}
	return nil
}

// jsonScalar returns a JSON string, number or boolean as text; set is
// false for null.
func jsonScalar(raw json.RawMessage) (s string, set, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", false, false
	}
	switch x := v.(type) {
	case nil:
		return "", false, true
	case string:
		return x, true, true
	case json.Number:
		return x.String(), true, true
	case bool:
		return strconv.FormatBool(x), true, true
	}
	return "", false, false
}

// jsonStrings decodes an array of strings, trimming spaces and dropping
// empty items.
func jsonStrings(raw json.RawMessage) ([]string, bool) {
	var a []string
	if err := json.Unmarshal(raw, &a); err != nil || a == nil {
		return nil, false
	}
	out := []string{}
	for _, s := range a {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, true
}

// jsonGrant is one item of a JSON channels array.
type jsonGrant struct {
	ID        json.Number `json:"id"`
	Publish   *bool       `json:"publish"`
	Subscribe *bool       `json:"subscribe"`
}

// jsonGrants decodes a channels array: [{"id":1,"publish":true,
// "subscribe":false}, ...], ["1:pub", ...] (the CLI's grammar) or [1, 2]
// (bare IDs). An object without publish and subscribe grants both, as a
// bare ID does.
func jsonGrants(raw json.RawMessage) ([]auth.Grant, *apiError) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, badRequest(`channels must be an array such as [{"id":1,"publish":true,"subscribe":true}] or ["1:pub"].`)
	}
	if len(items) > maxGrantItems {
		return nil, badRequest("channels: at most " + strconv.Itoa(maxGrantItems) + " items.")
	}
	out := make([]auth.Grant, 0, len(items))
	for i, item := range items {
		at := "channels[" + strconv.Itoa(i) + "]"
		var s string
		var n json.Number
		if json.Unmarshal(item, &n) == nil && !bytes.HasPrefix(bytes.TrimSpace(item), []byte{'"'}) {
			s = n.String() // a bare ID, as 1 in "1"
		}
		if s != "" || json.Unmarshal(item, &s) == nil {
			g, aerr := parseGrantValue(at, s)
			if aerr != nil {
				return nil, aerr
			}
			out = append(out, g)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(item))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		var g jsonGrant
		if err := dec.Decode(&g); err != nil {
			return nil, badRequest(at + ` must be an object {"id":1,"publish":true,"subscribe":true} or a string such as "1:pub".`)
		}
		id, err := channels.ParseID(g.ID.String())
		if err != nil {
			return nil, badRequest(at + ".id must be a channel ID, a whole number from 1.")
		}
		gr := auth.Grant{ChannelID: id, Publish: true, Subscribe: true}
		if g.Publish != nil || g.Subscribe != nil {
			gr.Publish = g.Publish != nil && *g.Publish
			gr.Subscribe = g.Subscribe != nil && *g.Subscribe
		}
		if !gr.Publish && !gr.Subscribe {
			return nil, badRequest(at + " allows neither publish nor subscribe; set one or both to true.")
		}
		out = append(out, gr)
	}
	if aerr := noDuplicateGrants("channels", out); aerr != nil {
		return nil, aerr
	}
	return out, nil
}

// parseGrantValue parses a grant with the grammar the CLI uses
// (auth.ParseGrant). The error names the parameter but does not quote the
// value, which might be a secret sent in the wrong place.
func parseGrantValue(name, v string) (auth.Grant, *apiError) {
	g, err := auth.ParseGrant(v)
	if err != nil {
		return g, badRequest(name + " must be a channel ID, ID:pub, ID:sub or ID:pubsub, such as 3:pub.")
	}
	return g, nil
}

// noDuplicateGrants refuses a channel granted twice, since one grant
// would silently win.
func noDuplicateGrants(name string, gs []auth.Grant) *apiError {
	seen := make(map[uint64]bool, len(gs))
	for _, g := range gs {
		if seen[g.ChannelID] {
			return badRequest(name + ": channel " + strconv.FormatUint(g.ChannelID, 10) + " is given twice.")
		}
		seen[g.ChannelID] = true
	}
	return nil
}
