package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// payloadKeys are the names channels.ParsePayload reads from a
// channel-feed payload, in the order a write passes them on. Other
// parameters (api_key, timezone, ...) never reach the payload.
var payloadKeys = []string{
	"field1", "1", "field2", "2", "field3", "3", "field4", "4",
	"field5", "5", "field6", "6", "field7", "7", "field8", "8",
	"lat", "latitude", "long", "longitude", "elevation", "status", "created_at",
}

// controlKeys are the write parameters that steer the request.
var controlKeys = []string{"api_key", "timezone", "offset"}

// update serves /update and /update.json (REFERENCE §2.1): GET or POST,
// parameters in the query string, a form body or a JSON body, the write
// key in api_key or the THINGSPEAKAPIKEY (or X-THINGSPEAKAPIKEY) header.
//
// /update answers the new entry_id as text, or 0: with 400 for a wrong
// key or bad input, 413 for an oversized request, 500 when the entry could
// not be stored, and 200 when the channel's rate limit refused it (as
// ThingSpeak does). /update.json answers the entry as subscribers of
// channels/<id>/subscribe receive it, or a JSON error (401 for a wrong
// key), or 0 with 200 when rate-limited.
func (h *handler) update(w http.ResponseWriter, r *http.Request, rt route) {
	format := rt.format
	req, aerr := h.readWrite(w, r)
	if aerr != nil {
		h.writeFailed(w, r, format, aerr)
		return
	}
	key := req.control["api_key"]
	if key == "" {
		key = headerKey(r)
	}
	if aerr := h.throttled(w, r); aerr != nil {
		h.writeFailed(w, r, format, aerr)
		return
	}
	// From memory only: a wrong key costs no store access.
	ch, ok := h.opts.Registry.ChannelByWriteKey(key)
	if !ok {
		if key != "" {
			h.keyFailed(r)
		}
		h.writeFailed(w, r, format, errAuth)
		return
	}
	loc, err := parseZoneParams(url.Values{"timezone": {req.control["timezone"]}, "offset": {req.control["offset"]}}, &h.zones)
	if err != nil {
		h.writeFailed(w, r, format, err.(*apiError))
		return
	}
	if len(req.payload) == 0 {
		h.writeFailed(w, r, format, badRequest(errNoValues))
		return
	}
	e, dropped, err := channels.ParsePayloadDropped(ch, 0, req.payload, h.opts.Limits)
	if err != nil {
		if errors.Is(err, channels.ErrTooLarge) {
			h.writeFailed(w, r, format, errTooLarge(sentence(channels.ErrorMessage(err))))
		} else {
			h.writeFailed(w, r, format, badRequest(sentence(channels.ErrorMessage(err))))
		}
		return
	}
	if loc != nil && !e.CreatedAt.IsZero() && !hasZone(req.createdAt) {
		// created_at without a zone is local time in timezone/offset.
		t := e.CreatedAt
		e.CreatedAt = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc).UTC()
		if y := e.CreatedAt.Year(); y < 1970 || y > 9999 {
			h.writeFailed(w, r, format, badRequest("created_at must lie in the years 1970 to 9999 (UTC)."))
			return
		}
	}
	h.fieldsDropped(ch.ID, dropped, dropped.Len())
	e.ChannelID = ch.ID
	// Once accepted, a write is committed even if the client hangs up, as
	// an MQTT publish is: it must not fail halfway for that.
	if err := h.opts.Publisher.Publish(context.WithoutCancel(r.Context()), &e); err != nil {
		h.publishFailed(w, r, format, ch.ID, err)
		return
	}
	h.log.Debug("http write stored", "channel", ch.ID, "entry", e.ID)
	switch format {
	case "":
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", strconv.AppendUint(nil, e.ID, 10))
	case "xml":
		writeBody(w, http.StatusOK, ctXML, appendEntryXML(nil, &e))
	default:
		writeBody(w, http.StatusOK, "application/json; charset=utf-8", e.AppendJSON(make([]byte, 0, 384)))
	}
}

// publishFailed answers an entry the publisher refused.
func (h *handler) publishFailed(w http.ResponseWriter, r *http.Request, format string, ch uint64, err error) {
	if errors.Is(err, channels.ErrCommitUnknown) {
		h.log.Error("http write failed: outcome unknown", "channel", ch, "error", err)
		h.writeFailed(w, r, format, errCommitUnknown)
		return
	}
	switch channels.ErrorCode(err) {
	case channels.ERATELIMIT:
		// ThingSpeak answers a write that comes too soon with 0 and 200.
		h.log.Debug("http write refused", "channel", ch, "error", err)
		h.opts.Refusals.Add("rate_limited")
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte("0"))
	case channels.ENOTFOUND, channels.EFORBIDDEN:
		h.writeFailed(w, r, format, errAuth) // the channel went away
	case channels.EINVALID:
		h.writeFailed(w, r, format, badRequest(sentence(channels.ErrorMessage(err))))
	default:
		h.log.Error("http write failed", "channel", ch, "error", err)
		h.writeFailed(w, r, format, errInternal)
	}
}

const errNoValues = "The write sets no value: send at least one of field1..field8, lat, long, elevation or status."

// sentence ends a domain error message with a full stop.
func sentence(msg string) string {
	if strings.HasSuffix(msg, ".") {
		return msg
	}
	return msg + "."
}

// writeFailed answers a failed write: 0 for /update, a JSON or XML error
// for /update.json and /update.xml. /update keeps ThingSpeak's 400 for a wrong key.
func (h *handler) writeFailed(w http.ResponseWriter, r *http.Request, format string, e *apiError) {
	if format != "" {
		h.fail(w, r, format, e)
		return
	}
	status := e.status
	if status == http.StatusUnauthorized {
		status = http.StatusBadRequest
	}
	h.log.Debug("http write refused", "status", status, "error", e.details)
	h.opts.Refusals.count(e)
	writeBody(w, status, "text/plain; charset=utf-8", []byte("0"))
}

