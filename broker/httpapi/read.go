package httpapi

import (
	"encoding/csv"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Timestamp layouts. Without timezone or offset, JSON timestamps are
// UTC with "Z" (channels.TimeFormat) and CSV timestamps end in " UTC", as
// ThingSpeak writes them; with one, both carry the numeric offset.
const (
	jsonZoneFormat = "2006-01-02T15:04:05-07:00"
	csvUTCFormat   = "2006-01-02 15:04:05 UTC"
	csvZoneFormat  = "2006-01-02 15:04:05 -0700"
)

// flushAt is the buffer size at which responses are written out.
const flushAt = 32 << 10

// read serves the feed read routes.
func (h *handler) read(w http.ResponseWriter, r *http.Request, rt route) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.fail(w, r, rt.format, badRequest("The query string is malformed: "+err.Error()))
		return
	}
	if aerr := h.authorizeRead(w, r, rt.channel, apiKey(q, r)); aerr != nil {
		h.fail(w, r, rt.format, aerr)
		return
	}
	p, err := parseReadParams(q, h.opts.Now(), &h.zones)
	if err != nil {
		h.fail(w, r, rt.format, err.(*apiError))
		return
	}
	if rt.format != "json" {
		p.callback = ""
	}
	ctx := r.Context()
	store := h.opts.Store
	ch, err := store.FindChannel(ctx, rt.channel)
	if err != nil {
		h.storeFailed(w, r, rt, err)
		return
	}
	var entries []channels.Entry
	switch rt.kind {
	case routeFeeds, routeField:
		if p.limit > 0 {
			entries, err = store.Entries(ctx, rt.channel, channels.EntryFilter{Limit: p.limit, Start: p.start, End: p.end})
		}
	case routeLast:
		entries, err = store.Entries(ctx, rt.channel, channels.EntryFilter{Limit: 1})
	case routeFieldLast:
		entries, err = store.Entries(ctx, rt.channel, channels.EntryFilter{Limit: 1, Field: rt.field})
	case routeEntry:
		var e *channels.Entry
		if e, err = store.FindEntry(ctx, rt.channel, rt.entry); err == nil {
			entries = []channels.Entry{*e}
		}
	}
	if err != nil {
		h.storeFailed(w, r, rt, err)
		return
	}
	single := rt.kind == routeLast || rt.kind == routeFieldLast || rt.kind == routeEntry
	if single && len(entries) == 0 {
		what := "Channel " + strconv.FormatUint(rt.channel, 10) + " has no entries yet."
		if rt.kind == routeFieldLast {
			what = "Channel " + strconv.FormatUint(rt.channel, 10) + " has no entry with field" + strconv.Itoa(rt.field) + " set."
		}
		h.fail(w, r, rt.format, notFound(what))
		return
	}
	for i := range entries {
		// An entry committed after FindChannel may be in the list.
		ch.LastEntryID = max(ch.LastEntryID, entries[i].ID)
	}
	v := view{ch: ch, p: &p, cols: columns(ch, rt, &p)}
	out := &body{w: w}
	switch {
	case rt.format == "txt" && rt.kind == routeFieldLast:
		val, _ := entries[0].Field(rt.field)
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte(val))
		return
	case rt.format == "txt":
		// feeds/last.txt is the entry object as text; the ThingSpeak
		// Arduino library picks "status" and "created_at" out of it.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		out.buf = v.appendEntry(out.buf, &entries[0])
	case rt.format == "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		v.writeCSV(out, entries)
	default:
		v.writeJSON(out, entries, single)
	}
	out.finish()
}

// body buffers a response and writes it out in chunks of about flushAt
// bytes, so that an 8000-entry feed is not held twice in memory. A body
// that fits in one chunk is sent with a Content-Length, which simple
// device HTTP clients need.
type body struct {
	w       http.ResponseWriter
	buf     []byte
	flushed bool
	err     error
}

// Write appends p, for csv.Writer.
func (b *body) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	b.maybeFlush()
	return len(p), b.err
}

func (b *body) maybeFlush() {
	if len(b.buf) < flushAt || b.err != nil {
		return
	}
	_, b.err = b.w.Write(b.buf)
	b.buf, b.flushed = b.buf[:0], true
}

func (b *body) finish() {
	if b.err != nil {
		return
	}
	if !b.flushed {
		b.w.Header().Set("Content-Length", strconv.Itoa(len(b.buf)))
	}
	b.w.Write(b.buf)
}

// authorizeRead checks that channel ch may be read with key. A public
// channel needs none; a wrong key counts against the client's address,
// and an address that gave too many is refused before its key is checked.
func (h *handler) authorizeRead(w http.ResponseWriter, r *http.Request, ch uint64, key string) *apiError {
	reg := h.opts.Registry
	err := reg.CanSubscribe(auth.Anonymous, ch, "")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auth.ErrUnknownChannel):
		return channelNotFound(ch)
	case key == "":
		return errAuth
	}
	if aerr := h.throttled(w, r); aerr != nil {
		return aerr
	}
	if reg.CanSubscribe(auth.Anonymous, ch, key) != nil {
		h.keyFailed(r)
		return errAuth
	}
	return nil
}

// apiKey returns the api_key parameter, or the key in a header.
func apiKey(q url.Values, r *http.Request) string {
	if k := q.Get("api_key"); k != "" {
		return k
	}
	return headerKey(r)
}

// headerKey returns the API key of the THINGSPEAKAPIKEY header, or of
// X-THINGSPEAKAPIKEY, which the ThingSpeak Arduino library sends.
func headerKey(r *http.Request) string {
	if k := r.Header.Get("THINGSPEAKAPIKEY"); k != "" {
		return k
	}
	return r.Header.Get("X-THINGSPEAKAPIKEY")
}

