package httpd

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	var last lastParams
	if rt.kind == routeLastAggregate {
		if last, err = parseLastParams(q, rt.agg); err != nil {
			h.fail(w, r, rt.format, err.(*apiError))
			return
		}
	}
	p, err := parseReadParams(q, h.opts.Now(), &h.zones)
	if err != nil {
		h.fail(w, r, rt.format, err.(*apiError))
		return
	}
	if rt.kind == routeStatus {
		p.statusWindow(q, h.opts.Now())
		// A status read lists statuses as written: ThingSpeak's takes
		// no bucket, min, max or round parameter, and a bucket has no
		// status.
		p.rows = channels.RowOptions{Round: -1}
	}
	if rt.kind == routeLastAggregate {
		// Only rounding applies to the last bucket.
		p.rows = channels.RowOptions{Kind: rt.agg, Bucket: channels.Bucket{Minutes: last.n}, Round: p.rows.Round}
	}
	if rt.format != "json" {
		p.callback = ""
	}
	ctx := r.Context()
	store := h.opts.Store
	multi := rt.kind == routeFeeds || rt.kind == routeField || rt.kind == routeStatus
	if multi && h.reads != nil {
		// A feed read holds a page of entries and buffers while a slow
		// client takes them: only so many at a time.
		select {
		case h.reads <- struct{}{}:
			defer func() { <-h.reads }()
		default:
			w.Header().Set("Retry-After", "1")
			h.fail(w, r, rt.format, errBusy)
			return
		}
	}
	ch, err := store.FindChannel(ctx, rt.channel)
	if err != nil {
		h.storeFailed(w, r, rt, err)
		return
	}
	out := h.newBody(w, r)
	if pager, ok := store.(TimePager); ok && multi {
		h.streamFeed(w, r, rt, &p, ch, pager, out)
		return
	}
	var entries []channels.Entry
	switch rt.kind {
	case routeFeeds, routeField, routeStatus:
		if p.limit > 0 {
			// Without paging, the answer is built whole: every match,
			// then the newest by time, as TimePager's keys select them.
			f := p.filter()
			f.Limit = 0
			if entries, err = store.Entries(ctx, rt.channel, f); err == nil {
				entries = newestByTime(entries, p.limit)
			}
		}
	case routeLast, routeStatusLast:
		entries, err = store.Entries(ctx, rt.channel, channels.EntryFilter{Limit: 1})
	case routeFieldLast:
		entries, err = store.Entries(ctx, rt.channel, channels.EntryFilter{Limit: 1, Field: rt.field})
	case routeLastAggregate:
		// The newest entries by created_at, as ThingSpeak takes them,
		// whatever their end: it gives this read no time window.
		f := channels.EntryFilter{Limit: min(last.n, maxLastEntries)}
		if pager, ok := store.(TimePager); ok {
			entries, err = entriesByTime(ctx, pager, rt.channel, f)
		} else if entries, err = store.Entries(ctx, rt.channel, channels.EntryFilter{}); err == nil {
			entries = newestByTime(entries, f.Limit)
		}
	case routeEntry:
		var e *channels.Entry
		e, ferr := store.FindEntry(ctx, rt.channel, rt.entry)
		switch {
		case ferr == nil:
			entries = []channels.Entry{*e}
		case channels.ErrorCode(ferr) != channels.ENOTFOUND:
			err = ferr
		}
		// The channel was found above: a missing entry (never written,
		// or gone to retention) is answered as a last one that does not
		// exist.
	}
	if err != nil {
		h.storeFailed(w, r, rt, err)
		return
	}
	if len(entries) == 0 && !multi {
		// ThingSpeak answers an entry that does not exist (a last one
		// of an empty channel or a field never set, one asked for by
		// number) with -1, which the sketches of its Arduino library
		// test for, in CSV on a line of its own, or in XML a feed
		// without an entry-id.
		switch rt.format {
		case "xml":
			writeBody(w, http.StatusOK, ctXML, noEntryXML())
		case "csv":
			writeBody(w, http.StatusOK, "text/csv; charset=utf-8", []byte("-1\n"))
		case "json":
			if p.callback != "" {
				// JSONP: the page's callback gets the -1.
				writeBody(w, http.StatusOK, "application/javascript; charset=utf-8", []byte("/**/"+p.callback+"(-1)"))
				break
			}
			writeBody(w, http.StatusOK, "application/json; charset=utf-8", []byte("-1"))
		default:
			writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte("-1"))
		}
		return
	}
	for i := range entries {
		// An entry committed after FindChannel may be in the list.
		ch.LastEntryID = max(ch.LastEntryID, entries[i].ID)
	}
	v := view{ch: ch, p: &p, cols: columns(ch, rt, &p), format: rt.format, kind: rt.kind}
	if rt.kind == routeLastAggregate {
		entries = lastBucket(entries, &p, v.cols)
		v.bucketed = true
	} else if !multi && p.rows.Round >= 0 {
		// round applies to one entry too (feeds/last, fields/<N>/last,
		// feeds/entry/<id>), as in ThingSpeak; the bucket parameters and
		// min/max do not.
		for i := range channels.NumFields {
			if val, ok := entries[0].Field(i + 1); ok {
				entries[0].Values[i] = channels.RoundValue(val, p.rows.Round)
			}
		}
	} else if multi && p.rows.Shaped() {
		p.rows.Cols = v.cols
		v.bucketed = p.rows.Kind != channels.NoAggregate
		rows := channels.NewRows(p.rows, func(es []channels.Entry) { entries = append(entries, es...) })
		in := entries
		entries = nil
		if err := rows.Add(in); err != nil {
			h.fail(w, r, rt.format, tooManyBuckets())
			return
		}
		rows.Close()
	}
	switch {
	case rt.format == "txt" && rt.kind == routeFieldLast:
		val, _ := entries[0].Field(rt.field)
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte(val))
		return
	case rt.format == "txt" && rt.kind == routeStatusLast:
		val, _ := entries[0].Value(channels.Status)
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte(val))
		return
	case rt.format == "txt" && last.field > 0:
		val, _ := entries[0].Field(last.field)
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte(val))
		return
	case rt.format == "txt":
		// feeds/last.txt is the entry object as text; the ThingSpeak
		// Arduino library picks "status" and "created_at" out of it.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		out.buf = v.appendEntry(out.buf, &entries[0])
	default:
		fw := v.writer(out, !multi)
		fw.begin()
		fw.add(entries)
		fw.end()
	}
	out.finish()
}

