package httpd

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Console sessions live in the console's memory only: a restart signs
// everyone out, which for a single-owner instance costs one sign-in and
// keeps session ids out of the database and its backups.
const (
	sessionCookie = "feedmq_session"
	// defaultIdleTimeout ends a session nobody used for that long.
	defaultIdleTimeout = 12 * time.Hour
	// defaultSessionMaxAge ends every session that long after sign-in,
	// used or not.
	defaultSessionMaxAge = 7 * 24 * time.Hour
	// defaultMaxSessions bounds the memory sign-ins can take; past it the
	// least recently used session ends.
	defaultMaxSessions = 64
)

// session is one signed-in browser.
type session struct {
	id       string // the cookie value: 256 random bits
	csrf     string // the token every form of this session carries
	created  time.Time
	lastSeen time.Time
	// sent holds the last few one-time form ids this session used, so
	// that reloading the page a create or reset answered does not do it
	// again (see sessionStore.once).
	sent []string
}

// maxSentForms is how many used form ids a session remembers.
const maxSentForms = 16

// sessionStore holds the sessions of one console.
type sessionStore struct {
	mu     sync.Mutex
	by     map[string]*session
	max    int
	idle   time.Duration
	maxAge time.Duration
	now    func() time.Time
}

func newSessionStore(max int, idle, maxAge time.Duration, now func() time.Time) *sessionStore {
	return &sessionStore{by: make(map[string]*session), max: max, idle: idle, maxAge: maxAge, now: now}
}

// randomToken returns 256 random bits, URL-safe.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session, ending the least recently used one when the
// store is full. since, when not zero, is when its password check began:
// the session counts from then, so that a password change during the
// (slow) check ends it like any session signed in before the change.
func (s *sessionStore) create(since time.Time) *session {
	now := s.now()
	created := now
	if !since.IsZero() && since.Before(now) {
		created = since
	}
	ss := &session{id: randomToken(), csrf: randomToken(), created: created, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	for len(s.by) >= s.max {
		var oldest *session
		for _, o := range s.by {
			if oldest == nil || o.lastSeen.Before(oldest.lastSeen) {
				oldest = o
			}
		}
		delete(s.by, oldest.id)
	}
	s.by[ss.id] = ss
	return ss
}

// sweep drops expired sessions; s.mu is held.
func (s *sessionStore) sweep(now time.Time) {
	for id, ss := range s.by {
		if s.expired(ss, now) {
			delete(s.by, id)
		}
	}
}

func (s *sessionStore) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.lastSeen) >= s.idle || now.Sub(ss.created) >= s.maxAge
}

// get returns the live session with cookie value id and marks it used.
// A session signed in before notBefore (the password's last change) is
// ended.
func (s *sessionStore) get(id string, notBefore time.Time) (*session, bool) {
	if id == "" {
		return nil, false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.by[id]
	if !ok {
		return nil, false
	}
	if s.expired(ss, now) || ss.created.Before(notBefore) {
		delete(s.by, id)
		return nil, false
	}
	ss.lastSeen = now
	return ss, true
}

// once records that the form with one-time id formID was sent; false
// when it was sent before.
func (s *sessionStore) once(ss *session, formID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ss.sent {
		if id == formID {
			return false
		}
	}
	if len(ss.sent) >= maxSentForms {
		ss.sent = ss.sent[1:]
	}
	ss.sent = append(ss.sent, formID)
	return true
}

// forget drops formID from the used ids: the action it guarded was
// refused and did nothing, so sending the form again is no repeat.
func (s *sessionStore) forget(ss *session, formID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.sent = slices.DeleteFunc(ss.sent, func(id string) bool { return id == formID })
}

// end ends the session with cookie value id.
func (s *sessionStore) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.by, id)
}

// endAll ends every session (the password changed).
func (s *sessionStore) endAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.by)
}

func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by)
}

// setSessionCookie gives the browser its session. Secure is set when the
// request came over TLS, so that a cookie issued on https is never sent
// over plain http; on plain http a Secure cookie would not be kept.
func setSessionCookie(w http.ResponseWriter, r *http.Request, ss *session, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(r), Value: ss.id, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// cookieName is the session cookie's name on r's listener. Over TLS it
// carries the __Host- prefix, with which a browser keeps only a Secure
// cookie for this exact host and path /, so a service on a sibling
// domain cannot plant or widen it; plain http cannot use the prefix.
func cookieName(r *http.Request) string {
	if r.TLS != nil {
		return "__Host-" + sessionCookie
	}
	return sessionCookie
}

func sessionID(r *http.Request) string {
	c, err := r.Cookie(cookieName(r))
	if err != nil {
		return ""
	}
	return c.Value
}

// validCSRF compares the form's token with the session's in constant time.
func validCSRF(ss *session, token string) bool {
	return ss != nil && token != "" && subtle.ConstantTimeCompare([]byte(ss.csrf), []byte(token)) == 1
}

// sameOrigin reports whether a state-changing request may come from where
// it says it comes from: a browser's Sec-Fetch-Site must be same-origin
// (or none: typed by the user), and an Origin header must name this host.
// Requests without either (old browsers, curl) are left to the CSRF token
// and the SameSite cookie.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false // includes "null"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && u.Host == r.Host
}
