package httpd

import "testing"

// TestItemsXML checks the Rails rendering of single items: dasherised
// names, type attributes, nil="true", empty strings and escaping.
func TestItemsXML(t *testing.T) {
	const head = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
	for _, c := range []struct {
		desc string
		it   item
		want string
	}{
		{"string", item{key: "name", val: "Door"}, "<name>Door</name>"},
		{"empty string", item{key: "url"}, "<url></url>"},
		{"dasherised integer", item{key: "last_entry_id", val: "7", typ: xmlInteger}, `<last-entry-id type="integer">7</last-entry-id>`},
		{"null integer", item{key: "last_entry_id", typ: xmlInteger, null: true}, `<last-entry-id type="integer" nil="true"></last-entry-id>`},
		{"null string", item{key: "field2", null: true}, `<field2 nil="true"></field2>`},
		{"decimal", item{key: "latitude", val: "-33.9", typ: xmlDecimal}, `<latitude type="decimal">-33.9</latitude>`},
		{"dateTime", item{key: "created_at", val: "2026-11-22T10:00:00Z", typ: xmlTime}, `<created-at type="dateTime">2026-11-22T10:00:00Z</created-at>`},
		{"boolean", item{key: "public_flag", val: "true", typ: xmlBool}, `<public-flag type="boolean">true</public-flag>`},
		{"markup", item{key: "status", val: `</status><x a='1'>&amp;`}, `<status>&lt;/status&gt;&lt;x a=&#39;1&#39;&gt;&amp;amp;</status>`},
		{"CDATA end", item{key: "status", val: "]]>"}, `<status>]]&gt;</status>`},
		{"line breaks", item{key: "metadata", val: "a\r\nb\tc"}, "<metadata>a&#xD;\nb&#x9;c</metadata>"},
		{"non-ASCII", item{key: "field1", val: "23 °C ✓"}, "<field1>23 °C ✓</field1>"},
	} {
		got := string(appendItemsXML(nil, "feed", []item{c.it}))
		want := head + "<feed>\n  " + c.want + "\n</feed>\n"
		if got != want {
			t.Errorf("%s:\n got %q\nwant %q", c.desc, got, want)
		}
	}
	if got, want := string(appendItemsXML(nil, "feed", nil)), head+"<feed></feed>\n"; got != want {
		t.Errorf("empty: %q, want %q", got, want)
	}
	if got := dasherize("a_b_c"); got != "a-b-c" {
		t.Errorf("dasherize = %q", got)
	}
}
