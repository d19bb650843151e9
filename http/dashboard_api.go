package httpd

import (
	"crypto/subtle"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// maxKeys bounds the read keys one /dashboard/channels.json request may
// try.
const maxKeys = 32

// channelList answers /dashboard/channels.json (/channels.json is
// ThingSpeak's list of the owner's channels, see manage.go): a JSON array
// of the public channels and of the private channels whose read key is
// among the api_key values, ordered by ID:
//
//	[{"id":1,"name":"...","description":"...","public":true,
//	  "fields":{"field1":"Temperature",...},"created_at":"...",
//	  "updated_at":"...","last_entry_id":7,"entries":5}, ...]
//
// entries is the number of entries the feed holds, which retention and
// imports with gaps make smaller than last_entry_id; null when the store
// cannot count.
// A private channel carries "api_key", the read key that unlocked it, and
// "owner":true when the owner's console session did.
// Write keys are never included.
func (h *Dashboard) channelList(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Access-Control-Allow-Origin", "*") // access is by key, as for the API
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		h.writeError(w, http.StatusMethodNotAllowed, "error_method_invalid", "Use GET.")
		return
	}
	q := r.URL.Query()
	keys := q["api_key"]
	if k := headerKey(r); k != "" {
		keys = append(keys, k)
	}
	if len(keys) > maxKeys {
		h.writeError(w, http.StatusBadRequest, "error_bad_request", "At most "+strconv.Itoa(maxKeys)+" api_key values.")
		return
	}
	if len(keys) > 0 && h.throttled(w, r) {
		return
	}
	list, err := h.opts.Store.ListChannels(r.Context())
	if err != nil {
		if r.Context().Err() == nil {
			h.log.Error("dashboard: list channels", "error", err)
			h.writeError(w, http.StatusInternalServerError, "error_internal", "The server could not list channels; try again later.")
		}
		return
	}
	owner := h.opts.Owner != nil && h.opts.Owner(r)
	b := []byte{'['}
	n, matched := 0, 0
	for _, c := range list {
		key, byOwner := "", false
		if !c.Public {
			if key = matchKey(c.ReadKey, keys); key != "" {
				matched++
			} else if owner {
				key, byOwner = c.ReadKey, true
			} else {
				continue
			}
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendChannel(b, c, key, byOwner, h.entryCount(r, c))
	}
	b = append(b, ']')
	if matched < len(keys) {
		h.keyFailed(r) // one guess or more; counted once per request
	}
	hdr.Set("Content-Type", "application/json; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}

// entryCount returns the number of entries of c, or -1 when the store
// cannot count them.
func (h *Dashboard) entryCount(r *http.Request, c *channels.Channel) int64 {
	if c.LastEntryID == 0 {
		return 0 // never written to, or cleared: nothing to count
	}
	counter, ok := h.opts.Store.(channels.EntryCounter)
	if !ok {
		return -1
	}
	n, err := counter.EntryCount(r.Context(), c.ID)
	if err != nil {
		// A channel deleted since the list was read is not worth a log line.
		if r.Context().Err() == nil && channels.ErrorCode(err) != channels.ENOTFOUND {
			h.log.Error("dashboard: count entries", "channel", c.ID, "error", err)
		}
		return -1
	}
	return int64(n)
}

// matchKey returns the key among keys that equals readKey, or "".
func matchKey(readKey string, keys []string) string {
	found := ""
	for _, k := range keys {
		if len(k) == len(readKey) && subtle.ConstantTimeCompare([]byte(k), []byte(readKey)) == 1 {
			found = k
		}
	}
	return found
}

// appendChannel appends c's JSON; owner marks a key the console session
// unlocked, which the page need not offer to forget.
func appendChannel(b []byte, c *channels.Channel, key string, owner bool, entries int64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, c.ID, 10)
	b = append(b, `,"name":`...)
	b = channels.AppendJSONString(b, c.Name)
	b = append(b, `,"description":`...)
	b = channels.AppendJSONString(b, c.Description)
	b = append(b, `,"public":`...)
	b = strconv.AppendBool(b, c.Public)
	b = append(b, `,"fields":{`...)
	first := true
	for n := 1; n <= channels.NumFields; n++ {
		if !c.FieldEnabled(n) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `"field`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, `":`...)
		b = channels.AppendJSONString(b, c.Fields[n-1])
	}
	b = append(b, `},"created_at":"`...)
	b = c.CreatedAt.UTC().AppendFormat(b, channels.TimeFormat)
	b = append(b, `","updated_at":"`...)
	b = c.UpdatedAt.UTC().AppendFormat(b, channels.TimeFormat)
	b = append(b, `","last_entry_id":`...)
	if c.LastEntryID == 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendUint(b, c.LastEntryID, 10)
	}
	b = append(b, `,"entries":`...)
	if entries < 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, entries, 10)
	}
	if key != "" {
		b = append(b, `,"api_key":`...)
		b = channels.AppendJSONString(b, key)
	}
	if owner {
		b = append(b, `,"owner":true`...)
	}
	return append(b, '}')
}

