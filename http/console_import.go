package httpd

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// The console's CSV import: a file from the channel page, sent as
// multipart/form-data and imported as `feedmq feed import` does (the same
// code, through Admin.ImportCSV).
const (
	// MaxImportUpload bounds an uploaded file with its form. The file is
	// read as a stream, so this bounds how long one upload keeps the
	// server busy, not its memory; larger files go through the CLI.
	MaxImportUpload = 16 << 20
	// importHold is what an upload reserves of the body budget while it
	// runs: the stream's buffers, one CSV row and one batch of entries.
	importHold = 1 << 20
	// maxUploadFormPart bounds each small part before the file (csrf,
	// form_id), and maxUploadPreamble all bytes read before the file.
	maxUploadFormPart = 1 << 10
	maxUploadPreamble = 16 << 10
	// importReadTime is how long an upload's body may take to arrive,
	// counted from when its session and size were checked: longer than
	// the listener's read timeout, for slow uplinks.
	importReadTime = 90 * time.Second
	// importDrain bounds the rest of a refused file read and dropped, so
	// that the browser, still sending, reads the answer instead of a reset.
	importDrain = 10 * time.Second
)

// errUploadTooLarge is the upload reader's error past its limit.
var errUploadTooLarge = errors.New("upload over the limit")

// uploadReader reads at most left more bytes of a body.
type uploadReader struct {
	r    io.Reader
	left int64
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if u.left <= 0 {
		return 0, errUploadTooLarge
	}
	if int64(len(p)) > u.left {
		p = p[:u.left]
	}
	n, err := u.r.Read(p)
	u.left -= int64(n)
	return n, err
}

// importPath matches /console/channels/<id>/import.
func importPath(p string) (uint64, bool) {
	rest, ok := strings.CutPrefix(p, "/console/channels/")
	if !ok {
		return 0, false
	}
	id, tail, ok := strings.Cut(rest, "/")
	if !ok || tail != "import" {
		return 0, false
	}
	return pathID(id)
}

// refuseUpload prepares an answer given before the body is read: the
// connection closes after it instead of reading the rest of the body
// (after a short grace, so that a client still sending sees the answer).
func refuseUpload(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyGrace))
}

