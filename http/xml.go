package httpd

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// XML answers follow Rails' to_xml, which ThingSpeak's XML formats are:
// an XML declaration, elements indented by two spaces, keys dasherised
// (created_at becomes created-at), a type attribute on typed values
// (type="integer", "decimal", "dateTime", "boolean"), nil="true" on
// nulls, arrays as <feeds type="array"> holding one <feed> per entry.
// Every element is written by encoding/xml, which escapes the values.
const (
	ctXML     = "application/xml; charset=utf-8"
	xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
)

// Rails type attributes.
const (
	xmlString  = ""
	xmlInteger = "integer"
	xmlDecimal = "decimal"
	xmlTime    = "dateTime"
	xmlBool    = "boolean"
)

// item is one key of an object as both JSON and XML render it: key is
// the JSON key (the XML element is its dasherised form), typ the Rails
// type, null a null value. Integers, decimals and booleans in val are
// already formatted; JSON writes integers and booleans bare and the rest
// as strings, as ThingSpeak does (latitude is "52.5" in JSON).
type item struct {
	key  string
	val  string
	typ  string
	null bool
}

// dasherize turns a JSON key into its Rails XML element name.
func dasherize(key string) string {
	b := []byte(key)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	return string(b)
}

// xmlEnc writes XML elements to w with Rails' indentation.
type xmlEnc struct {
	enc *xml.Encoder
	err error
}

func newXMLEnc(w io.Writer) *xmlEnc {
	io.WriteString(w, xmlHeader) // an error shows again on the next write
	e := &xmlEnc{enc: xml.NewEncoder(w)}
	e.enc.Indent("", "  ")
	return e
}

func (e *xmlEnc) token(t xml.Token) {
	if e.err == nil {
		e.err = e.enc.EncodeToken(t)
	}
}

// start opens element name, with typ as its type attribute.
func (e *xmlEnc) start(name, typ string) {
	se := xml.StartElement{Name: xml.Name{Local: name}}
	if typ != "" {
		se.Attr = []xml.Attr{{Name: xml.Name{Local: "type"}, Value: typ}}
	}
	e.token(se)
}

func (e *xmlEnc) end(name string) { e.token(xml.EndElement{Name: xml.Name{Local: name}}) }

// item writes <key type="typ">val</key>, or <key type="typ" nil="true">
// for a null.
func (e *xmlEnc) item(it item) {
	name := xml.Name{Local: dasherize(it.key)}
	se := xml.StartElement{Name: name}
	if it.typ != "" {
		se.Attr = append(se.Attr, xml.Attr{Name: xml.Name{Local: "type"}, Value: it.typ})
	}
	if it.null {
		se.Attr = append(se.Attr, xml.Attr{Name: xml.Name{Local: "nil"}, Value: "true"})
	}
	e.token(se)
	if !it.null && it.val != "" {
		e.token(xml.CharData(it.val))
	}
	e.token(xml.EndElement{Name: name})
}

// items writes an element named name holding items.
func (e *xmlEnc) items(name string, items []item) {
	e.start(name, "")
	for _, it := range items {
		e.item(it)
	}
	e.end(name)
}

// close flushes the encoder and ends the document with a line break.
func (e *xmlEnc) close(w io.Writer) error {
	if e.err == nil {
		e.err = e.enc.Flush()
	}
	if e.err == nil {
		_, e.err = io.WriteString(w, "\n")
	}
	return e.err
}

// entryItems returns the items of a row in a read answer: created_at,
// entry_id (unless the rows are buckets) and the view's columns.
func (v *view) entryItems(its []item, e *channels.Entry) []item {
	its = append(its, item{key: "created_at", val: v.xmlTime(e.CreatedAt), typ: xmlTime})
	if !v.bucketed { // a bucket of an aggregation has no entry_id
		its = append(its, item{key: "entry_id", val: strconv.FormatUint(e.ID, 10), typ: xmlInteger})
	}
	for _, i := range v.cols {
		val, ok := e.Value(i)
		its = append(its, item{key: channels.ValueName(i), val: val, typ: valueType(i), null: !ok})
	}
	return its
}

// valueType is the Rails type of an entry value: latitude and longitude
// are decimal columns on ThingSpeak, the rest strings.
func valueType(i int) string {
	if i == channels.Latitude || i == channels.Longitude {
		return xmlDecimal
	}
	return xmlString
}

func (v *view) xmlTime(t time.Time) string {
	return string(v.appendJSONTime(nil, t))
}

// xmlWriter writes the <channel> element with its feeds array, or with
// single one <feed> element, a page of entries at a time.
type xmlWriter struct {
	v      *view
	out    *body
	single bool
	enc    *xmlEnc
	its    []item
}

func (x *xmlWriter) begin() {
	x.out.w.Header().Set("Content-Type", ctXML)
	x.enc = newXMLEnc(x.out)
	if !x.single {
		x.enc.start("channel", "")
		for _, it := range x.v.channelItems() {
			x.enc.item(it)
		}
		x.enc.start("feeds", "array")
	}
}