// pageSize is how many entries a streamed feed read holds at a time:
// about 300 KB for entries near the payload limit.
const pageSize = 100

// TimePager is implemented by stores that hand out a read in time order
// a page at a time (storage.DB): feeds and fields reads then hold the
// keys of the answer (16 bytes an entry) and one page of entries, never a
// whole 8000-entry answer, and no read transaction while a page is
// written to the client.
type TimePager interface {
	// EntryKeys returns the keys of the newest f.Limit entries by
	// created_at (then entry_id) that match f, oldest first.
	EntryKeys(ctx context.Context, channelID uint64, f channels.EntryFilter) (channels.EntryKeys, error)
	// EntriesByKey appends to page the entries of keys in their order,
	// leaving out those deleted since; ECONFLICT once the feed has been
	// cleared since the keys were read (version).
	EntriesByKey(ctx context.Context, channelID, version uint64, keys []channels.EntryKey, page []channels.Entry) ([]channels.Entry, error)
}

// streamFeed writes a feeds or fields answer a page at a time, in
// created_at order as ThingSpeak's: results are the newest matches by
// time, whatever order they were written in. Its bytes are those of the
// answer built whole. An aggregation holds one bucket (channels.Rows),
// not the answer.
func (h *handler) streamFeed(w http.ResponseWriter, r *http.Request, rt route, p *readParams, ch *channels.Channel, pager TimePager, out *body) {
	ctx := r.Context()
	var keys channels.EntryKeys
	var page []channels.Entry
	var rest []channels.EntryKey
	next := func() error {
		n := min(pageSize, len(rest))
		if n == 0 {
			page = page[:0]
			return nil
		}
		var err error
		page, err = pager.EntriesByKey(ctx, rt.channel, keys.Version, rest[:n], page[:0])
		rest = rest[n:]
		return err
	}
	// The first page is read before anything is written, so that a
	// failure then is answered with an error of its own. A clear of the
	// channel between the keys and that page is no failure: nothing is
	// sent yet, so the feed is read again as the clear left it.
	for again := true; ; again = false {
		if p.limit > 0 {
			var err error
			if keys, err = pager.EntryKeys(ctx, rt.channel, p.filter()); err != nil {
				h.storeFailed(w, r, rt, err)
				return
			}
		}
		if page == nil {
			page = make([]channels.Entry, 0, min(pageSize, len(keys.Keys)))
		}
		rest = keys.Keys
		err := next()
		if err == nil {
			break
		}
		if again && channels.ErrorCode(err) == channels.ECONFLICT {
			if ch, err = h.opts.Store.FindChannel(ctx, rt.channel); err == nil {
				continue
			}
		}
		h.storeFailed(w, r, rt, err)
		return
	}
	for _, k := range keys.Keys {
		// An entry committed after FindChannel may be in the answer.
		ch.LastEntryID = max(ch.LastEntryID, k.ID)
	}
	if n := len(keys.Keys); p.rows.Kind != channels.NoAggregate && n > 0 {
		// Refuse, before anything is sent, a span of more buckets than
		// MaxBucketRows (empty buckets are rows too).
		first, last := time.Unix(keys.Keys[0].Created, 0), time.Unix(keys.Keys[n-1].Created, 0)
		if p.rows.Bucket.Count(first, last) > MaxBucketRows {
			h.fail(w, r, rt.format, tooManyBuckets())
			return
		}
	}
	v := view{ch: ch, p: p, cols: columns(ch, rt, p), format: rt.format, kind: rt.kind, bucketed: p.rows.Kind != channels.NoAggregate}
	fw := v.writer(out, false)
	var shaped *shapedWriter
	if p.rows.Shaped() {
		shaped = newShapedWriter(fw, p.rows, v.cols)
		fw = shaped
	}
	fw.begin()
	for out.err == nil {
		fw.add(page)
		if shaped != nil && shaped.err != nil {
			// The check above bounds the buckets of entries in time
			// order; this is a defence only.
			if !out.flushed {
				out.buf = nil
				h.fail(w, r, rt.format, tooManyBuckets())
				return
			}
			panic(http.ErrAbortHandler)
		}
		if len(rest) == 0 {
			break
		}
		if err := next(); err != nil {
			if !out.flushed {
				out.buf = nil
				h.storeFailed(w, r, rt, err)
				return
			}
			if ctx.Err() == nil {
				h.log.Error("http read failed", "path", r.URL.Path, "error", err)
			}
			// Part of the answer is out: cut the connection so the
			// client sees it is incomplete.
			panic(http.ErrAbortHandler)
		}
	}
	fw.end()
	out.finish()
}