// readKey returns the api_key parameter, or the key in a THINGSPEAKAPIKEY
// or X-THINGSPEAKAPIKEY header, as the REST API reads it.
func readKey(r *http.Request) string {
	if k := r.URL.Query().Get("api_key"); k != "" {
		return k
	}
	return headerKey(r)
}

// authorize is canRead for the start of a stream: a wrong key counts
// against the client's address, and an address that gave too many gets
// 429 before its key is checked. It reports whether the request may go on,
// having answered it when not.
func (h *Dashboard) authorize(w http.ResponseWriter, r *http.Request, id uint64, key string) bool {
	status := h.canRead(id, "")
	if status == http.StatusUnauthorized && key != "" {
		if h.throttled(w, r) {
			return false
		}
		if status = h.canRead(id, key); status == http.StatusUnauthorized {
			h.keyFailed(r)
		}
	}
	switch status {
	case http.StatusNotFound:
		h.writeError(w, http.StatusNotFound, "error_resource_not_found", "Channel "+strconv.FormatUint(id, 10)+" does not exist.")
		return false
	case http.StatusUnauthorized:
		h.writeError(w, http.StatusUnauthorized, "error_auth_required", "Please provide proper authentication details.")
		return false
	}
	return true
}

// throttled answers 429 when the request's address gave too many wrong
// keys lately.
func (h *Dashboard) throttled(w http.ResponseWriter, r *http.Request) bool {
	if h.opts.KeyThrottle == nil {
		return false
	}
	until, blocked := h.opts.KeyThrottle.Blocked(r.RemoteAddr)
	if !blocked {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(time.Until(until).Seconds())), 1)))
	h.writeError(w, http.StatusTooManyRequests, "error_too_many_requests", "Too many wrong API keys from this address; wait for the time in Retry-After.")
	return true
}

func (h *Dashboard) keyFailed(r *http.Request) {
	if h.opts.KeyThrottle != nil {
		h.opts.KeyThrottle.Fail(r.RemoteAddr)
	}
}

// canRead reports whether the request may read channel id, as an HTTP
// status: 200, 401 or 404.
func (h *Dashboard) canRead(id uint64, key string) int {
	err := h.opts.Registry.CanSubscribe(auth.Anonymous, id, key)
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, auth.ErrUnknownChannel):
		return http.StatusNotFound
	default:
		return http.StatusUnauthorized
	}
}

// writeError answers in the REST API's error shape and counts the
// refusal (the server's own failures are not refusals).
func (h *Dashboard) writeError(w http.ResponseWriter, status int, code, details string) {
	h.opts.Refusals.count(&apiError{status: status, code: code})
	msg := http.StatusText(status)
	b := []byte(`{"status":"`)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `","error":{"error_code":`...)
	b = channels.AppendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = channels.AppendJSONString(b, msg)
	b = append(b, `,"details":`...)
	b = channels.AppendJSONString(b, details)
	b = append(b, "}}"...)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
