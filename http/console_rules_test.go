package httpd_test

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
)

// The device form shows and edits the device's access rules, one a
// line; the registry the broker checks follows at once.
func TestConsoleDeviceRules(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	p := b.get("/console/devices/new")
	for _, s := range []string{"Access Rules on Free Topics", `<textarea id="rules" name="rules"`, "(at most 100)"} {
		if !strings.Contains(p.body, s) {
			t.Errorf("add form lacks %q", s)
		}
	}
	box := "readwrite homeassistant/#\r\ndeny homeassistant/secret/#\r\n"
	// "Add Channel" round trips keep the box as typed.
	if _, err := e.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "Garden", Fields: [8]string{"t"}}); err != nil {
		t.Fatal(err)
	}
	p = b.post("/console/devices/new", url.Values{"name": {"ha"}, "op": {"add"}, "add_channel": {"1"}, "rules": {box}})
	if p.status != 200 || !strings.Contains(p.body, "readwrite homeassistant/#\ndeny homeassistant/secret/#\n</textarea>") {
		t.Fatalf("round trip lost the rules:\n%s", p.body)
	}
	p = b.post("/console/devices/new", url.Values{"name": {"ha"}, "op": {"save"}, "rules": {box}})
	if p.status != 200 {
		t.Fatalf("add device: %d\n%s", p.status, p.body)
	}
	dev, err := e.svc.Device(t.Context(), 1)
	want := []auth.Rule{{Access: auth.AccessReadWrite, Pattern: "homeassistant/#"}, {Access: auth.AccessDeny, Pattern: "homeassistant/secret/#"}}
	if err != nil || !reflect.DeepEqual(dev.Rules, want) {
		t.Fatalf("created rules %v, %v", dev.Rules, err)
	}
	if !e.svc.Registry.FreeAccess(1, auth.AccessWrite, "homeassistant/status", dev.ClientID, dev.Username) {
		t.Fatal("the registry lacks the new device's rules")
	}
	p = b.get("/console/devices/1")
	if !strings.Contains(p.body, ">readwrite homeassistant/#\ndeny homeassistant/secret/#</textarea>") {
		t.Fatalf("edit page:\n%s", p.body)
	}

	// Edit: the box replaces every rule; live access follows.
	if p := b.post("/console/devices/1", url.Values{"name": {"ha"}, "op": {"save"}, "rules": {"read homeassistant/#\n"}}); p.status != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", p.status, p.body)
	}
	if e.svc.Registry.FreeAccess(1, auth.AccessWrite, "homeassistant/status", dev.ClientID, dev.Username) ||
		!e.svc.Registry.FreeAccess(1, auth.AccessRead, "homeassistant/status", dev.ClientID, dev.Username) {
		t.Fatal("the registry does not follow the edit")
	}
	// A form without the box (a page from before it existed) keeps them.
	if p := b.post("/console/devices/1", url.Values{"name": {"ha2"}, "op": {"save"}}); p.status != http.StatusSeeOther {
		t.Fatalf("edit without the box: %d", p.status)
	}
	if d, _ := e.svc.Device(t.Context(), 1); d.Name != "ha2" || len(d.Rules) != 1 {
		t.Fatalf("after an edit without the box: %+v", d)
	}

	// Refusals: the form comes back with the message and the box as sent
	// (escaped), and nothing changes.
	for _, c := range []struct{ box, want string }{
		{"read channels/1/subscribe", "Access rule on line 1: topic pattern &#34;channels/1/subscribe&#34;: channels/, devices/ and $ topics"},
		{"read a\n<script>alert(1)</script> x", "Access rule on line 2"},
		{"read a\nwrite a", "is given twice"},
		{"read " + strings.Repeat("x", auth.MaxRulePattern+1), "longer than 1024 bytes"},
		{manyRules(auth.MaxRules + 1), "at most 100"},
	} {
		p := b.post("/console/devices/1", url.Values{"name": {"ha2"}, "op": {"save"}, "rules": {c.box}})
		if p.status != http.StatusBadRequest || !strings.Contains(p.body, c.want) {
			t.Errorf("%.40q: %d, want 400 with %q\n%.2000s", c.box, p.status, c.want, p.body)
		}
		if strings.Contains(p.body, "<script>alert") {
			t.Error("the box is not escaped")
		}
	}
	if d, _ := e.svc.Device(t.Context(), 1); !reflect.DeepEqual(d.Rules, []auth.Rule{{Access: auth.AccessRead, Pattern: "homeassistant/#"}}) {
		t.Fatalf("refused edits changed the rules: %v", d.Rules)
	}
	// Clearing the box removes every rule.
	if p := b.post("/console/devices/1", url.Values{"name": {"ha2"}, "op": {"save"}, "rules": {"\n"}}); p.status != http.StatusSeeOther {
		t.Fatalf("clear: %d", p.status)
	}
	if d, _ := e.svc.Device(t.Context(), 1); len(d.Rules) != 0 {
		t.Fatalf("after clearing: %v", d.Rules)
	}
}

func manyRules(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("read t/" + strings.Repeat("x", i) + "\n")
	}
	return b.String()
}