// shapedWriter passes entries through channels.Rows (aggregation, min
// and max, round) to a format's writer, which only renders rows.
type shapedWriter struct {
	next feedWriter
	rows *channels.Rows
	err  error
}

func newShapedWriter(next feedWriter, opt channels.RowOptions, cols []int) *shapedWriter {
	opt.Cols = cols
	s := &shapedWriter{next: next}
	s.rows = channels.NewRows(opt, next.add)
	return s
}

func (s *shapedWriter) begin() { s.next.begin() }

func (s *shapedWriter) add(es []channels.Entry) {
	if s.err == nil {
		s.err = s.rows.Add(es)
	}
}

func (s *shapedWriter) end() {
	if s.err == nil {
		s.rows.Close()
	}
	s.next.end()
}

func tooManyBuckets() *apiError {
	return badRequest("The entries span more than " + strconv.Itoa(MaxBucketRows) +
		" buckets: ask for a wider bucket, fewer results or a shorter start..end.")
}

// maxLastEntries bounds the entries last_average, last_median and
// last_sum look at.
const maxLastEntries = 100

// lastParams are the parameters of feeds/last_average, last_median and
// last_sum.
type lastParams struct {
	// n is the average, median or sum parameter: as ThingSpeak reads
	// it, both the number of newest entries to take (at most 100) and
	// the width in minutes of the buckets they are folded into; the
	// answer is the newest bucket.
	n int
	// field is field_id (1..8) for the .txt answer's bare value, or 0.
	field int
}