func channelNotFound(id uint64) *apiError {
	return notFound("Channel " + strconv.FormatUint(id, 10) + " does not exist.")
}

// storeFailed answers a failed store read: the channel or entry is gone,
// or the store is broken.
func (h *handler) storeFailed(w http.ResponseWriter, r *http.Request, rt route, err error) {
	if channels.ErrorCode(err) == channels.ENOTFOUND {
		h.fail(w, r, rt.format, notFound(sentence(channels.ErrorMessage(err))))
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.Error("http read failed", "path", r.URL.Path, "error", err)
	h.fail(w, r, rt.format, errInternal)
}

// columns returns the value indexes each entry shows: the channel's
// enabled fields (or just field N on field routes), then latitude,
// longitude and elevation with location=true, then status with
// status=true.
func columns(ch *channels.Channel, rt route, p *readParams) []int {
	var cols []int
	if rt.kind == routeField || rt.kind == routeFieldLast {
		cols = append(cols, rt.field-1)
	} else {
		for n := 1; n <= channels.NumFields; n++ {
			if ch.FieldEnabled(n) {
				cols = append(cols, n-1)
			}
		}
	}
	if p.location {
		cols = append(cols, channels.Latitude, channels.Longitude, channels.Elevation)
	}
	if p.status {
		cols = append(cols, channels.Status)
	}
	return cols
}

// view renders one read response.
type view struct {
	ch   *channels.Channel
	p    *readParams
	cols []int
}

// writeJSON writes the channel object and feeds array, or with single the
// one entry object.
func (v *view) writeJSON(out *body, entries []channels.Entry, single bool) {
	ct := "application/json; charset=utf-8"
	if v.p.callback != "" {
		ct = "application/javascript; charset=utf-8"
	}
	out.w.Header().Set("Content-Type", ct)
	b := out.buf
	if v.p.callback != "" {
		// The comment stops a callback name from being read as a file
		// signature by plugins.
		b = append(b, "/**/"...)
		b = append(b, v.p.callback...)
		b = append(b, '(')
	}
	if single {
		b = v.appendEntry(b, &entries[0])
	} else {
		b = append(b, `{"channel":`...)
		b = v.appendChannel(b)
		b = append(b, `,"feeds":[`...)
		for i := range entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.appendEntry(b, &entries[i])
			if len(b) >= flushAt {
				out.buf = b
				out.maybeFlush()
				if out.err != nil {
					return
				}
				b = out.buf
			}
		}
		b = append(b, "]}"...)
	}
	if v.p.callback != "" {
		b = append(b, ')')
	}
	out.buf = b
}

// appendChannel appends the channel object: id, name, description when
// set, the labels of enabled fields, created_at, updated_at and
// last_entry_id (null for a channel without entries).
func (v *view) appendChannel(b []byte) []byte {
	ch := v.ch
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, ch.ID, 10)
	b = append(b, `,"name":`...)
	b = channels.AppendJSONString(b, ch.Name)
	if ch.Description != "" {
		b = append(b, `,"description":`...)
		b = channels.AppendJSONString(b, ch.Description)
	}
	for n := 1; n <= channels.NumFields; n++ {
		if ch.FieldEnabled(n) {
			b = append(b, `,"field`...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, `":`...)
			b = channels.AppendJSONString(b, ch.Fields[n-1])
		}
	}
	b = append(b, `,"created_at":"`...)
	b = v.appendJSONTime(b, ch.CreatedAt)
	b = append(b, `","updated_at":"`...)
	b = v.appendJSONTime(b, ch.UpdatedAt)
	b = append(b, `","last_entry_id":`...)
	if ch.LastEntryID == 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendUint(b, ch.LastEntryID, 10)
	}
	return append(b, '}')
}

// appendEntry appends {"created_at":...,"entry_id":...} and the view's
// columns, each a string or null.
func (v *view) appendEntry(b []byte, e *channels.Entry) []byte {
	b = append(b, `{"created_at":"`...)
	b = v.appendJSONTime(b, e.CreatedAt)
	b = append(b, `","entry_id":`...)
	b = strconv.AppendUint(b, e.ID, 10)
	for _, i := range v.cols {
		b = append(b, ',', '"')
		b = append(b, channels.ValueName(i)...)
		b = append(b, '"', ':')
		if val, ok := e.Value(i); ok {
			b = channels.AppendJSONString(b, val)
		} else {
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

func (v *view) appendJSONTime(b []byte, t time.Time) []byte {
	if v.p.loc == nil {
		return t.UTC().AppendFormat(b, channels.TimeFormat)
	}
	return t.In(v.p.loc).AppendFormat(b, jsonZoneFormat)
}

func (v *view) csvTime(t time.Time) string {
	if v.p.loc == nil {
		return t.UTC().Format(csvUTCFormat)
	}
	return t.In(v.p.loc).Format(csvZoneFormat)
}

// writeCSV writes a header line (created_at, entry_id and the columns)
// and one row per entry; unset values are empty, and values that a
// spreadsheet would run as formulas are quoted (channels.CSVCell).
func (v *view) writeCSV(out *body, entries []channels.Entry) {
	cw := csv.NewWriter(out)
	row := make([]string, 0, 2+len(v.cols))
	row = append(row, "created_at", "entry_id")
	for _, i := range v.cols {
		row = append(row, channels.ValueName(i))
	}
	if cw.Write(row) != nil {
		return
	}
	for i := range entries {
		e := &entries[i]
		row = append(row[:0], v.csvTime(e.CreatedAt), strconv.FormatUint(e.ID, 10))
		for _, c := range v.cols {
			val, _ := e.Value(c)
			row = append(row, channels.CSVCell(val))
		}
		if cw.Write(row) != nil {
			return
		}
	}
	cw.Flush()
}
