// The REST API (NewAPI) is feedmq's ThingSpeak-compatible API: channel
// feed reads, writes and /healthz, and with APIOptions.Admin the
// management API of manage.go (channel settings and MQTT devices, for the
// owner's user API key).
//
// Reads (GET or HEAD; a public channel, or api_key=<read key> in the query
// or the THINGSPEAKAPIKEY or X-THINGSPEAKAPIKEY header):
//
//	/channels/<id>/feeds.json|.csv|.xml          channel object and entries
//	/channels/<id>/fields/<N>.json|.csv|.xml     same, entries with field<N> only
//	/channels/<id>/feeds/last.json|.csv|.txt|.xml newest entry (.txt: its JSON)
//	/channels/<id>/fields/<N>/last.json|.csv|.txt|.xml, or no extension
//	                                             newest entry that sets field<N>
//	                                             (.txt: the bare value)
//	/channels/<id>/feeds/entry/<entry_id>.json|.csv|.xml
//	/channels/<id>/feeds/last_average|last_median|last_sum.json|.csv|.txt|.xml
//	                                             newest bucket of the newest
//	                                             N entries (average=N ...)
//	/channels/<id>/status.json|.csv|.xml         channel name and location,
//	                                             entries with their status
//	/channels/<id>/status/last.json|.txt|.xml    newest entry's status
//	                                             (.txt: the bare status)
//
// A last entry that does not exist answers -1 (.json, .txt) or a <feed>
// without entry-id (.xml), as ThingSpeak does.
//
// Read parameters: results (0..8000; default the newest 100 of the last
// 24 hours: results, days or start open the window, days, start or end
// raise the cap to 8000; status reads default to the last day and up to
// 8000 entries), start and end ("2024-12-31 23:59:59" or ISO 8601,
// inclusive), minutes, days, timezone (an IANA name) or offset (hours),
// status=true, location=true, metadata=true (the channel's metadata in
// the channel object) and callback (JSONP). timescale, sum, average and
// median fold the selected entries into time buckets, round rounds
// numbers, min and max drop rows (parseShape, channels.Rows).
//
// XML is Rails' to_xml, as ThingSpeak's: dasherised keys, type
// attributes, nil="true" for nulls (xml.go).
//
// JSON keys come in ThingSpeak's order; entries carry created_at, entry_id and the enabled
// fields (null when unset). CSV has a header line and timestamps like
// "2026-11-22 10:00:00 UTC" ("... -0500" with timezone or offset); a
// value that starts with =, +, -, @, tab or CR and is not a decimal number
// gets a leading ' so that spreadsheets do not run it as a formula.
//
// Writes: GET or POST /update, /update.json and /update.xml, the write key in api_key
// or a header, values (field1..field8, lat, long, elevation, status,
// created_at, and timezone or offset for created_at) in the query, a form
// body or a JSON body. /update answers the entry_id as text, or 0;
// /update.json the entry as channels/<id>/subscribe delivers it, and
// /update.xml that entry as a <feed>. A field the channel has not enabled
// is dropped and the rest stored, as ThingSpeak does. Each
// write becomes a form-encoded payload that
// channels.ParsePayload validates exactly as it validates MQTT payloads,
// and the entry goes to a Publisher (the broker), which commits it and
// fans it out to MQTT subscribers like any MQTT publish.
//
// Bulk writes: POST /channels/<id>/bulk_update.json and bulk_update.csv
// (bulk.go), up to 960 updates stored as one batch; 202 {"success":true}.
//
// Errors are ThingSpeak's JSON objects, such as
// {"status":"401","error":{"error_code":"error_auth_required",...}}, or
// for .csv and .txt requests the bare error code as text, for .xml
// requests that object as Rails renders a hash; /update answers
// 0. Unknown paths are 404, other methods 405. After too many wrong API
// keys from one address (APIOptions.KeyThrottle), requests from it that need a
// key get 429 with Retry-After ("0" for /update) for a while.
//
// The package imports only the domain packages and the standard library;
// the caller supplies the store, the registry and the publisher.

package httpd

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Publisher commits an entry and fans it out. (*broker.Server).Publish
// implements it: when it returns nil the entry is stored and e.ID and
// e.CreatedAt are set. Its errors carry the store's: ERATELIMIT for a
// write too soon (by the broker's or the store's clock), and
// channels.ErrCommitUnknown in the chain when the entry may or may not
// be stored.
//
// PublishBatch does the same for a batch of one channel's entries (a bulk
// write): it stores all or none, numbering them consecutively in the order
// given, counts as one write for the channel's rate limit, and fans them
// out after the commit.
type Publisher interface {
	Publish(ctx context.Context, e *channels.Entry) error
	PublishBatch(ctx context.Context, es []*channels.Entry) error
}