// writeReq is a decoded write request.
type writeReq struct {
	payload   []byte            // form-encoded payload for channels.ParsePayload
	createdAt string            // the created_at that takes effect, or ""
	control   map[string]string // api_key, timezone, offset
}

// readWrite collects the parameters of a write from the query string and
// the body (form or JSON); body values override query values.
func (h *handler) readWrite(w http.ResponseWriter, r *http.Request) (*writeReq, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("The query string is malformed: " + err.Error())
	}
	sources := []url.Values{q}
	if r.Method == http.MethodPost {
		lim := h.opts.Limits.MaxPayload
		if lim <= 0 {
			lim = channels.DefaultMaxPayload
		}
		body, done, err := h.opts.bodies.read(w, r, int64(lim+maxBodyExtra))
		if err != nil {
			return nil, bodyError(err, lim+maxBodyExtra)
		}
		defer done()
		v, aerr := parseBody(r.Header.Get("Content-Type"), body)
		if aerr != nil {
			return nil, aerr
		}
		sources = append(sources, v)
	}
	req := &writeReq{control: make(map[string]string, len(controlKeys))}
	for _, k := range controlKeys {
		for _, src := range sources {
			if v := src.Get(k); v != "" {
				req.control[k] = v
			}
		}
	}
	req.payload = buildPayload(sources)
	for _, src := range sources {
		if vs, ok := src["created_at"]; ok {
			req.createdAt = strings.TrimSpace(vs[len(vs)-1])
		}
	}
	return req, nil
}

// parseBody decodes a POST body: JSON for a JSON content type, else form
// encoding (devices often send forms without a content type).
func parseBody(contentType string, body []byte) (url.Values, *apiError) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return parseJSONBody(body)
	}
	// Like ParsePayload, ignore a trailing line end (the ThingSpeak Arduino
	// library ends its body with one).
	v, err := url.ParseQuery(string(bytes.TrimRight(body, "\r\n")))
	if err != nil {
		return nil, badRequest("The form body is malformed: " + err.Error())
	}
	return v, nil
}

// parseJSONBody decodes a JSON object of write parameters. Values may be
// strings, numbers (kept as written: 24.90 stays "24.90"), booleans or
// null (not set).
func parseJSONBody(body []byte) (url.Values, *apiError) {
	v := url.Values{}
	if len(bytes.TrimSpace(body)) == 0 {
		return v, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, badRequest("The body must be a JSON object such as {\"api_key\":\"...\",\"field1\":23.5}.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("The body must hold one JSON object and nothing after it.")
	}
	for k, val := range m {
		if !isWriteKey(k) {
			continue
		}
		s, set, ok := jsonText(val)
		if !ok {
			return nil, badRequest(k + " must be a string or a number.")
		} else if !set {
			continue
		}
		v.Set(k, s)
	}
	return v, nil
}

func isWriteKey(k string) bool {
	for _, n := range payloadKeys {
		if n == k {
			return true
		}
	}
	for _, n := range controlKeys {
		if n == k {
			return true
		}
	}
	return false
}

// buildPayload form-encodes the payload values of the sources, in
// payloadKeys order and, per key, in source order, so that later sources
// win (ParsePayload keeps the last value of a name).
func buildPayload(sources []url.Values) []byte {
	var b []byte
	for _, k := range payloadKeys {
		for _, src := range sources {
			for _, v := range src[k] {
				if len(b) > 0 {
					b = append(b, '&')
				}
				b = append(b, k...)
				b = append(b, '=')
				b = appendFormValue(b, v)
			}
		}
	}
	return b
}

// appendFormValue escapes only what the payload syntax needs (%, &, +, =,
// and CR and LF, which ParsePayload would trim at the end), so that a
// value counts against the payload limit with its own length, as it does
// over MQTT.
func appendFormValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '%', '&', '+', '=', '\r', '\n':
			b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		default:
			b = append(b, c)
		}
	}
	return b
}

// hasZone reports whether a created_at value that ParsePayload accepted
// names its zone: anything after the seconds other than a fraction.
func hasZone(s string) bool {
	const secondsEnd = len("2006-01-02 15:04:05")
	return len(s) > secondsEnd && strings.ContainsAny(s[secondsEnd:], "Z+-")
}

// droppedLogEvery bounds the debug lines about dropped fields.
const droppedLogEvery = 10 * time.Second

// fieldsDropped counts the fields a write to channel ch carried that the
// channel has not enabled (they are left out, as ThingSpeak leaves them
// out), and logs them at most every droppedLogEvery, so that a sketch
// that sends eight fields to a two-field channel does not flood the log.
// n is how many values were dropped (more than dropped.Len() for a bulk
// write, whose updates may each carry the same fields).
func (h *handler) fieldsDropped(ch uint64, dropped channels.FieldSet, n int) {
	if dropped == 0 || n <= 0 {
		return
	}
	total := h.opts.FieldsDropped.Add(uint64(n))
	now := time.Now().UnixNano()
	last := h.droppedLog.Load()
	if now-last < int64(droppedLogEvery) || !h.droppedLog.CompareAndSwap(last, now) {
		return
	}
	h.log.Debug("http write: fields not enabled on the channel were dropped, the rest stored",
		"channel", ch, "fields", dropped.String(), "dropped_total", total)
}

// jsonText is a write's JSON value as the form value it stands for:
// strings as they are, numbers as written, booleans as true/false. A null
// sets nothing (set false); an object or array is no value (ok false).
func jsonText(val any) (s string, set, ok bool) {
	switch x := val.(type) {
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
