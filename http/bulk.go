package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Bulk writes (ThingSpeak's bulk-update API): POST
// /channels/<id>/bulk_update.json with a JSON object
//
//	{"write_api_key":"KEY","updates":[{"created_at":"...","field1":..},...]}
//
// and POST /channels/<id>/bulk_update.csv with a form of write_api_key,
// time_format (absolute or relative) and updates, rows separated by |,
// each "TIME,field1,...,field8,latitude,longitude,elevation,status"
// (trailing columns may be left off; status takes the rest of the row,
// commas included).
//
// Each update becomes a form-encoded payload that channels.ParsePayload
// checks exactly as it checks an MQTT publish. Times: created_at is an
// absolute time (as /update takes it, or seconds since 1970); delta_t
// counts seconds since the previous update, and the last update is
// stamped with the time of the request, so a device without a clock sends
// the gaps between its readings. A batch uses one kind of time for every
// update. Timestamps must be unique within the batch. Entries are stored
// in time order, and may lie before the channel's last entry (as with
// /update, created_at is the device's word).
//
// The whole batch goes to Publisher.PublishBatch: stored all or none, with
// consecutive entry IDs, then fanned out to subscribers like any write
// (ThingSpeak does not deliver bulk writes to subscribers; feedmq does).
// It counts as one write against the channel's rate limit; a refusal by
// the rate limit is 429. Success is 202 with {"success":true}.

// MaxBulkUpdates is the most updates one bulk write takes: ThingSpeak's
// documented per-request maximum (for free accounts).
const MaxBulkUpdates = 960

// bulkUpdateOverhead is what one update may add to its payload in the
// request body: JSON keys, quotes and escapes, or CSV separators.
const bulkUpdateOverhead = 512

// maxBulkBodyCap bounds the bulk body whatever the payload limit: with a
// raised limits.max_payload, 960 payloads of the largest size could ask
// for hundreds of megabytes in one request.
const maxBulkBodyCap = 8 << 20

// maxBulkBody is the largest bulk request body: MaxBulkUpdates updates of
// the largest payload each (3,375,616 bytes with the default 3000-byte
// payloads), at most maxBulkBodyCap.
func (h *handler) maxBulkBody() int {
	lim := h.opts.Limits.MaxPayload
	if lim <= 0 {
		lim = channels.DefaultMaxPayload
	}
	return min(MaxBulkUpdates*(lim+bulkUpdateOverhead)+maxBodyExtra, maxBulkBodyCap)
}

// bulkRow is one update as sent, before channels checks it.
type bulkRow struct {
	payload []byte // form-encoded values, created_at included
	hasTime bool   // created_at (absolute) or delta_t (relative) was sent
	delta   string // delta_t as sent, for a relative batch
}

// bulkBatch is a decoded bulk request.
type bulkBatch struct {
	key      string
	relative bool
	rows     []bulkRow
}

var errBulkSuccess = []byte(`{"success":true}`)

// bulk serves bulk_update.json and bulk_update.csv.
func (h *handler) bulk(w http.ResponseWriter, r *http.Request, rt route) {
	limit := h.maxBulkBody()
	// The body counts against the server's budget of bodies in flight
	// until it is parsed.
	body, done, err := h.opts.bodies.read(w, r, int64(limit))
	if err != nil {
		aerr := bodyError(err, limit)
		if err == errBodyTooLarge {
			aerr.details += " Send at most " + strconv.Itoa(MaxBulkUpdates) + " updates per request."
		}
		h.fail(w, r, "json", aerr)
		return
	}
	defer done()
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.fail(w, r, "json", badRequest("The query string is malformed: "+err.Error()))
		return
	}
	var b *bulkBatch
	var aerr *apiError
	if rt.format == "csv" {
		b, aerr = decodeBulkCSV(body, q)
	} else {
		b, aerr = decodeBulkJSON(body)
	}
	if aerr != nil {
		h.fail(w, r, "json", aerr)
		return
	}
	if b.key == "" {
		b.key = q.Get("write_api_key")
	}
	if b.key == "" {
		b.key = q.Get("api_key")
	}
	if b.key == "" {
		b.key = headerKey(r)
	}
	if aerr := h.throttled(w, r); aerr != nil {
		h.fail(w, r, "json", aerr)
		return
	}
	ch, ok := h.opts.Registry.ChannelByWriteKey(b.key)
	if !ok || ch.ID != rt.channel {
		if !ok && b.key != "" {
			h.keyFailed(r)
		}
		h.fail(w, r, "json", errAuth)
		return
	}
	es, aerr := h.bulkEntries(ch, b)
	if aerr != nil {
		h.fail(w, r, "json", aerr)
		return
	}
	done() // the entries hold copies of what they need
	// Once accepted, the batch is committed even if the client hangs up.
	if err := h.opts.Publisher.PublishBatch(context.WithoutCancel(r.Context()), es); err != nil {
		h.bulkFailed(w, r, ch.ID, err)
		return
	}
	h.log.Debug("http bulk write stored", "channel", ch.ID, "entries", len(es), "first", es[0].ID)
	writeBody(w, http.StatusAccepted, "application/json; charset=utf-8", errBulkSuccess)
}

