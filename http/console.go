// The console (NewConsole) is feedmq's web console: HTML forms, served
// under /console, through which the owner manages channels and devices
// with the same admin service the CLI uses. It works without JavaScript;
// console.js only adds copy buttons.
//
// Routes (GET shows, POST changes; every POST carries the session's CSRF
// token):
//
//	/console                          to the channel list, or to sign-in
//	/console/setup?token=T            choose the first password (setup link)
//	/console/signin, /console/signout
//	/console/password                 change the password
//	/console/channels                 channel list
//	/console/channels/new             new channel
//	/console/channels/<id>            settings, API keys
//	/console/channels/<id>/keys       POST: regenerate a key
//	/console/channels/<id>/clear      confirm, then clear the feed
//	/console/channels/<id>/delete     confirm, then delete
//	/console/channels/<id>/import     POST: import a CSV file (multipart)
//	/console/devices                  device list with live connections
//	/console/devices/new              add a device, then its credentials
//	/console/devices/<id>             edit name, description, channels
//	/console/devices/<id>/password    confirm, then new credentials
//	/console/devices/<id>/delete      confirm, then delete
//
// Sessions: a cookie naming a session held in memory (see session.go);
// idle sessions end after 12 hours, every session 7 days after sign-in,
// and every session signed in before the password last changed.

package httpd

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

//go:embed web/console/*.html
var consoleFS embed.FS

// maxFormBytes bounds a console form; the largest, a channel's settings
// with its metadata, fits easily.
const maxFormBytes = 64 << 10

// ConsoleOptions configure the console. Admin is required.
type ConsoleOptions struct {
	// Admin is the service the console fronts.
	Admin Admin
	// Feeds, when set, gives the channel list each channel's last entry
	// time and entry count (with channels.EntryCounter).
	Feeds channels.Store
	// Logger receives failures and refused sign-ins; default: discard.
	Logger *slog.Logger
	// Throttle counts failed sign-ins and setup tokens per source
	// address; default: its own with auth's default backoff.
	Throttle *auth.Throttle
	// Refusals counts refused sign-ins and forms by reason (console_*),
	// for /metrics; share the API's. Default: its own.
	Refusals *Refusals
	// MaxDevices and MaxChannelsPerDevice are the service's limits, shown
	// on the pages (0: not shown).
	MaxDevices, MaxChannelsPerDevice int
	// IdleTimeout, MaxAge and MaxSessions bound sessions (defaults 12 h,
	// 7 days, 64).
	IdleTimeout, MaxAge time.Duration
	MaxSessions         int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// bodies bounds the form bytes read at once; NewServer sets the
	// API's budget (APIOptions.MaxBodyBytesInFlight). Default: no bound.
	bodies *bodyBudget
}

// Reasons the console counts in Refusals.
const (
	refusedSignIn    = "console_sign_in_failed"    // wrong password or setup token
	refusedThrottled = "console_sign_in_throttled" // too many failures from the address
	refusedCSRF      = "console_csrf"              // POST without a valid token, or from another origin
)

// Console serves /console.
type Console struct {
	opts     ConsoleOptions
	bodies   *bodyBudget // the server's, or one without a bound
	log      *slog.Logger
	sessions *sessionStore
	pages    map[string]*template.Template
	turns    turns
}