// parseLastParams reads the count of a last_<kind> read and field_id, and
// removes the bucket parameters from q, since here they are no widths.
func parseLastParams(q url.Values, kind channels.AggregateKind) (lastParams, error) {
	var lp lastParams
	name := kind.String()
	n, err := parseCount(q.Get(name), maxMinutes)
	if err != nil || n == 0 {
		return lp, badRequest(name + " must be a whole number from 1: the newest entries to take (at most " +
			strconv.Itoa(maxLastEntries) + "), in buckets of that many minutes.")
	}
	lp.n = n
	if s := q.Get("field_id"); s != "" {
		if lp.field = parseField(strings.TrimPrefix(s, "field")); lp.field == 0 {
			return lp, badRequest("field_id must be a field number from 1 to 8.")
		}
	}
	for _, k := range aggregateParams {
		q.Del(k.String())
	}
	return lp, nil
}

// lastBucket folds the newest entries into buckets and returns the
// newest bucket's row (none without entries).
func lastBucket(entries []channels.Entry, p *readParams, cols []int) []channels.Entry {
	opt := p.rows
	opt.Cols = cols
	// The newest bucket is that of the latest created_at. Start at the
	// first entry that reaches it: the empty buckets before it (entries
	// years apart, a device's clock at 1970) would cost a step each.
	// (Entries come in time order from TimePager; an entry older than
	// the open bucket would be folded into it.)
	if len(entries) > 0 {
		newest := entries[0].CreatedAt
		for i := range entries {
			if entries[i].CreatedAt.After(newest) {
				newest = entries[i].CreatedAt
			}
		}
		start := opt.Bucket.Start(newest)
		for i := range entries {
			if !opt.Bucket.Start(entries[i].CreatedAt).Before(start) {
				entries = entries[i:]
				break
			}
		}
	}
	var last channels.Entry
	n := 0
	rows := channels.NewRows(opt, func(es []channels.Entry) {
		last, n = es[len(es)-1], n+len(es)
	})
	rows.Add(entries) // no MaxRows: at most 100 entries
	rows.Close()
	if n == 0 {
		return nil
	}
	return []channels.Entry{last}
}

// entriesByTime returns the newest f.Limit entries that match f by
// created_at, oldest first, all at once: for small reads.
func entriesByTime(ctx context.Context, pager TimePager, channelID uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	keys, err := pager.EntryKeys(ctx, channelID, f)
	if err != nil || len(keys.Keys) == 0 {
		return nil, err
	}
	return pager.EntriesByKey(ctx, channelID, keys.Version, keys.Keys, make([]channels.Entry, 0, len(keys.Keys)))
}

// newestByTime returns the newest n of es by created_at, then entry_id,
// oldest first.
func newestByTime(es []channels.Entry, n int) []channels.Entry {
	slices.SortStableFunc(es, func(a, b channels.Entry) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return es[max(len(es)-n, 0):]
}

// filter is the store filter of a feeds or fields read.
func (p *readParams) filter() channels.EntryFilter {
	return channels.EntryFilter{Limit: p.limit, Start: p.start, End: p.end}
}

// body buffers a response and writes it out in chunks of about flushAt
// bytes, so that an 8000-entry feed is not held twice in memory. A body
// that fits in one chunk is sent with a Content-Length, which simple
// device HTTP clients need. Each write has its own deadline
// (APIOptions.WriteTimeout), so that a client that stops reading is cut off
// soon, without shortening a slow download that keeps going.
type body struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	perWrite time.Duration
	end      time.Time // the whole response's deadline, or zero
	buf      []byte
	flushed  bool
	err      error
}