// bulkFailed answers a batch the publisher refused.
func (h *handler) bulkFailed(w http.ResponseWriter, r *http.Request, ch uint64, err error) {
	if errors.Is(err, channels.ErrCommitUnknown) {
		h.log.Error("http bulk write failed: outcome unknown", "channel", ch, "error", err)
		h.fail(w, r, "json", errCommitUnknown)
		return
	}
	switch channels.ErrorCode(err) {
	case channels.ERATELIMIT:
		h.fail(w, r, "json", &apiError{http.StatusTooManyRequests, "error_too_many_requests", "Too Many Requests",
			sentence(channels.ErrorMessage(err)) + " A bulk write counts as one write."})
	case channels.ENOTFOUND, channels.EFORBIDDEN:
		h.fail(w, r, "json", errAuth) // the channel went away
	case channels.EINVALID:
		h.fail(w, r, "json", badRequest(sentence(channels.ErrorMessage(err))))
	default:
		h.log.Error("http bulk write failed", "channel", ch, "error", err)
		h.fail(w, r, "json", errInternal)
	}
}

// bulkEntries checks every update with channels.ParsePayload and gives
// each its time; the entries come back in time order.
func (h *handler) bulkEntries(ch *channels.Channel, b *bulkBatch) ([]*channels.Entry, *apiError) {
	switch {
	case len(b.rows) == 0:
		return nil, badRequest("updates holds no update: send at least one.")
	case len(b.rows) > MaxBulkUpdates:
		return nil, errTooLarge("updates holds " + strconv.Itoa(len(b.rows)) + " updates; the limit is " + strconv.Itoa(MaxBulkUpdates) + " per request.")
	}
	es := make([]channels.Entry, len(b.rows))
	ptrs := make([]*channels.Entry, len(b.rows))
	var dropped channels.FieldSet // fields not enabled, dropped as in any write
	nDropped := 0
	for i, row := range b.rows {
		if !row.hasTime {
			if b.relative {
				return nil, badRequest(updateName(i) + " has no delta_t: every update of a relative batch needs one.")
			}
			return nil, badRequest(updateName(i) + " has no created_at: every update needs created_at or delta_t.")
		}
		e, d, err := channels.ParsePayloadDropped(ch, 0, row.payload, h.opts.Limits)
		dropped, nDropped = dropped|d, nDropped+d.Len()
		if err != nil {
			if errors.Is(err, channels.ErrTooLarge) {
				return nil, errTooLarge(updateName(i) + ": " + sentence(channels.ErrorMessage(err)))
			}
			return nil, badRequest(updateName(i) + ": " + sentence(channels.ErrorMessage(err)))
		}
		e.ChannelID = ch.ID
		es[i] = e
		ptrs[i] = &es[i]
	}
	if b.relative {
		if aerr := relativeTimes(es, b.rows, h.opts.Now()); aerr != nil {
			return nil, aerr
		}
	}
	// Time order; a stable sort keeps the update order of equal times,
	// which are refused just below with both indexes.
	idx := make([]int, len(es))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return es[a].CreatedAt.Compare(es[b].CreatedAt) })
	for k := 1; k < len(idx); k++ {
		if es[idx[k]].CreatedAt.Equal(es[idx[k-1]].CreatedAt) {
			return nil, badRequest(updateName(idx[k-1]) + " and " + updateName(idx[k]) + " have the same time " +
				es[idx[k]].CreatedAt.UTC().Format(channels.TimeFormat) + ": timestamps must be unique.")
		}
	}
	for k, i := range idx {
		ptrs[k] = &es[i]
	}
	h.fieldsDropped(ch.ID, dropped, nDropped)
	return ptrs, nil
}

// maxDelta bounds one delta_t: ten years of seconds.
const maxDelta = 10 * 366 * 24 * 3600