// NewConsole returns the console handler. It panics without Admin.
func NewConsole(opts ConsoleOptions) *Console {
	if opts.Admin == nil {
		panic("httpd: NewConsole: Admin is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Throttle == nil {
		opts.Throttle = auth.NewThrottle(auth.Backoff{})
	}
	if opts.Refusals == nil {
		opts.Refusals = &Refusals{}
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = defaultSessionMaxAge
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = defaultMaxSessions
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Console{opts: opts, log: opts.Logger, bodies: opts.bodies, pages: make(map[string]*template.Template), turns: turns{by: make(map[string]*turn)}}
	if c.bodies == nil {
		c.bodies = newBodyBudget(0)
	}
	c.sessions = newSessionStore(opts.MaxSessions, opts.IdleTimeout, opts.MaxAge, opts.Now)
	base := template.Must(template.New("layout.html").Funcs(consoleFuncs).ParseFS(consoleFS, "web/console/layout.html"))
	names, err := fs.Glob(consoleFS, "web/console/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "web/console/"), ".html")
		if name == "layout" {
			continue
		}
		c.pages[name] = template.Must(template.Must(base.Clone()).ParseFS(consoleFS, n))
	}
	return c
}

var consoleFuncs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"fieldnum":  func(i int) int { return i + 1 },
	"maxupload": func() int { return MaxImportUpload >> 20 },
}

// Refusals returns the console's refusal counts (see ConsoleOptions).
func (c *Console) Refusals() *Refusals { return c.opts.Refusals }

// Owner reports whether r carries a live console session: the dashboard
// asks it to show the owner's private channels.
func (c *Console) Owner(r *http.Request) bool {
	id := sessionID(r)
	if id == "" {
		return false
	}
	info, err := c.opts.Admin.Account(r.Context())
	if err != nil {
		return false
	}
	_, ok := c.sessions.get(id, changedAt(info))
	return ok
}

func changedAt(info *auth.AccountInfo) time.Time {
	if info == nil || info.PasswordChangedAt == nil {
		return time.Time{}
	}
	return *info.PasswordChangedAt
}

// page is what every page template gets.
type page struct {
	Title  string
	Nav    string // the menu entry to mark current
	Signed bool
	CSRF   string
	Notice string
	Error  string
	Data   any
}

// req is one request to a page, with its session when signed in.
type req struct {
	w  http.ResponseWriter
	r  *http.Request
	ss *session
}

func (q *req) ctx() context.Context { return q.r.Context() }

func (q *req) post() bool { return q.r.Method == http.MethodPost }

// form is a posted value. Browsers send a textarea's line breaks as CRLF
// (and count each as one character against maxlength), so line breaks
// are stored as LF, as the CLI would store them.
func (q *req) form(name string) string {
	return strings.ReplaceAll(q.r.PostForm.Get(name), "\r\n", "\n")
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	securityHeaders(hdr)
	// With no-referrer a browser sends "Origin: null" even on the
	// console's own forms, which the origin check refuses; same-origin
	// keeps URLs (the setup token) from other sites all the same.
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("Cache-Control", "no-store") // pages show keys and credentials
	q := &req{w: w, r: r}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if id, ok := importPath(r.URL.Path); ok {
			// A file, read as a stream rather than as a form.
			c.importUpload(q, id)
			return
		}
		// A form is small; a larger body is refused before it is read.
		if err := c.parseForm(w, r); err != nil {
			switch err {
			case errBodyTooLarge:
				c.message(q, http.StatusRequestEntityTooLarge, "Form too large", "The form is larger than the console accepts ("+strconv.Itoa(maxFormBytes>>10)+" KiB).")
			case errBodyBusy:
				// A cap doing its job, as the API's 503s: not a failure.
				c.log.Debug("console: form refused", "path", r.URL.Path, "error", err)
				c.opts.Refusals.Add(refusedBusy)
				c.message(q, http.StatusServiceUnavailable, "Busy", "The server is reading as many forms and requests as it allows. Wait a moment and send the form again.")
			default:
				c.message(q, http.StatusBadRequest, "Bad form", "The form could not be read.")
			}
			return
		}
		if !sameOrigin(r) {
			c.opts.Refusals.Add(refusedCSRF)
			c.message(q, http.StatusForbidden, "Refused", "This form was sent from another site. Open the console and send it again.")
			return
		}
	default:
		hdr.Set("Allow", "GET, HEAD, POST")
		c.message(q, http.StatusMethodNotAllowed, "Method not allowed", "Use GET or POST.")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/console")
	parts := strings.Split(strings.Trim(p, "/"), "/")
	switch parts[0] {
	case "setup":
		if len(parts) == 1 {
			c.setup(q)
			return
		}
	case "signin":
		if len(parts) == 1 {
			c.signin(q)
			return
		}
	case "assets":
		// Assets are the dashboard's, at /assets/.
	default:
		if !c.signedIn(q) {
			return
		}
		if c.route(q, parts) {
			return
		}
	}
	c.message(q, http.StatusNotFound, "Not found", "There is no such page in the console.")
}

// route serves the pages of a signed-in owner; false means no such page.
func (c *Console) route(q *req, parts []string) bool {
	switch {
	case parts[0] == "" && len(parts) == 1:
		http.Redirect(q.w, q.r, "/console/channels", http.StatusSeeOther)
	case parts[0] == "signout" && len(parts) == 1:
		c.signout(q)
	case parts[0] == "password" && len(parts) == 1:
		c.password(q)
	case parts[0] == "channels":
		return c.channelRoutes(q, parts[1:])
	case parts[0] == "devices":
		return c.deviceRoutes(q, parts[1:])
	default:
		return false
	}
	return true
}

// signedIn finds the request's session. Without one it sends a GET to the
// sign-in page and refuses anything else; with one, a POST must carry the
// session's CSRF token. It reports whether the request may go on.
func (c *Console) signedIn(q *req) bool {
	return c.session(q) && c.checkCSRF(q)
}

// session is signedIn without the CSRF check: a POST whose form is not
// read yet (an upload) checks it later, before acting.
func (c *Console) session(q *req) bool {
	id := sessionID(q.r)
	if id != "" {
		info, err := c.opts.Admin.Account(q.ctx())
		if err != nil {
			c.adminError(q, err)
			return false
		}
		q.ss, _ = c.sessions.get(id, changedAt(info))
	}
	if q.ss == nil {
		if id != "" {
			clearSessionCookie(q.w, q.r)
		}
		if q.post() {
			c.message(q, http.StatusForbidden, "Signed out", "Your session has ended. Sign in and try again.")
			return false
		}
		http.Redirect(q.w, q.r, "/console/signin", http.StatusSeeOther)
		return false
	}
	return true
}

// checkCSRF refuses a POST without the session's CSRF token.
func (c *Console) checkCSRF(q *req) bool {
	if q.post() && !validCSRF(q.ss, q.form("csrf")) {
		c.opts.Refusals.Add(refusedCSRF)
		c.message(q, http.StatusForbidden, "Refused", "The form's security token is missing or out of date. Go back, reload the page and send it again.")
		return false
	}
	return true
}

// render writes page name with status.
func (c *Console) render(q *req, status int, name string, v page) {
	t, ok := c.pages[name]
	if !ok {
		panic("httpd: console page " + name + " missing")
	}
	if q.ss != nil {
		v.Signed, v.CSRF = true, q.ss.csrf
	}
	if v.Notice == "" && q.r.Method == http.MethodGet {
		v.Notice = doneMessages[q.r.URL.Query().Get("done")]
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		c.log.Error("console: render", "page", name, "error", err)
		http.Error(q.w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := q.w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(b.Len()))
	q.w.WriteHeader(status)
	if q.r.Method != http.MethodHead {
		q.w.Write([]byte(b.String()))
	}
}

// doneMessages are the notices a page shows after a change redirected to
// it (?done=...); only these fixed texts can appear.
var doneMessages = map[string]string{
	"created":  "Channel created.",
	"saved":    "Settings saved.",
	"key":      "New API key generated; devices using the old one are refused from now on.",
	"cleared":  "Feed cleared; entry numbering restarts at 1.",
	"deleted":  "Channel deleted.",
	"ddeleted": "Device deleted.",
	"dsaved":   "Device saved.",
	"password": "Password changed; every other session has ended.",
	"welcome":  "Password set. You are signed in.",
}

type messageData struct {
	Heading, Text  string
	Link, LinkText string
}

// message answers with a page that says what happened.
func (c *Console) message(q *req, status int, heading, text string) {
	d := messageData{Heading: heading, Text: text}
	if q.ss != nil {
		d.Link, d.LinkText = "/console/channels", "Back to the console"
	} else {
		d.Link, d.LinkText = "/console/signin", "Sign in"
	}
	c.render(q, status, "message", page{Title: heading, Data: d})
}

// adminError answers with the service's message for err; an internal
// failure is logged and shown without detail.
func (c *Console) adminError(q *req, err error) {
	status, heading := adminStatus(err)
	msg := channels.ErrorMessage(err)
	if status == http.StatusInternalServerError {
		if q.ctx().Err() != nil {
			return
		}
		c.log.Error("console: admin", "path", q.r.URL.Path, "error", err)
		// The detail may name files or internals: it goes to the log only.
		c.message(q, status, heading, "The server could not do that; try again later. Its log has the details.")
		return
	}
	c.message(q, status, heading, upperFirst(msg)+".")
}

func adminStatus(err error) (int, string) {
	switch channels.ErrorCode(err) {
	case channels.EINVALID:
		return http.StatusBadRequest, "Not accepted"
	case channels.ENOTFOUND:
		return http.StatusNotFound, "Not found"
	case channels.ECONFLICT, channels.ELIMIT:
		return http.StatusConflict, "Not possible"
	case channels.EFORBIDDEN:
		return http.StatusForbidden, "Not allowed"
	}
	return http.StatusInternalServerError, "Server error"
}

// formError reports whether err is one the user can fix in the form it
// came from (shown above the form, status 400/409), rather than a page.
func formError(err error) (int, bool) {
	switch channels.ErrorCode(err) {
	case channels.EINVALID:
		return http.StatusBadRequest, true
	case channels.ELIMIT, channels.ECONFLICT:
		return http.StatusConflict, true
	}
	return 0, false
}

func upperFirst(s string) string {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// errText is err's message as a sentence for a form's notice.
func errText(err error) string { return upperFirst(channels.ErrorMessage(err)) + "." }

// turns lets one password or setup token check per source address run
// at a time. The throttle learns of a failure only when its check ends,
// and a check is a slow hash: guesses sent in parallel would all pass the
// throttle while the first was being hashed.
type turns struct {
	mu sync.Mutex
	by map[string]*turn // only addresses with a request holding or waiting
}

type turn struct {
	held    chan struct{} // one slot: taken while a check runs
	waiting int           // requests holding or waiting for held
}

// take waits for host's turn; false when ctx ended first. release gives
// the turn to the next request from host.
func (t *turns) take(ctx context.Context, host string) (release func(), ok bool) {
	t.mu.Lock()
	tn := t.by[host]
	if tn == nil {
		tn = &turn{held: make(chan struct{}, 1)}
		t.by[host] = tn
	}
	tn.waiting++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		if tn.waiting--; tn.waiting == 0 {
			delete(t.by, host)
		}
		t.mu.Unlock()
	}
	select {
	case tn.held <- struct{}{}:
		return func() { <-tn.held; leave() }, true
	case <-ctx.Done():
		leave()
		return nil, false
	}
}

// attempt starts a password or setup token check: it waits for the
// address's turn, then answers 429 when the address failed too often.
// When ok, the caller checks and then calls release.
func (c *Console) attempt(q *req) (release func(), ok bool) {
	release, ok = c.turns.take(q.ctx(), auth.ThrottleKey(q.r.RemoteAddr))
	if !ok {
		return nil, false // the client left; nobody reads an answer
	}
	if c.throttled(q) {
		release()
		return nil, false
	}
	return release, true
}

// throttled answers 429 when the request's address failed too often.
func (c *Console) throttled(q *req) bool {
	until, blocked := c.opts.Throttle.Blocked(q.r.RemoteAddr)
	if !blocked {
		return false
	}
	c.opts.Refusals.Add(refusedThrottled)
	secs := max(int(math.Ceil(until.Sub(c.opts.Now()).Seconds())), 1)
	q.w.Header().Set("Retry-After", strconv.Itoa(secs))
	c.message(q, http.StatusTooManyRequests, "Too many attempts", "Too many wrong passwords or setup links from this address. Wait "+strconv.Itoa(secs)+" seconds and try again.")
	return true
}

// failed counts a wrong password or setup token against the address and
// logs it without what was typed.
func (c *Console) failed(q *req, what string) {
	c.opts.Throttle.Fail(q.r.RemoteAddr)
	c.opts.Refusals.Add(refusedSignIn)
	host, _, err := net.SplitHostPort(q.r.RemoteAddr)
	if err != nil {
		host = "?"
	}
	c.log.Warn("console: "+what, "remote", host)
}

// startSession signs the browser in; since is when its password check
// began (zero: now, for a password just set).
func (c *Console) startSession(q *req, since time.Time) {
	if old := sessionID(q.r); old != "" {
		c.sessions.end(old) // a new id on sign-in: no fixation
	}
	q.ss = c.sessions.create(since)
	setSessionCookie(q.w, q.r, q.ss, c.opts.MaxAge)
}

type setupData struct {
	Token string
}

// setup serves the setup link: the first password, chosen by whoever the
// server's log line reached.
func (c *Console) setup(q *req) {
	token := q.r.URL.Query().Get("token")
	if q.post() {
		token = q.form("token")
	}
	bad := func() {
		c.message(q, http.StatusForbidden, "Setup link not valid",
			"This setup link is wrong or was used already. If a password is set, sign in; otherwise run `feedmq account set-password` on the server, or restart it for a new link.")
	}
	if token == "" || len(token) > 256 {
		bad()
		return
	}
	if !q.post() {
		if info, err := c.opts.Admin.Account(q.ctx()); err == nil && info.PasswordSet {
			bad() // a password is set, so the link was used
			return
		}
		c.render(q, http.StatusOK, "setup", page{Title: "Choose a password", Data: setupData{Token: token}})
		return
	}
	release, ok := c.attempt(q)
	if !ok {
		return
	}
	defer release()
	pw, confirm := q.form("password"), q.form("confirm")
	if msg := checkNewPassword(pw, confirm); msg != "" {
		c.render(q, http.StatusBadRequest, "setup", page{Title: "Choose a password", Error: msg, Data: setupData{Token: token}})
		return
	}
	if err := c.opts.Admin.RedeemSetupToken(q.ctx(), token, pw); err != nil {
		switch channels.ErrorCode(err) {
		case channels.EINVALID:
			c.render(q, http.StatusBadRequest, "setup", page{Title: "Choose a password", Error: errText(err), Data: setupData{Token: token}})
		case channels.EINTERNAL:
			c.adminError(q, err)
		default:
			c.failed(q, "setup token refused")
			bad()
		}
		return
	}
	c.sessions.endAll()
	c.startSession(q, time.Time{})
	http.Redirect(q.w, q.r, "/console/channels?done=welcome", http.StatusSeeOther)
}

// checkNewPassword returns what is wrong with a new password and its
// confirmation, or "". Strength rules are the service's.
func checkNewPassword(pw, confirm string) string {
	switch {
	case pw == "":
		return "Enter a password."
	case pw != confirm:
		return "The two passwords differ; type the same password twice."
	}
	return ""
}

type signinData struct {
	NoPassword bool
}

func (c *Console) signin(q *req) {
	if !q.post() {
		if id := sessionID(q.r); id != "" {
			if info, err := c.opts.Admin.Account(q.ctx()); err == nil {
				if _, ok := c.sessions.get(id, changedAt(info)); ok {
					http.Redirect(q.w, q.r, "/console/channels", http.StatusSeeOther)
					return
				}
			}
		}
		var d signinData
		if info, err := c.opts.Admin.Account(q.ctx()); err == nil && !info.PasswordSet {
			d.NoPassword = true
		}
		c.render(q, http.StatusOK, "signin", page{Title: "Sign in", Data: d})
		return
	}
	release, ok := c.attempt(q)
	if !ok {
		return
	}
	defer release()
	pw := q.form("password")
	if pw == "" {
		c.render(q, http.StatusBadRequest, "signin", page{Title: "Sign in", Error: "Enter the password."})
		return
	}
	since := c.opts.Now()
	if err := c.opts.Admin.VerifyPassword(q.ctx(), pw); err != nil {
		if channels.ErrorCode(err) == channels.EINTERNAL {
			c.adminError(q, err)
			return
		}
		c.failed(q, "sign-in failed")
		c.render(q, http.StatusUnauthorized, "signin", page{Title: "Sign in", Error: "Wrong password."})
		return
	}
	c.opts.Throttle.Succeed(q.r.RemoteAddr)
	c.startSession(q, since)
	http.Redirect(q.w, q.r, "/console/channels", http.StatusSeeOther)
}

func (c *Console) signout(q *req) {
	if !q.post() {
		c.message(q, http.StatusMethodNotAllowed, "Sign out", "Use the Sign out button.")
		return
	}
	c.sessions.end(q.ss.id)
	clearSessionCookie(q.w, q.r)
	q.ss = nil
	http.Redirect(q.w, q.r, "/console/signin", http.StatusSeeOther)
}

// password changes the owner's password after checking the current one;
// every session ends, and this browser gets a new one.
func (c *Console) password(q *req) {
	if !q.post() {
		c.render(q, http.StatusOK, "password", page{Title: "Change password", Nav: "password"})
		return
	}
	again := func(status int, msg string) {
		c.render(q, status, "password", page{Title: "Change password", Nav: "password", Error: msg})
	}
	release, ok := c.attempt(q)
	if !ok {
		return
	}
	defer release()
	if err := c.opts.Admin.VerifyPassword(q.ctx(), q.form("current")); err != nil {
		if channels.ErrorCode(err) == channels.EINTERNAL {
			c.adminError(q, err)
			return
		}
		c.failed(q, "password change: wrong current password")
		again(http.StatusUnauthorized, "The current password is wrong.")
		return
	}
	pw := q.form("password")
	if msg := checkNewPassword(pw, q.form("confirm")); msg != "" {
		again(http.StatusBadRequest, msg)
		return
	}
	if err := c.opts.Admin.SetPassword(q.ctx(), pw); err != nil {
		if status, ok := formError(err); ok {
			again(status, errText(err))
			return
		}
		c.adminError(q, err)
		return
	}
	c.sessions.endAll()
	c.startSession(q, time.Time{})
	http.Redirect(q.w, q.r, "/console/channels?done=password", http.StatusSeeOther)
}

// confirmData is a confirmation step: a page with one form that repeats
// the action with confirm=yes and a required checkbox, so that it works
// without JavaScript and a stray click does nothing.
type confirmData struct {
	Heading, Text string
	Action        string
	Check         string // the checkbox's label
	Button        string
	Cancel        string
	FormID        string // a one-time id, for actions that show a secret
}

func (c *Console) confirm(q *req, title string, d confirmData) {
	c.render(q, http.StatusOK, "confirm", page{Title: title, Data: d})
}

// sentOnce checks the one-time id of a form whose POST creates a secret
// (a device, a new password): a browser that reloads the answer sends the
// form again, which must not make a second device or password. It has
// answered when false.
func (c *Console) sentOnce(q *req) bool {
	id := q.form("form_id")
	if len(id) < 16 || len(id) > 64 {
		c.message(q, http.StatusBadRequest, "Not accepted", "The form lacks its one-time id. Go back, reload the page and send it again.")
		return false
	}
	if !c.sessions.once(q.ss, id) {
		c.message(q, http.StatusConflict, "Sent already", "This form was sent already, and its credentials were shown then. The device list shows the result; regenerate the password if you did not keep it.")
		return false
	}
	return true
}

// confirmed reports whether a POST carries the confirmation checkbox.
func confirmed(q *req) bool { return q.post() && q.form("confirm") == "yes" }

// pathID parses an ID path segment; the caller answers 404 when false.
func pathID(s string) (uint64, bool) {
	n, err := channels.ParseID(s)
	return n, err == nil
}

func idPath(prefix string, id uint64) string {
	return prefix + strconv.FormatUint(id, 10)
}

// parseForm reads a POST's form within the server's body budget (at most
// maxFormBytes) and sets r.PostForm and r.Form as r.ParseForm does: the
// body counts only as application/x-www-form-urlencoded, and its values
// come before the query's. The errors are bodyBudget.read's, or a
// malformed form's.
func (c *Console) parseForm(w http.ResponseWriter, r *http.Request) error {
	body, done, err := c.bodies.read(w, r, maxFormBytes)
	if err != nil {
		return err
	}
	defer done()
	r.PostForm = url.Values{}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		if r.PostForm, err = url.ParseQuery(string(body)); err != nil {
			return err
		}
	}
	// With PostForm set, ParseForm only merges it with the query.
	return r.ParseForm()
}