func (x *xmlWriter) add(es []channels.Entry) {
	for i := range es {
		if x.out.err != nil || x.enc.err != nil {
			return
		}
		x.its = x.v.entryItems(x.its[:0], &es[i])
		x.enc.items("feed", x.its)
	}
	if x.enc.err == nil {
		x.enc.err = x.enc.enc.Flush() // hand the page to out, which flushes in chunks
	}
}

func (x *xmlWriter) end() {
	if !x.single {
		x.enc.end("feeds")
		x.enc.end("channel")
	}
	x.enc.close(x.out)
}

// appendEntryXML appends the <feed> document of a written entry: the
// values /update.json answers, in the same order.
func appendEntryXML(b []byte, e *channels.Entry) []byte {
	its := []item{
		{key: "channel_id", val: strconv.FormatUint(e.ChannelID, 10), typ: xmlInteger},
		{key: "created_at", val: e.CreatedAt.UTC().Format(channels.TimeFormat), typ: xmlTime},
		{key: "entry_id", val: strconv.FormatUint(e.ID, 10), typ: xmlInteger},
	}
	for i := 0; i < channels.NumValues; i++ {
		val, ok := e.Value(i)
		its = append(its, item{key: channels.ValueName(i), val: val, typ: valueType(i), null: !ok})
	}
	return appendItemsXML(b, "feed", its)
}

// appendItemsXML appends a document whose root element name holds items.
func appendItemsXML(b []byte, name string, its []item) []byte {
	buf := bytes.NewBuffer(b)
	enc := newXMLEnc(buf)
	enc.items(name, its)
	enc.close(buf) // a bytes.Buffer does not fail
	return buf.Bytes()
}

// appendErrorXML appends an error answer: ThingSpeak's JSON error object
// as Rails renders a hash in XML (root <hash>, keys dasherised).
func appendErrorXML(b []byte, e *apiError) []byte {
	buf := bytes.NewBuffer(b)
	enc := newXMLEnc(buf)
	enc.start("hash", "")
	enc.item(item{key: "status", val: strconv.Itoa(e.status)})
	enc.items("error", []item{
		{key: "error_code", val: e.code},
		{key: "message", val: e.message},
		{key: "details", val: e.details},
	})
	enc.end("hash")
	enc.close(buf)
	return buf.Bytes()
}

// noEntryXML is ThingSpeak's XML answer for a last entry that does not
// exist: a <feed> whose entry-id is nil.
func noEntryXML() []byte {
	return appendItemsXML(nil, "feed", []item{{key: "entry_id", typ: xmlInteger, null: true}})
}

// appendSettingsXML appends the XML of GET /channels/<id>.xml: the keys
// of the JSON settings answer (appendSettings), in the same order, as
// Rails renders a channel: tags as <tags type="array"> of <tag>, the
// owner's keys as <api-keys type="array"> of <api-key>.
func appendSettingsXML(b []byte, ch *channels.Channel, owner bool) []byte {
	buf := bytes.NewBuffer(b)
	enc := newXMLEnc(buf)
	enc.start("channel", "")
	its := []item{
		{key: "id", val: strconv.FormatUint(ch.ID, 10), typ: xmlInteger},
		{key: "name", val: ch.Name},
		{key: "description", val: ch.Description},
		{key: "latitude", val: ch.Latitude, typ: xmlDecimal, null: ch.Latitude == ""},
		{key: "longitude", val: ch.Longitude, typ: xmlDecimal, null: ch.Longitude == ""},
		{key: "created_at", val: ch.CreatedAt.UTC().Format(channels.TimeFormat), typ: xmlTime},
		{key: "elevation", val: ch.Elevation},
		{key: "last_entry_id", val: strconv.FormatUint(ch.LastEntryID, 10), typ: xmlInteger, null: ch.LastEntryID == 0},
		{key: "public_flag", val: strconv.FormatBool(ch.Public), typ: xmlBool},
		{key: "url", val: ch.URL},
		{key: "metadata", val: ch.Metadata},
	}
	for n := 1; n <= channels.NumFields; n++ {
		if ch.FieldEnabled(n) {
			its = append(its, item{key: channels.ValueName(n - 1), val: ch.Fields[n-1]})
		}
	}
	for _, it := range its {
		enc.item(it)
	}
	enc.start("tags", "array")
	for _, t := range ch.Tags {
		enc.items("tag", []item{{key: "name", val: t}})
	}
	enc.end("tags")
	if owner {
		enc.start("api-keys", "array")
		enc.items("api-key", []item{{key: "api_key", val: ch.WriteKey}, {key: "write_flag", val: "true", typ: xmlBool}})
		enc.items("api-key", []item{{key: "api_key", val: ch.ReadKey}, {key: "write_flag", val: "false", typ: xmlBool}})
		enc.end("api-keys")
	}
	enc.end("channel")
	enc.close(buf)
	return buf.Bytes()
}