// relativeTimes stamps the last update with now and each earlier one with
// its successor's time less the successor's delta_t. The first update's
// delta_t counts from an entry before the batch, so it places nothing.
func relativeTimes(es []channels.Entry, rows []bulkRow, now time.Time) *apiError {
	deltas := make([]int64, len(rows))
	for i, row := range rows {
		d, err := strconv.ParseUint(strings.TrimSpace(row.delta), 10, 32)
		if err != nil || d > maxDelta {
			return badRequest(updateName(i) + ": delta_t must be a whole number of seconds from 0 to " + strconv.Itoa(maxDelta) + ".")
		}
		if d == 0 && i > 0 {
			return badRequest(updateName(i) + ": delta_t must be above 0 after the first update (timestamps must be unique).")
		}
		deltas[i] = int64(d)
	}
	t := now.UTC().Truncate(time.Second)
	for i := len(es) - 1; i >= 0; i-- {
		if t.Year() < 1970 {
			return badRequest(updateName(i) + ": the delta_t values reach back before 1970.")
		}
		es[i].CreatedAt = t
		t = t.Add(-time.Duration(deltas[i]) * time.Second)
	}
	return nil
}

// updateName names update i (from 0) in messages, as JSON would index it.
func updateName(i int) string { return "updates[" + strconv.Itoa(i) + "]" }

// bulkValueKeys are the names an update may carry, for buildPayload;
// delta_t and anything else is not part of the entry.
var bulkValueKeys = payloadKeys

// decodeBulkJSON decodes a bulk_update.json body.
func decodeBulkJSON(body []byte) (*bulkBatch, *apiError) {
	const shape = `The body must be a JSON object such as {"write_api_key":"...","updates":[{"created_at":"2026-01-01 10:00:00","field1":23.5}]}.`
	var top map[string]json.RawMessage
	if err := strictJSON(body, &top); err != nil || top == nil {
		return nil, badRequest(shape)
	}
	b := &bulkBatch{}
	for _, name := range []string{"write_api_key", "api_key"} {
		raw, ok := top[name]
		if !ok || b.key != "" {
			continue
		}
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badRequest(name + " must be a string.")
		}
		if s != nil {
			b.key = *s
		}
	}
	raw, ok := top["updates"]
	if !ok {
		return nil, badRequest("updates is missing: " + shape)
	}
	updates, aerr := splitUpdates(raw)
	if aerr != nil {
		return nil, aerr
	}
	b.rows = make([]bulkRow, len(updates))
	created, relative := -1, -1
	for i, u := range updates {
		row, isRelative, aerr := decodeBulkUpdate(i, u)
		if aerr != nil {
			return nil, aerr
		}
		if row.hasTime {
			if isRelative {
				relative = i
			} else {
				created = i
			}
		}
		if created >= 0 && relative >= 0 {
			return nil, badRequest(updateName(created) + " sets created_at and " + updateName(relative) + " delta_t: use one of them for every update.")
		}
		b.rows[i] = row
	}
	b.relative = relative >= 0
	return b, nil
}

// splitUpdates splits the JSON array of updates into its elements. It
// stops at one over MaxBulkUpdates, so that a body of many tiny elements
// ([{},{},...]) costs no more memory than the body itself.
func splitUpdates(raw json.RawMessage) ([]json.RawMessage, *apiError) {
	notArray := badRequest("updates must be an array of objects.")
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, notArray
	}
	var updates []json.RawMessage
	for dec.More() {
		if len(updates) == MaxBulkUpdates {
			return nil, errTooLarge("updates holds more than " + strconv.Itoa(MaxBulkUpdates) + " updates; the limit is " + strconv.Itoa(MaxBulkUpdates) + " per request.")
		}
		var u json.RawMessage
		if err := dec.Decode(&u); err != nil {
			return nil, notArray
		}
		updates = append(updates, u)
	}
	if _, err := dec.Token(); err != nil {
		return nil, notArray
	}
	return updates, nil
}

// decodeBulkUpdate decodes update i of a JSON batch.
func decodeBulkUpdate(i int, raw json.RawMessage) (bulkRow, bool, *apiError) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return bulkRow{}, false, badRequest(updateName(i) + " must be an object such as {\"created_at\":\"2026-01-01 10:00:00\",\"field1\":23.5}.")
	}
	v := make(url.Values, len(m))
	var row bulkRow
	relative := false
	for k, val := range m {
		isDelta := k == "delta_t"
		if !isDelta && !slices.Contains(bulkValueKeys, k) {
			continue // as /update, names it does not know are ignored
		}
		s, set, ok := jsonText(val)
		if !ok {
			return bulkRow{}, false, badRequest(updateName(i) + "." + k + " must be a string or a number.")
		} else if !set {
			continue
		}
		switch {
		case isDelta:
			row.delta, row.hasTime, relative = s, true, true
			continue
		case k == "created_at":
			if row.delta != "" || m["delta_t"] != nil {
				return bulkRow{}, false, badRequest(updateName(i) + " sets both created_at and delta_t: use one.")
			}
			s = epochCreatedAt(s)
			row.hasTime = strings.TrimSpace(s) != ""
		}
		v.Set(k, s)
	}
	row.payload = buildPayload([]url.Values{v})
	return row, relative, nil
}

