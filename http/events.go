package httpd

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Event stream limits.
const (
	// maxReplay bounds the entries replayed to a stream that resumes
	// (Last-Event-ID or since=) after missing some.
	maxReplay = 100
	// defaultWriteTimeout cuts off a client that stops reading.
	defaultWriteTimeout = 20 * time.Second
	// retryMillis is how long a browser waits before reconnecting.
	retryMillis = 3000
)

// events serves GET /channels/<id>/events: a text/event-stream with one
// message per new entry of the channel,
//
//	id: 7
//	data: {"channel_id":1,"created_at":"...","entry_id":7,"field1":"23.5",...}
//
// and a comment line (": ping") every Heartbeat. A client that resumes
// with Last-Event-ID (EventSource does on reconnect) or since=<entry_id>
// first gets the entries after that one (at most the newest 100). The
// stream ends when the client goes away, when its access is revoked (the
// channel turned private, its read key regenerated or the channel
// deleted) and at Shutdown.
func (h *Dashboard) events(w http.ResponseWriter, r *http.Request, id uint64) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Access-Control-Allow-Origin", "*")
	if r.Method != http.MethodGet {
		hdr.Set("Allow", "GET")
		h.writeError(w, http.StatusMethodNotAllowed, "error_method_invalid", "Method "+strconv.Quote(r.Method)+" is not allowed here; use GET.")
		return
	}
	key := readKey(r)
	if !h.authorize(w, r, id, key) {
		return
	}
	if h.ctx.Err() != nil {
		h.writeError(w, http.StatusServiceUnavailable, "error_unavailable", "The server is shutting down.")
		return
	}
	// Each stream holds a goroutine, a subscription and its buffer for as
	// long as the client likes: only so many at a time.
	if n := h.streams.Add(1); h.opts.MaxStreams > 0 && n > int64(h.opts.MaxStreams) {
		h.streams.Add(-1)
		hdr.Set("Retry-After", strconv.Itoa(retryMillis/1000))
		h.writeError(w, http.StatusServiceUnavailable, "error_busy", "The server has as many event streams open as it allows; try again later.")
		return
	}
	defer h.streams.Add(-1)
	var since uint64
	resume := r.Header.Get("Last-Event-ID")
	if resume == "" {
		resume = r.URL.Query().Get("since")
	}
	if resume != "" {
		n, err := strconv.ParseUint(resume, 10, 64)
		if err != nil {
			h.writeError(w, http.StatusBadRequest, "error_bad_request", "since and Last-Event-ID must be an entry_id.")
			return
		}
		since = n
	}

	// Subscribe before reading the store, so that nothing committed in
	// between is missed; entries replayed are skipped when they arrive live.
	live, stop := h.opts.Watcher.WatchEntries(id, h.opts.Buffer)
	defer stop()

	rc := http.NewResponseController(w)
	// The server's read and write timeouts are for requests, not streams:
	// a stream lives until the client leaves, and each write gets its own
	// deadline instead.
	_ = rc.SetReadDeadline(time.Time{})
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	buf := []byte("retry: " + strconv.Itoa(retryMillis) + "\n: stream of channel " + strconv.FormatUint(id, 10) + "\n\n")

	var replayed uint64
	if resume != "" {
		var err error
		if buf, replayed, err = h.replay(r, buf, id, since); err != nil {
			if r.Context().Err() == nil {
				h.log.Error("dashboard: event replay", "channel", id, "error", err)
			}
			return
		}
	}
	send := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
		if _, err := w.Write(buf); err != nil {
			return false
		}
		buf = buf[:0]
		return rc.Flush() == nil
	}
	if !send() {
		return
	}

	tick := time.NewTicker(h.opts.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.ctx.Done():
			return
		case <-tick.C:
			if h.canRead(id, key) != http.StatusOK {
				return
			}
			buf = append(buf, ": ping\n\n"...)
		case msg, ok := <-live:
			if !ok || h.canRead(id, key) != http.StatusOK {
				return
			}
			// Entries committed before the replay read the store come
			// first, in order, inside (since, replayed]: skip those.
			// The first entry outside ends the skipping, since a clear
			// restarts the numbering at 1 (at most since, when resuming).
			eid := entryID(msg)
			if eid != 0 && eid > since && eid <= replayed {
				continue
			}
			replayed = 0
			buf = appendEvent(buf, eid, msg)
		}
		if !send() {
			return
		}
	}
}

// replay appends the events of the entries after entry since, at most the
// newest maxReplay, and returns the last entry_id it covered.
func (h *Dashboard) replay(r *http.Request, buf []byte, id, since uint64) ([]byte, uint64, error) {
	ctx := r.Context()
	ch, err := h.opts.Store.FindChannel(ctx, id)
	if err != nil {
		return buf, 0, err
	}
	last := ch.LastEntryID
	if since >= last {
		return buf, last, nil
	}
	from := since + 1
	if last-since > maxReplay {
		from = last - maxReplay + 1
	}
	var js []byte
	for eid := from; eid <= last; eid++ {
		e, err := h.opts.Store.FindEntry(ctx, id, eid)
		if channels.ErrorCode(err) == channels.ENOTFOUND {
			continue // pruned by retention
		} else if err != nil {
			return buf, 0, err
		}
		js = e.AppendJSON(js[:0])
		buf = appendEvent(buf, eid, js)
	}
	return buf, last, nil
}

// appendEvent appends one SSE message: the entry_id as its id and the
// entry JSON (one line) as its data.
func appendEvent(b []byte, eid uint64, msg []byte) []byte {
	if eid != 0 {
		b = append(b, "id: "...)
		b = strconv.AppendUint(b, eid, 10)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, msg...)
	return append(b, "\n\n"...)
}

// entryID reads "entry_id" from an entry JSON, or returns 0.
func entryID(msg []byte) uint64 {
	const k = `"entry_id":`
	i := bytes.Index(msg, []byte(k))
	if i < 0 {
		return 0
	}
	var n uint64
	for _, c := range msg[i+len(k):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