func (h *handler) newBody(w http.ResponseWriter, r *http.Request) *body {
	b := &body{w: w, rc: http.NewResponseController(w), perWrite: h.opts.WriteTimeout}
	if h.opts.ResponseTimeout > 0 {
		b.end = time.Now().Add(h.opts.ResponseTimeout)
	}
	return b
}

// write sends p under the write deadline.
func (b *body) write(p []byte) {
	if b.perWrite > 0 {
		d := time.Now().Add(b.perWrite)
		if !b.end.IsZero() && b.end.Before(d) {
			d = b.end
		}
		_ = b.rc.SetWriteDeadline(d) // not every ResponseWriter has one
	}
	_, b.err = b.w.Write(p)
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
	b.write(b.buf)
	b.buf, b.flushed = b.buf[:0], true
}

func (b *body) finish() {
	if b.err != nil {
		return
	}
	if !b.flushed {
		b.w.Header().Set("Content-Length", strconv.Itoa(len(b.buf)))
	}
	b.write(b.buf)
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
	if rt.kind == routeStatus || rt.kind == routeStatusLast {
		return []int{channels.Status}
	}
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
	ch     *channels.Channel
	p      *readParams
	cols   []int
	format string // "json", "csv" or "xml"
	kind   int    // the route kind
	// bucketed rows are buckets of an aggregation: they have no
	// entry_id, and a format leaves it out.
	bucketed bool
}

// feedWriter renders entries as they come: begin, add for each page,
// end.
type feedWriter interface {
	begin()
	add(es []channels.Entry)
	end()
}

// writer returns the renderer of the view's format.
func (v *view) writer(out *body, single bool) feedWriter {
	switch v.format {
	case "csv":
		return &csvWriter{v: v, out: out}
	case "xml":
		return &xmlWriter{v: v, out: out, single: single}
	}
	return &jsonWriter{v: v, out: out, single: single}
}

// jsonWriter writes the channel object and feeds array, or with single
// the one entry object; JSONP wraps either in the callback.
type jsonWriter struct {
	v      *view
	out    *body
	single bool
	n      int
}

func (j *jsonWriter) begin() {
	ct := "application/json; charset=utf-8"
	if j.v.p.callback != "" {
		ct = "application/javascript; charset=utf-8"
	}
	j.out.w.Header().Set("Content-Type", ct)
	b := j.out.buf
	if j.v.p.callback != "" {
		// The comment stops a callback name from being read as a file
		// signature by plugins.
		b = append(b, "/**/"...)
		b = append(b, j.v.p.callback...)
		b = append(b, '(')
	}
	if !j.single {
		b = append(b, `{"channel":`...)
		b = j.v.appendChannel(b)
		b = append(b, `,"feeds":[`...)
	}
	j.out.buf = b
}

func (j *jsonWriter) add(es []channels.Entry) {
	for i := range es {
		if j.out.err != nil {
			return
		}
		if j.n > 0 {
			j.out.buf = append(j.out.buf, ',')
		}
		j.n++
		j.out.buf = j.v.appendEntry(j.out.buf, &es[i])
		j.out.maybeFlush()
	}
}

func (j *jsonWriter) end() {
	if !j.single {
		j.out.buf = append(j.out.buf, "]}"...)
	}
	if j.v.p.callback != "" {
		j.out.buf = append(j.out.buf, ')')
	}
}