// strictJSON decodes one JSON value and refuses anything after it.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// epochCreatedAt turns a created_at of whole seconds since 1970 (which
// ThingSpeak's bulk writes take) into the date and time channels parses;
// anything else is returned as it is.
func epochCreatedAt(s string) string {
	t := strings.TrimSpace(s)
	if t == "" || len(t) > 12 {
		return s
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return s
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return s
	}
	return time.Unix(n, 0).UTC().Format(channels.TimeFormat)
}

// maxBulkParams+1 is the most parameters a CSV bulk write's form takes.
const maxBulkParams = 15

// bulkCSVColumns are the payload names of the columns after the time.
var bulkCSVColumns = [...]string{
	"field1", "field2", "field3", "field4", "field5", "field6", "field7", "field8",
	"latitude", "longitude", "elevation", "status",
}

// decodeBulkCSV decodes a bulk_update.csv form body; q (the query string)
// may carry write_api_key and time_format too, the body winning.
func decodeBulkCSV(body []byte, q url.Values) (*bulkBatch, *apiError) {
	// The form has three parameters; refusing a body of thousands keeps a
	// megabyte of "a&a&..." from growing into a map of them.
	if n := bytes.Count(body, []byte("&")); n > maxBulkParams {
		return nil, badRequest("The form body has " + strconv.Itoa(n+1) + " parameters; send write_api_key, time_format and updates (at most " + strconv.Itoa(maxBulkParams+1) + ").")
	}
	form, err := url.ParseQuery(string(bytes.TrimRight(body, "\r\n")))
	if err != nil {
		return nil, badRequest("The form body is malformed: " + err.Error())
	}
	get := func(k string) string {
		if v := form.Get(k); v != "" {
			return v
		}
		return q.Get(k)
	}
	b := &bulkBatch{key: get("write_api_key")}
	if b.key == "" {
		b.key = get("api_key")
	}
	switch tf := get("time_format"); tf {
	case "absolute":
	case "relative":
		b.relative = true
	case "":
		return nil, badRequest("time_format is missing: send time_format=absolute or time_format=relative.")
	default:
		return nil, badRequest("time_format must be absolute or relative, not " + quoteParam(tf) + ".")
	}
	if _, ok := form["updates"]; !ok {
		return nil, badRequest("updates is missing: send updates=TIME,field1,...|TIME,field1,...")
	}
	b.rows, err = parseBulkCSV(form.Get("updates"), b.relative)
	if err != nil {
		var aerr *apiError
		if errors.As(err, &aerr) {
			return nil, aerr
		}
		return nil, badRequest(err.Error())
	}
	return b, nil
}

// parseBulkCSV splits the updates of a CSV bulk write: rows separated by
// |, each TIME,field1,...,field8,latitude,longitude,elevation,status.
// An empty column leaves its value unset; status takes the rest of the
// row. A trailing | is allowed. TIME is created_at (absolute) or delta_t
// (relative).
func parseBulkCSV(updates string, relative bool) ([]bulkRow, error) {
	updates = strings.TrimRight(updates, "\r\n")
	updates = strings.TrimSuffix(updates, "|")
	if strings.TrimSpace(updates) == "" {
		return nil, badRequest("updates holds no update: send at least one.")
	}
	n := strings.Count(updates, "|") + 1
	if n > MaxBulkUpdates {
		return nil, errTooLarge("updates holds " + strconv.Itoa(n) + " updates; the limit is " + strconv.Itoa(MaxBulkUpdates) + " per request.")
	}
	rows := make([]bulkRow, 0, n)
	for i := 0; updates != ""; i++ {
		var line string
		line, updates, _ = strings.Cut(updates, "|")
		line = strings.Trim(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			return nil, badRequest(updateName(i) + " is empty: separate updates with one |.")
		}
		cols := strings.SplitN(line, ",", 1+len(bulkCSVColumns))
		var row bulkRow
		ts := strings.TrimSpace(cols[0])
		v := make(url.Values, len(cols))
		if ts != "" {
			row.hasTime = true
			if relative {
				row.delta = ts
			} else {
				v.Set("created_at", epochCreatedAt(ts))
			}
		}
		for c, val := range cols[1:] {
			if val != "" {
				v.Set(bulkCSVColumns[c], val)
			}
		}
		row.payload = buildPayload([]url.Values{v})
		rows = append(rows, row)
	}
	return rows, nil
}

// quoteParam quotes a parameter value for a message, cut short.
func quoteParam(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}
