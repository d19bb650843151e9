package httpd_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // zone tests must not depend on the host's zoneinfo

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// The fixed clocks of the tests: the database's (channel creation, entries
// written without created_at) says created, the API's (days=, minutes=)
// says now.
var (
	created = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	now     = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
)

// fakePublisher stores entries like the broker does and records what it
// would fan out.
type fakePublisher struct {
	store channels.Store
	mu    sync.Mutex
	err   error // returned instead of storing, when set
	out   []channels.Entry
}

func (p *fakePublisher) Publish(ctx context.Context, e *channels.Entry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if err := p.store.AppendEntry(ctx, e); err != nil {
		return err
	}
	p.out = append(p.out, *e)
	return nil
}

func (p *fakePublisher) PublishBatch(ctx context.Context, es []*channels.Entry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if err := p.store.(channels.BatchAppender).AppendEntries(ctx, es); err != nil {
		return err
	}
	for _, e := range es {
		p.out = append(p.out, *e)
	}
	return nil
}

func (p *fakePublisher) fannedOut() []channels.Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]channels.Entry(nil), p.out...)
}

func (p *fakePublisher) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// env is a handler on a real database.
type env struct {
	t   *testing.T
	db  testStore
	svc *admin.Local
	pub *fakePublisher
	h   http.Handler
}

func newEnv(t *testing.T, lim channels.Limits) *env {
	t.Helper()
	db := openStore(t, func() time.Time { return created })
	svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{store: db}
	h := httpd.NewAPI(httpd.APIOptions{
		Store: db, Registry: svc.Registry, Publisher: pub, Limits: lim,
		Now: func() time.Time { return now },
	})
	return &env{t: t, db: db, svc: svc, pub: pub, h: h}
}

// channel creates a channel; fields maps field numbers to labels.
func (e *env) channel(name, desc string, public bool, fields map[int]string) *channels.Channel {
	e.t.Helper()
	spec := auth.ChannelSpec{Name: name, Description: desc, Public: public}
	for n, l := range fields {
		spec.Fields[n-1] = l
	}
	c, err := e.svc.CreateChannel(context.Background(), spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// entry stores an entry at t with the given values (index -> value).
func (e *env) entry(ch uint64, t time.Time, vals map[int]string) *channels.Entry {
	e.t.Helper()
	en := &channels.Entry{ChannelID: ch, CreatedAt: t}
	for i, v := range vals {
		en.SetValue(i, v)
	}
	if err := e.db.AppendEntry(context.Background(), en); err != nil {
		e.t.Fatal(err)
	}
	return en
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(method, target string, body io.Reader, header ...string) response {
	e.t.Helper()
	req := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.String()}
}

func (e *env) get(target string, header ...string) response {
	e.t.Helper()
	return e.do(http.MethodGet, target, nil, header...)
}

func (e *env) post(target, contentType, body string, header ...string) response {
	e.t.Helper()
	return e.do(http.MethodPost, target, strings.NewReader(body), append([]string{"Content-Type", contentType}, header...)...)
}

// want checks status, content type (prefix) and exact body.
func (r response) want(t *testing.T, status int, contentType, body string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %q)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, contentType) {
		t.Errorf("Content-Type = %q, want %q", ct, contentType)
	}
	if r.body != body {
		t.Errorf("body =\n%s\nwant\n%s", r.body, body)
	}
}

const (
	ctJSON = "application/json; charset=utf-8"
	ctText = "text/plain; charset=utf-8"
	ctCSV  = "text/csv; charset=utf-8"
	ctXML  = "application/xml; charset=utf-8"
	// xmlHead starts every XML answer.
	xmlHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

	authBody = `{"status":"401","error":{"error_code":"error_auth_required","message":"Authorization Required","details":"Please provide proper authentication details."}}`
)

func at(h, m, s int) time.Time { return time.Date(2026, 11, 22, h, m, s, 0, time.UTC) }