// channelItems returns the keys of the channel object, in ThingSpeak's
// order (its database column order): id, name, description when set,
// latitude and longitude when set, the labels of enabled fields,
// created_at, updated_at, elevation when set, last_entry_id (null for a
// channel without entries) and, with metadata=true, metadata. A status
// read has the short form: name and the location when set.
func (v *view) channelItems() []item {
	ch := v.ch
	its := make([]item, 0, 16)
	opt := func(key, val, typ string) {
		if val != "" {
			its = append(its, item{key: key, val: val, typ: typ})
		}
	}
	if v.kind == routeStatus {
		its = append(its, item{key: "name", val: ch.Name})
		opt("latitude", ch.Latitude, xmlDecimal)
		opt("longitude", ch.Longitude, xmlDecimal)
		opt("elevation", ch.Elevation, xmlString)
		return its
	}
	its = append(its, item{key: "id", val: strconv.FormatUint(ch.ID, 10), typ: xmlInteger},
		item{key: "name", val: ch.Name})
	opt("description", ch.Description, xmlString)
	opt("latitude", ch.Latitude, xmlDecimal)
	opt("longitude", ch.Longitude, xmlDecimal)
	for n := 1; n <= channels.NumFields; n++ {
		if ch.FieldEnabled(n) {
			its = append(its, item{key: channels.ValueName(n - 1), val: ch.Fields[n-1]})
		}
	}
	its = append(its,
		item{key: "created_at", val: v.xmlTime(ch.CreatedAt), typ: xmlTime},
		item{key: "updated_at", val: v.xmlTime(ch.UpdatedAt), typ: xmlTime})
	opt("elevation", ch.Elevation, xmlString)
	its = append(its, item{key: "last_entry_id", val: strconv.FormatUint(ch.LastEntryID, 10), typ: xmlInteger, null: ch.LastEntryID == 0})
	if v.p.metadata {
		its = append(its, item{key: "metadata", val: ch.Metadata, null: ch.Metadata == ""})
	}
	return its
}

// appendChannel appends the channel object (channelItems) as JSON:
// integers bare, other values as strings.
func (v *view) appendChannel(b []byte) []byte {
	for i, it := range v.channelItems() {
		if i == 0 {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = channels.AppendJSONString(b, it.key)
		b = append(b, ':')
		switch {
		case it.null:
			b = append(b, "null"...)
		case it.typ == xmlInteger || it.typ == xmlBool:
			b = append(b, it.val...)
		default:
			b = channels.AppendJSONString(b, it.val)
		}
	}
	return append(b, '}')
}

// appendEntry appends {"created_at":...,"entry_id":...} and the view's
// columns, each a string or null.
func (v *view) appendEntry(b []byte, e *channels.Entry) []byte {
	b = append(b, `{"created_at":"`...)
	b = v.appendJSONTime(b, e.CreatedAt)
	b = append(b, '"')
	if !v.bucketed {
		b = append(b, `,"entry_id":`...)
		b = strconv.AppendUint(b, e.ID, 10)
	}
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
		return channels.AppendTime(b, t)
	}
	return t.In(v.p.loc).AppendFormat(b, jsonZoneFormat)
}

func (v *view) csvTime(t time.Time) string {
	if v.p.loc == nil {
		return t.UTC().Format(csvUTCFormat)
	}
	return t.In(v.p.loc).Format(csvZoneFormat)
}

// csvWriter writes a header line (created_at, entry_id and the columns)
// and one row per entry; unset values are empty, and values that a
// spreadsheet would run as formulas are quoted (channels.CSVCell).
type csvWriter struct {
	v   *view
	out *body
	cw  *csv.Writer
	row []string
}

func (c *csvWriter) begin() {
	c.out.w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	c.cw = csv.NewWriter(c.out)
	c.row = make([]string, 0, 2+len(c.v.cols))
	c.row = append(c.row, "created_at")
	if !c.v.bucketed {
		c.row = append(c.row, "entry_id")
	}
	for _, i := range c.v.cols {
		c.row = append(c.row, channels.ValueName(i))
	}
	c.cw.Write(c.row) // an error is the client's, kept in out.err
}

func (c *csvWriter) add(es []channels.Entry) {
	for i := range es {
		if c.out.err != nil {
			return
		}
		e := &es[i]
		c.row = append(c.row[:0], c.v.csvTime(e.CreatedAt))
		if !c.v.bucketed {
			c.row = append(c.row, strconv.FormatUint(e.ID, 10))
		}
		for _, col := range c.v.cols {
			val, _ := e.Value(col)
			c.row = append(c.row, channels.CSVCell(val))
		}
		c.cw.Write(c.row)
	}
}

func (c *csvWriter) end() { c.cw.Flush() }
