package httpd_test

import (
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
)

// A device's access rules go in and out of /mqtt/devices as "ACCESS
// PATTERN" strings, from forms (rule[]=) and JSON alike.
func TestManageDeviceRules(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	var d deviceJSON
	form := "api_key=" + m.key + "&name=ha&rule[]=" + url.QueryEscape("readwrite homeassistant/#") + "&rule[]=" + url.QueryEscape("deny homeassistant/secret/#")
	m.do("POST", "/mqtt/devices.json", form).ok(t, &d)
	if want := []string{"readwrite homeassistant/#", "deny homeassistant/secret/#"}; !reflect.DeepEqual(d.Rules, want) {
		t.Fatalf("created rules %q, want %q", d.Rules, want)
	}
	var z deviceJSON
	m.do("POST", "/mqtt/devices.json", `{"api_key":"`+m.key+`","name":"z2m","rules":["readwrite zigbee2mqtt/#","read  homeassistant/status "]}`).ok(t, &z)
	if want := []string{"readwrite zigbee2mqtt/#", "read homeassistant/status"}; !reflect.DeepEqual(z.Rules, want) {
		t.Fatalf("created by JSON: %q", z.Rules)
	}
	var bare deviceJSON
	r := m.do("POST", "/mqtt/devices.json", "api_key="+m.key+"&name=bare")
	r.ok(t, &bare)
	if bare.Rules == nil || len(bare.Rules) != 0 || !strings.Contains(r.body, `"rules":[]`) {
		t.Fatalf("a device without rules: %s", r.body)
	}

	var one deviceJSON
	m.do("GET", "/mqtt/devices/1.json?api_key="+m.key, "").ok(t, &one)
	if !reflect.DeepEqual(one.Rules, d.Rules) {
		t.Fatalf("GET rules %q", one.Rules)
	}
	var list []deviceJSON
	m.do("GET", "/mqtt/devices.json?api_key="+m.key, "").ok(t, &list)
	if len(list) != 3 || !reflect.DeepEqual(list[1].Rules, z.Rules) {
		t.Fatalf("list: %+v", list)
	}

	// PUT: rules replace every rule; other changes keep them.
	var u deviceJSON
	m.do("PUT", "/mqtt/devices/1.json", "api_key="+m.key+"&rules="+url.QueryEscape("write cmnd/%c/#")).ok(t, &u)
	if !reflect.DeepEqual(u.Rules, []string{"write cmnd/%c/#"}) {
		t.Fatalf("after PUT: %q", u.Rules)
	}
	m.do("PUT", "/mqtt/devices/1.json", `{"api_key":"`+m.key+`","name":"renamed"}`).ok(t, &u)
	if u.Name != "renamed" || !reflect.DeepEqual(u.Rules, []string{"write cmnd/%c/#"}) {
		t.Fatalf("rename: %+v", u)
	}
	m.do("PUT", "/mqtt/devices/1.json", "api_key="+m.key+"&rule[]=").ok(t, &u)
	if len(u.Rules) != 0 {
		t.Fatalf("rule[]= alone left %q", u.Rules)
	}
	m.do("PUT", "/mqtt/devices/2.json", `{"api_key":"`+m.key+`","rules":[]}`).ok(t, &u)
	if len(u.Rules) != 0 {
		t.Fatalf("rules [] left %q", u.Rules)
	}
}

// Attacker input on rules: 400 naming the rule, never quoting it, and
// nothing changes; other devices' IDs and missing keys change nothing.
func TestManageDeviceRulesRefused(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	var d deviceJSON
	m.do("POST", "/mqtt/devices.json", "api_key="+m.key+"&name=ha&rule[]="+url.QueryEscape("read keep/#")).ok(t, &d)
	q := url.QueryEscape
	var many strings.Builder
	for i := range auth.MaxRules + 1 {
		many.WriteString("&rule[]=" + q("read t/"+strconv.Itoa(i)))
	}
	var manyJSON []string
	for i := range auth.MaxRules + 1 {
		manyJSON = append(manyJSON, `"read t/`+strconv.Itoa(i)+`"`)
	}
	const secret = "SECRETPASSWORD42"
	for _, c := range []struct{ body, detail string }{
		{"rule[]=" + q("read channels/"+secret+"/subscribe"), "rules[0]: the topic pattern channels/, devices/ and $ topics are governed by channel grants"},
		{"rule[]=" + q("read x") + "&rule[]=" + q("write devices/"+secret), "rules[1]: the topic pattern channels/, devices/"},
		{"rules=" + q("readwrite $SYS/"+secret), "rules[0]"},
		{"rule[]=" + q("read "+strings.Repeat("a", auth.MaxRulePattern+1)), "rules[0]: the topic pattern is longer than 1024 bytes"},
		{"rule[]=" + q("read a/#/"+secret), "# must be the last level"},
		{"rule[]=" + q("read a\nb"), "control characters"},
		{"rule[]=" + q(secret+" home/#"), "rules[0] must begin with read, write, readwrite or deny"},
		{"rule[]=" + q("read"), "rules[0]: the topic pattern is empty"},
		{"rule[]=" + q("read a") + "&rule=" + q("write a"), "rules[1] has the topic pattern of rules[0]"},
		{many.String()[1:], "at most 100 access rules, got 101"},
		{`{"rules":"read a"}`, "rules must be an array of strings"},
		{`{"rules":[{"access":"read","pattern":"a"}]}`, "rules must be an array of strings"},
		{`{"rules":[` + strings.Join(manyJSON, ",") + `]}`, "at most 100 access rules"},
		{`{"rules":["read ` + secret + `/#","deny channels/` + secret + `"]}`, "rules[1]"},
	} {
		for _, method := range []string{"PUT", "POST"} {
			path := "/mqtt/devices/1.json"
			if method == "POST" {
				path = "/mqtt/devices.json"
			}
			body := c.body
			if body[0] == '{' {
				body = `{"api_key":"` + m.key + `","name":"n",` + body[1:]
			} else {
				body = "api_key=" + m.key + "&name=n&" + body
			}
			r := m.do(method, path, body)
			r.refused(t, 400, "error_bad_request", c.detail)
			if strings.Contains(r.body, secret) {
				t.Errorf("%s %s: the answer quotes the rule: %s", method, c.body[:min(len(c.body), 40)], r.body)
			}
		}
	}
	// Other devices' IDs, no key, a wrong key.
	m.do("PUT", "/mqtt/devices/9.json", "api_key="+m.key+"&rule[]="+q("read a")).refused(t, 404, "error_resource_not_found", "")
	m.do("PUT", "/mqtt/devices/1.json", "rule[]="+q("readwrite #")).refused(t, 401, "error_auth_required", "")
	m.do("PUT", "/mqtt/devices/1.json", "api_key=AAAAAAAAAAAAAAAA&rule[]="+q("readwrite #")).refused(t, 401, "error_auth_required", "")
	m.do("POST", "/mqtt/devices.json", "rule[]="+q("readwrite #")+"&name=x").refused(t, 401, "error_auth_required", "")

	var list []deviceJSON
	m.do("GET", "/mqtt/devices.json?api_key="+m.key, "").ok(t, &list)
	if len(list) != 1 || list[0].Name != "ha" || !reflect.DeepEqual(list[0].Rules, []string{"read keep/#"}) {
		t.Fatalf("refused requests changed devices: %+v", list)
	}
	if strings.Contains(m.logs.String(), secret) {
		t.Error("the log holds a refused rule")
	}
}
