package httpd

// Embeddable charts and widgets: small pages for an <iframe> on any site
// (a blog, Home Assistant), as ThingSpeak serves them.
//
//	GET /channels/<id>/charts/<N>            a chart of field N
//	GET /channels/<id>/widgets/numeric/<N>   field N's latest value
//	GET /channels/<id>/widgets/gauge/<N>     field N's latest value on a dial
//
// A public channel needs no key; a private one needs its read key in
// api_key. The page reads the feed through the REST API and, when
// dynamic, polls the same API for entries newer than the last it has.
// Unlike the dashboard's pages these may be framed by any origin; they
// run only their own script and load nothing from elsewhere.

import (
	"bytes"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/feedmq/feedmq/channels"
)

var embedPage = template.Must(template.ParseFS(webFS, "web/embed/page.html"))

// embedHeaders are set on every chart and widget page: framing by any
// origin is the point of them, everything else is as locked down as the
// dashboard (no inline script or style, no requests elsewhere, no
// referrer, since api_key may be in the URL).
func embedHeaders(hdr http.Header) {
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors *; base-uri 'none'; form-action 'none'")
	hdr.Set("Cache-Control", "no-store")
}

// embedRoute is a parsed chart or widget path.
type embedRoute struct {
	kind    string // "chart", "numeric", "gauge"
	channel uint64
	field   int
}

// parseEmbedPath matches the chart and widget paths.
func parseEmbedPath(p string) (embedRoute, bool) {
	rest, ok := strings.CutPrefix(p, "/channels/")
	if !ok {
		return embedRoute{}, false
	}
	seg := strings.Split(rest, "/")
	var rt embedRoute
	switch {
	case len(seg) == 3 && seg[1] == "charts":
		rt.kind = "chart"
	case len(seg) == 4 && seg[1] == "widgets" && (seg[2] == "numeric" || seg[2] == "gauge"):
		rt.kind = seg[2]
	default:
		return embedRoute{}, false
	}
	id, ok := parseChannelID(seg[0])
	if !ok {
		return embedRoute{}, false
	}
	rt.channel, rt.field = id, parseField(seg[len(seg)-1])
	return rt, rt.field != 0
}

// embedData is what the page template gets.
type embedData struct {
	Kind, Title, XAxis, YAxis string
	Field                     int
	O                         embedOptions
	Feed, Last                string // same-origin URLs the script reads
	Recent                    string // the channel's feed without a window: the script adds results
	Poll                      int    // seconds between polls when dynamic
	Results                   int    // points a dynamic chart keeps; 0: as loaded
	Aggregated                bool   // the feed is bucketed: refetch it on new entries
	Status                    int
	Error                     string
}