// APIOptions configure the handler. Store, Registry and Publisher are
// required.
type APIOptions struct {
	// Store serves reads.
	Store channels.Store
	// Registry decides who may read and write and resolves write keys; it
	// is the same registry the broker uses, so key changes apply at once.
	Registry *auth.Registry
	// KeyThrottle, when set, counts wrong API keys per source address
	// (share it with the dashboard). Requests from a throttled address
	// that need a key get 429 with Retry-After without their key being
	// looked at; a good key does not clear the address, so that a client
	// holding one key cannot use it to go on guessing others.
	KeyThrottle *auth.Throttle
	// MaxFeedReads caps the feeds and fields reads served at once; more
	// get 503 with Retry-After. 0 means no cap.
	MaxFeedReads int
	// MaxBodyBytesInFlight bounds the request body bytes (writes and
	// management requests; with NewServer, console forms too) read and
	// parsed at once: a body is charged its declared Content-Length, or
	// its buffer as it grows when the length is not declared, and a
	// request that finds too little left gets 503 with Retry-After
	// before its body is read. 0 means no bound.
	MaxBodyBytesInFlight int64
	// bodies is the budget MaxBodyBytesInFlight sets; NewServer shares
	// one between the API and the console.
	bodies *bodyBudget
	// WriteTimeout bounds each write of a feed answer: a client that
	// takes nothing for that long is cut off. 0 leaves the server's
	// deadline alone.
	WriteTimeout time.Duration
	// ResponseTimeout bounds a whole answer when WriteTimeout is set
	// (each write's deadline replaces the server's WriteTimeout, so pass
	// that here); 0 means none.
	ResponseTimeout time.Duration
	// Publisher stores and fans out written entries.
	Publisher Publisher
	// Limits bound written entries, as for MQTT payloads.
	Limits channels.Limits
	// Logger receives request failures; default: discard.
	Logger *slog.Logger
	// Now returns the current time, for days= and minutes=; default
	// time.Now.
	Now func() time.Time
	// Health, when set, is called by /healthz; an error makes it answer
	// 503.
	Health func(ctx context.Context) error
	// HealthDetail, when set, returns lines /healthz adds after its first
	// ("ok" or "unavailable"): a cluster node's view of the cluster.
	HealthDetail func() string
	// Admin, when set, serves the management API (channel settings and
	// devices, see manage.go) to the owner's user API key; without it
	// those paths are 404.
	Admin Admin
	// Refusals, when set, counts every refused request by reason (for
	// /metrics); default: a counter of the handler's own.
	Refusals *Refusals
	// FieldsDropped, when set, counts the values of fields a channel has
	// not enabled that writes carried and that were left out (for
	// /metrics); default: a counter of the handler's own.
	FieldsDropped *atomic.Uint64
}

// Read limits (REFERENCE §2.3).
const (
	// MaxResults is the most entries one read returns.
	MaxResults = 8000
	// DefaultResults is how many entries a read without results, days,
	// minutes, start or end returns: the newest 100.
	DefaultResults = 100
)

// maxBodyExtra is what a write request body may carry beyond the payload
// limit: the API key, timezone and the overhead of JSON or form encoding.
const maxBodyExtra = 4096

type handler struct {
	opts     APIOptions
	log      *slog.Logger
	zones    zoneCache
	throttle *auth.Throttle
	reads    chan struct{} // a slot per feed read being served, if capped
	// droppedLog is when dropped fields were last logged (unix ns).
	droppedLog atomic.Int64
}

