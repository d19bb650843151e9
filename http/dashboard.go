// The dashboard (NewDashboard) is feedmq's web dashboard: a single page,
// embedded in the binary, that lists channels and charts each channel's fields live.
//
// Routes (everything else goes to the next handler, the REST API):
//
//	GET /                          the channel list (index.html)
//	GET /channel/<id>              a channel page (the same index.html)
//	GET /assets/<file>             embedded CSS, JavaScript and icons
//	GET /dashboard/channels.json   public channels, plus each private
//	                               channel whose read key is given in
//	                               api_key (repeatable); every channel
//	                               for the console's signed-in owner
//	GET /channels/<id>/charts/<N>  embeddable chart and widget pages
//	GET /channels/<id>/widgets/numeric/<N>, .../widgets/gauge/<N>
//	                               (embed.go)
//	GET /channels/<id>/events      Server-Sent Events: one "entry" event
//	                               per new entry, its data the entry JSON
//	                               as channels/<id>/subscribe delivers it
//
// Read access is the REST API's: a public channel, or the read key in
// api_key or the THINGSPEAKAPIKEY header. The page reads history through
// the REST API (/channels/<id>/feeds.json) and live entries through the
// event stream.
//
// The package imports only the domain packages and the standard library;
// the caller supplies the entry source (the broker) through Watcher.

package httpd

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

//go:embed web
var webFS embed.FS

// Watcher delivers committed entries of one channel as they are fanned
// out. (*broker.Server).WatchEntries implements it: each value is the
// entry JSON, shared and read-only; stop ends the subscription and closes
// the channel.
type Watcher interface {
	WatchEntries(channelID uint64, buffer int) (entries <-chan []byte, stop func())
}

// DashboardOptions configure the dashboard. Store, Registry and Watcher are
// required.
type DashboardOptions struct {
	// Store lists channels with their last entry_id.
	Store channels.Store
	// Registry decides who may read a channel, as for the REST API.
	Registry *auth.Registry
	// Watcher streams new entries.
	Watcher Watcher
	// Next serves every other path (the REST API); default 404.
	Next http.Handler
	// Logger receives failures; default: discard.
	Logger *slog.Logger
	// Heartbeat is the interval of SSE comment lines that keep proxies
	// and the browser from timing out an idle stream; default 15s.
	Heartbeat time.Duration
	// Buffer is how many entries may wait for a slow event stream before
	// it misses some; default 64.
	Buffer int
	// KeyThrottle, when set, counts wrong read keys per source address,
	// as the REST API does (share one): a throttled address gets 429 with
	// Retry-After where a key is needed.
	KeyThrottle *auth.Throttle
	// MaxStreams caps the event streams open at once; more get 503 with
	// Retry-After. 0 means no cap.
	MaxStreams int
	// WriteTimeout cuts off an event stream whose client takes nothing
	// for that long; default 20s.
	WriteTimeout time.Duration
	// Owner, when set, reports whether a request comes from the signed-in
	// owner (the console's session): the channel list then includes every
	// private channel with its read key, so the owner types no keys.
	Owner func(r *http.Request) bool
	// Refusals, when set, counts every refused request by reason, as the
	// API's (Server shares the API's, so /metrics shows both).
	Refusals *Refusals
	// EmbedPoll is how often a dynamic chart or widget asks the read API
	// for new entries; default DefaultEmbedPoll, bounded by MinEmbedPoll
	// and MaxEmbedPoll.
	EmbedPoll time.Duration
}

// Poll intervals of dynamic charts and widgets. They poll rather than hold
// an event stream each: a browser opens at most six HTTP/1.1 connections
// to one host, so a page with seven streaming charts leaves the seventh
// waiting forever. ThingSpeak's own charts poll every 15 seconds.
const (
	DefaultEmbedPoll = 15 * time.Second
	MinEmbedPoll     = time.Second
	MaxEmbedPoll     = 10 * time.Minute
)

// Dashboard serves the dashboard. Shutdown ends open event streams.
type Dashboard struct {
	opts     DashboardOptions
	log      *slog.Logger
	assets   map[string]asset
	ctx      context.Context
	shutdown context.CancelFunc
	streams  atomic.Int64 // event streams open
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// NewDashboard returns the dashboard handler. It panics if Store, Registry or
// Watcher is nil, since that is a programming error.
func NewDashboard(opts DashboardOptions) *Dashboard {
	if opts.Store == nil || opts.Registry == nil || opts.Watcher == nil {
		panic("httpd: NewDashboard: Store, Registry and Watcher are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimeout
	}
	if opts.Next == nil {
		opts.Next = http.NotFoundHandler()
	}
	if opts.EmbedPoll == 0 {
		opts.EmbedPoll = DefaultEmbedPoll
	}
	opts.EmbedPoll = min(max(opts.EmbedPoll, MinEmbedPoll), MaxEmbedPoll)
	h := &Dashboard{opts: opts, log: opts.Logger, assets: make(map[string]asset)}
	h.ctx, h.shutdown = context.WithCancel(context.Background())
	err := fs.WalkDir(webFS, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == "web/console" || p == "web/embed" {
				return fs.SkipDir // page templates, not assets
			}
			return nil
		}
		b, err := webFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not left to the host's mime.types
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.assets[strings.TrimPrefix(p, "web/")] = asset{b, ct, `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("httpd: dashboard assets: " + err.Error())
	}
	return h
}

// Shutdown ends every open event stream and refuses new ones, so that an
// http.Server's Shutdown need not wait for them (register it with
// RegisterOnShutdown).
func (h *Dashboard) Shutdown() { h.shutdown() }

func (h *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/" || isChannelPage(p):
		h.serveAsset(w, r, "index.html", false)
	case strings.HasPrefix(p, "/assets/"):
		name := strings.TrimPrefix(p, "/assets/")
		if name == "index.html" {
			name = ""
		}
		h.serveAsset(w, r, name, true)
	case p == "/dashboard/channels.json":
		h.channelList(w, r)
	case strings.Contains(p, "/charts/") || strings.Contains(p, "/widgets/"):
		rt, ok := parseEmbedPath(p)
		if !ok {
			h.opts.Next.ServeHTTP(w, r)
			return
		}
		h.embed(w, r, rt)
	case strings.HasPrefix(p, "/channels/") && strings.HasSuffix(p, "/events"):
		id, ok := parseChannelID(strings.TrimSuffix(strings.TrimPrefix(p, "/channels/"), "/events"))
		if !ok {
			h.opts.Next.ServeHTTP(w, r)
			return
		}
		h.events(w, r, id)
	default:
		h.opts.Next.ServeHTTP(w, r)
	}
}

// isChannelPage matches /channel/<id>.
func isChannelPage(p string) bool {
	rest, ok := strings.CutPrefix(p, "/channel/")
	if !ok {
		return false
	}
	_, ok = parseChannelID(rest)
	return ok
}

// parseChannelID parses a channel ID with the one rule every interface uses.
func parseChannelID(s string) (uint64, bool) {
	n, err := channels.ParseID(s)
	return n, err == nil
}

// securityHeaders are set on every dashboard page and asset: the page
// loads only its own scripts and styles and may not be framed.
func securityHeaders(hdr http.Header) {
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer") // api_key may be in the URL
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
}

func (h *Dashboard) serveAsset(w http.ResponseWriter, r *http.Request, name string, cache bool) {
	hdr := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, ok := h.assets[name]
	if !ok {
		hdr.Set("X-Content-Type-Options", "nosniff")
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	securityHeaders(hdr)
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", a.etag)
	if cache {
		hdr.Set("Cache-Control", "public, max-age=300")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(a.body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(a.body)
}