// embed serves a chart or widget page.
func (h *Dashboard) embed(w http.ResponseWriter, r *http.Request, rt embedRoute) {
	embedHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.embedError(w, r, http.StatusMethodNotAllowed, "error_method_invalid", "Use GET.")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.embedError(w, r, http.StatusBadRequest, "error_bad_request", "The query string is malformed.")
		return
	}
	key := q.Get("api_key")
	if key == "" {
		key = headerKey(r)
	}
	// Access first, so that options tell nothing about a channel the
	// request may not read.
	switch h.embedAccess(w, r, rt.channel, key) {
	case http.StatusOK:
	case http.StatusTooManyRequests:
		h.embedError(w, r, http.StatusTooManyRequests, "error_too_many_requests", "Too many wrong API keys from this address; try again later.")
		return
	case http.StatusNotFound:
		h.embedError(w, r, http.StatusNotFound, "error_resource_not_found", "Channel "+strconv.FormatUint(rt.channel, 10)+" does not exist.")
		return
	default:
		h.embedError(w, r, http.StatusUnauthorized, "error_auth_required", "This channel is private: add its read key as api_key.")
		return
	}
	o, err := parseEmbedOptions(rt.kind, q)
	if err != nil {
		h.embedError(w, r, http.StatusBadRequest, "error_bad_request", err.(*apiError).details)
		return
	}
	ch, err := h.opts.Store.FindChannel(r.Context(), rt.channel)
	if channels.ErrorCode(err) == channels.ENOTFOUND {
		h.embedError(w, r, http.StatusNotFound, "error_resource_not_found", "Channel "+strconv.FormatUint(rt.channel, 10)+" does not exist.")
		return
	} else if err != nil {
		h.log.Error("embed: channel read", "channel", rt.channel, "error", err)
		h.embedError(w, r, http.StatusInternalServerError, "error_internal", "The channel could not be read.")
		return
	}
	label := ch.Fields[rt.field-1]
	if label == "" {
		h.embedError(w, r, http.StatusNotFound, "error_resource_not_found", "Field "+strconv.Itoa(rt.field)+" is not enabled on this channel.")
		return
	}
	d := embedData{Kind: rt.kind, Field: rt.field, O: o, Title: o.Title, XAxis: o.XAxis, YAxis: o.YAxis}
	// ThingSpeak's defaults: the chart's title is the channel name, its
	// axes "Date" and the field's label; a widget's title is the label.
	if d.Title == "" {
		d.Title = ch.Name
		if rt.kind != "chart" {
			d.Title = label
		}
	}
	if d.XAxis == "" {
		d.XAxis = "Date"
	}
	if d.YAxis == "" {
		d.YAxis = label
	}
	base := "/channels/" + strconv.FormatUint(rt.channel, 10)
	keyQ := url.Values{}
	if key != "" && !ch.Public {
		keyQ.Set("api_key", key) // checked above: it is the read key
	}
	feed := url.Values{}
	for k, v := range o.Feed {
		feed[k] = v
	}
	for k, v := range keyQ {
		feed[k] = v
	}
	d.Feed = base + "/fields/" + strconv.Itoa(rt.field) + ".json" + query(feed)
	d.Last = base + "/fields/" + strconv.Itoa(rt.field) + "/last.json" + query(keyQ)
	recent := url.Values{}
	for k, v := range keyQ {
		recent[k] = v
	}
	if rd := o.Feed.Get("round"); rd != "" {
		recent.Set("round", rd)
	}
	// Every field: a dynamic chart accounts for each new entry, with
	// its field or without.
	d.Recent = base + "/feeds.json" + query(recent)
	d.Poll = int(h.opts.EmbedPoll / time.Second)
	d.Results, _ = strconv.Atoi(o.Feed.Get("results"))
	for _, a := range []string{"timescale", "average", "median", "sum"} {
		d.Aggregated = d.Aggregated || o.Feed.Get(a) != ""
	}
	h.renderEmbed(w, r, http.StatusOK, &d)
}

// query encodes v as "?..." or "".
func query(v url.Values) string {
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// embedAccess is authorize for pages: 200, 401, 404, or 429 when the
// address gave too many wrong keys (then the key is not looked at). A
// wrong key counts against the address.
func (h *Dashboard) embedAccess(w http.ResponseWriter, r *http.Request, id uint64, key string) int {
	status := h.canRead(id, "")
	if status != http.StatusUnauthorized || key == "" {
		return status
	}
	if h.opts.KeyThrottle != nil {
		if until, blocked := h.opts.KeyThrottle.Blocked(r.RemoteAddr); blocked {
			w.Header().Set("Retry-After", retryAfter(until))
			return http.StatusTooManyRequests
		}
	}
	if status = h.canRead(id, key); status == http.StatusUnauthorized {
		h.keyFailed(r)
	}
	return status
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(until time.Time) string {
	return strconv.Itoa(max(int(math.Ceil(time.Until(until).Seconds())), 1))
}

// embedError answers an HTML page with the message, counted as a refusal
// like the API's (the server's own failures are not refusals).
func (h *Dashboard) embedError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	h.opts.Refusals.count(&apiError{status: status, code: code})
	h.renderEmbed(w, r, status, &embedData{Title: http.StatusText(status), Status: status, Error: msg})
}

func (h *Dashboard) renderEmbed(w http.ResponseWriter, r *http.Request, status int, d *embedData) {
	var b bytes.Buffer
	if err := embedPage.Execute(&b, d); err != nil {
		h.log.Error("embed: page", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}