// NewAPI returns the REST API handler. It panics if Store, Registry or
// Publisher is nil, since that is a programming error.
func NewAPI(opts APIOptions) http.Handler {
	if opts.Store == nil || opts.Registry == nil || opts.Publisher == nil {
		panic("httpd: NewAPI: Store, Registry and Publisher are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refusals == nil {
		opts.Refusals = &Refusals{}
	}
	if opts.FieldsDropped == nil {
		opts.FieldsDropped = new(atomic.Uint64)
	}
	if opts.bodies == nil {
		opts.bodies = newBodyBudget(opts.MaxBodyBytesInFlight)
	}
	h := &handler{opts: opts, log: opts.Logger, throttle: opts.KeyThrottle}
	if opts.MaxFeedReads > 0 {
		h.reads = make(chan struct{}, opts.MaxFeedReads)
	}
	return h
}

// Route kinds.
const (
	routeFeeds         = iota + 1 // /channels/<id>/feeds.<fmt>
	routeField                    // /channels/<id>/fields/<N>.<fmt>
	routeLast                     // /channels/<id>/feeds/last.<fmt>
	routeFieldLast                // /channels/<id>/fields/<N>/last.<fmt>
	routeEntry                    // /channels/<id>/feeds/entry/<entry_id>.<fmt>
	routeUpdate                   // /update, /update.json, /update.xml
	routeHealth                   // /healthz
	routeLastAggregate            // /channels/<id>/feeds/last_average|last_median|last_sum.<fmt>
	routeBulk                     // /channels/<id>/bulk_update.json|.csv
	routeStatus                   // /channels/<id>/status.<fmt>
	routeStatusLast               // /channels/<id>/status/last.<fmt>
)

// route is a parsed request path.
type route struct {
	kind    int
	channel uint64
	field   int                    // 1..8 for routeField and routeFieldLast
	entry   uint64                 // routeEntry
	device  uint64                 // routeDevice, routeDeviceReset
	format  string                 // "json", "csv", "txt"; "" for /update and /healthz
	agg     channels.AggregateKind // routeLastAggregate
}

// formats lists the formats each read route serves.
var formats = map[int][]string{
	routeFeeds:         {"json", "csv", "xml"},
	routeField:         {"json", "csv", "xml"},
	routeLast:          {"json", "csv", "txt", "xml"},
	routeFieldLast:     {"json", "csv", "txt", "xml"},
	routeEntry:         {"json", "csv", "xml"},
	routeLastAggregate: {"json", "csv", "txt", "xml"},
	routeStatus:        {"json", "csv", "xml"},
	routeStatusLast:    {"json", "txt", "xml"},
}

// lastAggregates are the aggregations of /feeds/last_<name>.
var lastAggregates = map[string]channels.AggregateKind{
	"last_average": channels.Average,
	"last_median":  channels.Median,
	"last_sum":     channels.Sum,
}

// parseRoute maps a URL path to a route. ok is false for a path the API
// does not serve; format is still set when the path named one, so that
// the 404 can be answered in it.
func parseRoute(path string) (rt route, ok bool) {
	switch path {
	case "/healthz":
		return route{kind: routeHealth}, true
	case "/update":
		return route{kind: routeUpdate}, true
	case "/update.json":
		return route{kind: routeUpdate, format: "json"}, true
	case "/update.xml":
		return route{kind: routeUpdate, format: "xml"}, true
	}
	rest, found := strings.CutPrefix(path, "/channels/")
	if !found {
		return route{}, false
	}
	seg := strings.Split(rest, "/")
	// One spelling per channel, as in MQTT topics: /channels/01/... is
	// not channel 1.
	id, err := channels.ParseID(seg[0])
	if err != nil || len(seg) < 2 {
		return route{}, false
	}
	rt.channel = id
	var name string
	switch {
	case len(seg) == 2 && (seg[1] == "bulk_update.json" || seg[1] == "bulk_update.csv"):
		rt.kind = routeBulk
		_, rt.format = splitExt(seg[1])
		return rt, true
	case len(seg) == 2:
		name, rt.format = splitExt(seg[1]) // feeds.<fmt>, status.<fmt>
		switch name {
		case "feeds":
			rt.kind = routeFeeds
		case "status":
			rt.kind = routeStatus
		default:
			return route{}, false
		}
	case len(seg) == 3 && seg[1] == "status":
		rt.kind = routeStatusLast
		name, rt.format = splitExt(seg[2])
		if name != "last" {
			return route{}, false
		}
	case len(seg) == 3 && seg[1] == "feeds":
		rt.kind = routeLast
		name, rt.format = splitExt(seg[2])
		if kind, ok := lastAggregates[name]; ok {
			rt.kind, rt.agg = routeLastAggregate, kind
			if rt.format == "" {
				rt.format = "json" // as ThingSpeak answers it
			}
		} else if name != "last" {
			return route{}, false
		}
	case len(seg) == 4 && seg[1] == "feeds" && seg[2] == "entry":
		rt.kind = routeEntry
		name, rt.format = splitExt(seg[3])
		if rt.entry, err = parseID(name); err != nil {
			return route{}, false
		}
	case len(seg) == 3 && seg[1] == "fields":
		rt.kind = routeField
		name, rt.format = splitExt(seg[2])
		if rt.field = parseField(name); rt.field == 0 {
			return route{}, false
		}
	case len(seg) == 4 && seg[1] == "fields":
		rt.kind = routeFieldLast
		if rt.field = parseField(seg[2]); rt.field == 0 {
			return route{}, false
		}
		name, rt.format = splitExt(seg[3])
		if name != "last" {
			return route{}, false
		}
		if rt.format == "" {
			// The ThingSpeak Arduino library reads fields/<N>/last.
			rt.format = "txt"
		}
	default:
		return route{}, false
	}
	for _, f := range formats[rt.kind] {
		if f == rt.format {
			return rt, true
		}
	}
	return rt, false
}

// splitExt splits "name.ext" into name and ext.
func splitExt(s string) (name, ext string) {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// parseID parses an entry ID: a decimal number from 1.
func parseID(s string) (uint64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err == nil && n == 0 {
		err = strconv.ErrRange
	}
	return n, err
}

// parseField parses a field number 1..8; 0 means not a field.
func parseField(s string) int {
	if len(s) == 1 && s[0] >= '1' && s[0] <= '0'+channels.NumFields {
		return int(s[0] - '0')
	}
	return 0
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	// Like ThingSpeak, the API may be used from any web page: access is
	// decided by the API keys, never by cookies.
	hdr.Set("Access-Control-Allow-Origin", "*")

	rt, ok := route{}, false
	if h.opts.Admin != nil {
		rt, ok = parseManageRoute(r.Method, r.URL.Path)
	}
	if !ok {
		rt, ok = parseRoute(r.URL.Path)
	}
	if !ok {
		h.fail(w, r, rt.format, notFound("No such resource: check the URL. Reads are /channels/<id>/feeds.json, .../fields/<N>.json, .../feeds/last.json; writes are /update and /update.json."))
		return
	}
	allowed := []string{http.MethodGet, http.MethodHead, http.MethodOptions}
	switch rt.kind {
	case routeUpdate:
		allowed = []string{http.MethodGet, http.MethodPost, http.MethodOptions}
	case routeHealth:
		allowed = []string{http.MethodGet, http.MethodHead}
	case routeBulk:
		allowed = []string{http.MethodPost, http.MethodOptions}
	case routeFeeds:
		// DELETE of feeds.json clears the feed (a management route); it
		// is listed here for the preflight only, and no other format
		// clears.
		if h.opts.Admin != nil && rt.format == "json" {
			allowed = append(allowed, http.MethodDelete)
		}
	default:
		if m, ok := manageMethods[rt.kind]; ok {
			allowed = m
		}
	}
	if !slices.Contains(allowed, r.Method) {
		hdr.Set("Allow", strings.Join(allowed, ", "))
		format := rt.format
		if rt.kind == routeUpdate && format == "" || rt.kind == routeBulk {
			format = "json" // /update answers 0 only to writes; bulk answers JSON
		}
		h.fail(w, r, format, errMethod(r.Method, allowed))
		return
	}
	if r.Method == http.MethodOptions { // a CORS preflight
		hdr.Set("Access-Control-Allow-Methods", strings.Join(allowed, ", "))
		hdr.Set("Access-Control-Allow-Headers", "Content-Type, THINGSPEAKAPIKEY, X-THINGSPEAKAPIKEY")
		hdr.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if _, ok := manageMethods[rt.kind]; ok {
		h.manage(w, r, rt)
		return
	}
	switch rt.kind {
	case routeHealth:
		h.health(w, r)
	case routeUpdate:
		h.update(w, r, rt)
	case routeBulk:
		h.bulk(w, r, rt)
	default:
		h.read(w, r, rt)
	}
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var detail string
	if h.opts.HealthDetail != nil {
		detail = h.opts.HealthDetail()
	}
	if h.opts.Health != nil {
		if err := h.opts.Health(r.Context()); err != nil {
			h.log.Warn("health check failed", "error", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("unavailable\n" + detail))
			return
		}
	}
	if detail != "" {
		w.Write([]byte("ok\n" + detail))
		return
	}
	w.Write([]byte("ok"))
}

// throttled answers 429 with Retry-After, and returns the error to send,
// when r's address has given too many wrong keys lately.
func (h *handler) throttled(w http.ResponseWriter, r *http.Request) *apiError {
	if h.throttle == nil {
		return nil
	}
	until, blocked := h.throttle.Blocked(r.RemoteAddr)
	if !blocked {
		return nil
	}
	secs := int(math.Ceil(time.Until(until).Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return errThrottled
}

// keyFailed counts a wrong API key from r's address.
func (h *handler) keyFailed(r *http.Request) {
	if h.throttle != nil {
		h.throttle.Fail(r.RemoteAddr)
	}
}