// importUpload serves POST /console/channels/<id>/import. Checked in this
// order, each before anything more of the body is read: origin, session,
// form type and declared size, body budget; then the CSRF token and the
// one-time form id, sent before the file; then the channel. Only then is
// the file read and imported.
func (c *Console) importUpload(q *req, id uint64) {
	w, r := q.w, q.r
	if !sameOrigin(r) {
		refuseUpload(w)
		c.opts.Refusals.Add(refusedCSRF)
		c.message(q, http.StatusForbidden, "Refused", "This form was sent from another site. Open the console and send it again.")
		return
	}
	if !c.session(q) {
		refuseUpload(w)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		refuseUpload(w)
		c.message(q, http.StatusBadRequest, "Not accepted", "Send the file with the channel page's Import CSV form (multipart/form-data, field file).")
		return
	}
	tooLarge := "The file is larger than the console takes (" + strconv.Itoa(MaxImportUpload>>20) + " MiB). Import it with `feedmq feed import " + strconv.FormatUint(id, 10) + " FILE.csv` on the server, which has no limit."
	if r.ContentLength > MaxImportUpload {
		refuseUpload(w)
		c.message(q, http.StatusRequestEntityTooLarge, "File too large", tooLarge)
		return
	}
	if !c.bodies.take(importHold) {
		refuseUpload(w)
		w.Header().Set("Retry-After", "1")
		c.log.Debug("console: upload refused", "path", r.URL.Path, "error", errBodyBusy)
		c.opts.Refusals.Add(refusedBusy)
		c.message(q, http.StatusServiceUnavailable, "Busy", "The server is reading as many uploads, forms and requests as it allows. Wait a moment and send the file again.")
		return
	}
	defer c.bodies.give(importHold)
	body := &uploadReader{r: r.Body, left: maxUploadPreamble}
	mr := multipart.NewReader(body, params["boundary"])
	form := url.Values{}
	var file *multipart.Part
	for file == nil {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		} else if err != nil {
			refuseUpload(w)
			c.message(q, http.StatusBadRequest, "Not accepted", "The upload could not be read: send the form again.")
			return
		}
		name := part.FormName()
		if name == "file" {
			file = part
			break
		}
		v, err := io.ReadAll(io.LimitReader(part, maxUploadFormPart+1))
		if err != nil || len(v) > maxUploadFormPart || len(form) >= 4 {
			refuseUpload(w)
			c.message(q, http.StatusBadRequest, "Not accepted", "The upload's form is not the Import CSV form: send the file from the channel page.")
			return
		}
		form.Set(name, string(v))
	}
	r.PostForm = form
	if !c.checkCSRF(q) {
		refuseUpload(w)
		return
	}
	ch, err := c.opts.Admin.Channel(q.ctx(), id)
	if err != nil {
		refuseUpload(w)
		c.adminError(q, err)
		return
	}
	if file == nil || file.FileName() == "" {
		refuseUpload(w)
		c.importPage(q, ch, http.StatusBadRequest, "", "Choose a CSV file to import.")
		return
	}
	formID := q.form("form_id")
	if len(formID) < 16 || len(formID) > 64 {
		refuseUpload(w)
		c.importPage(q, ch, http.StatusBadRequest, "", "The form lacks its one-time id. Reload the page and send the file again.")
		return
	}
	if !c.sessions.once(q.ss, formID) {
		refuseUpload(w)
		c.importPage(q, ch, http.StatusConflict, "", "This upload was sent already (a reload?): the feed below shows what it stored. To import more, choose the file again.")
		return
	}
	// The file may take longer than the listener's read timeout.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(importReadTime))
	body.left = MaxImportUpload
	sum, err := c.opts.Admin.ImportCSV(q.ctx(), id, file)
	if err == nil {
		c.log.Info("console: import", "channel", id, "entries", sum.Entries, "ids_kept", sum.IDsKept)
		c.importPage(q, ch, http.StatusOK, importNotice(sum), "")
		return
	}
	if q.ctx().Err() != nil {
		return // the client left
	}
	// What the answer says was stored: nothing unless the error says so.
	stored, entries := "nothing was stored", 0
	var ie *channels.ImportError
	if errors.As(err, &ie) {
		stored, entries = ie.Stored, ie.Summary.Entries
	}
	if entries == 0 {
		c.sessions.forget(q.ss, formID) // nothing done: the same form may be sent again
	}
	// Read and drop the rest, briefly, so that the browser gets the answer.
	if !errors.Is(err, errUploadTooLarge) {
		_ = rc.SetReadDeadline(time.Now().Add(importDrain))
		io.Copy(io.Discard, body)
	}
	refuseUpload(w)
	status, msg := http.StatusBadRequest, ""
	switch code := channels.ErrorCode(err); {
	case errors.Is(err, errUploadTooLarge):
		status, msg = http.StatusRequestEntityTooLarge, tooLarge+" "+upperFirst(stored)+"."
	case code == channels.ENOTFOUND:
		c.adminError(q, err)
		return
	case code == channels.EINVALID || code == channels.ELIMIT || code == channels.ECONFLICT:
		// The file's fault: the message names the line and what was
		// stored before it.
		msg = upperFirst(err.Error()) + "."
		if ie == nil {
			msg = upperFirst(channels.ErrorMessage(err)) + "; " + stored + "."
		}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, multipart.ErrMessageTooLarge):
		msg = "The upload was cut off before the end of the file; " + stored + "."
	default:
		c.log.Error("console: import", "channel", id, "stored", entries, "error", err)
		status, msg = http.StatusInternalServerError, "The server could not import the file; "+stored+". Its log has the details."
	}
	c.log.Info("console: import refused", "channel", id, "stored", entries, "status", status)
	c.importPage(q, ch, status, "", msg)
}

// importNotice says what an import stored.
func importNotice(s *channels.ImportSummary) string {
	if s.Entries == 0 {
		return "The file holds no entries: nothing was imported."
	}
	how := "numbered on after the channel's last entry"
	if s.IDsKept {
		how = "entry IDs kept"
	}
	return fmt.Sprintf("Imported %d %s (%s): entries %d to %d, %s to %s.", s.Entries, plural(s.Entries, "entry", "entries"), how,
		s.FirstID, s.LastID, s.FirstAt.UTC().Format("2006-01-02 15:04:05 UTC"), s.LastAt.UTC().Format("2006-01-02 15:04:05 UTC"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// importPage shows the channel page after an upload, with a notice or an
// error, reading the channel again for its new entry count.
func (c *Console) importPage(q *req, ch *channels.Channel, status int, notice, errMsg string) {
	if now, err := c.opts.Admin.Channel(q.ctx(), ch.ID); err == nil {
		ch = now
	}
	f := formOf(ch)
	f.Entries = c.entryCount(q, ch)
	c.render(q, status, "channel", page{Title: "Channel settings", Nav: "channels", Notice: notice, Error: errMsg, Data: f})
}
