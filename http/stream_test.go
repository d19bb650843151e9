package httpd_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// plainStore hides the store's paging, so that the handler builds whole
// answers as it did before streaming.
type plainStore struct{ channels.Store }

// Answers streamed a page at a time are byte for byte those built whole,
// over many pages, formats and parameters.
func TestStreamedFeedsAreUnchanged(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Big", "d", false, map[int]string{1: "a", 2: "b", 5: "c"})
	for i := range 457 {
		vals := map[int]string{0: strconv.Itoa(i), 4: strings.Repeat("v", i%40)}
		if i%3 == 0 {
			vals[1] = `q"x,` + strconv.Itoa(i)
		}
		if i%7 == 0 {
			vals[channels.Status] = "=s" + strconv.Itoa(i)
			vals[channels.Latitude] = "-1.5"
		}
		e.entry(ch.ID, at(0, 0, 0).Add(time.Duration(i*97%457)*time.Minute), vals)
	}
	streamed := e.h
	whole := httpd.NewAPI(httpd.APIOptions{
		Store: plainStore{e.db}, Registry: e.svc.Registry, Publisher: e.pub,
		Now: func() time.Time { return now },
	})
	key := "api_key=" + ch.ReadKey
	for _, path := range []string{"feeds.json", "feeds.csv", "fields/2.json", "fields/5.csv"} {
		for _, q := range []string{
			"", "results=0", "results=1", "results=99", "results=100", "results=101", "results=457", "results=8000",
			"status=true&location=true&results=300", "callback=cb&results=250",
			"start=2026-11-22%2001:00:00&end=2026-11-22%2005:00:00", "days=1", "minutes=600&results=120",
			"timezone=Europe/Berlin&results=150", "offset=-5&start=2026-11-22T03:00:00Z",
		} {
			target := "/channels/1/" + path + "?" + key + "&" + q
			get := func(h http.Handler) *httptest.ResponseRecorder {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
				return rec
			}
			a, b := get(streamed), get(whole)
			if a.Code != b.Code || a.Body.String() != b.Body.String() ||
				a.Header().Get("Content-Type") != b.Header().Get("Content-Type") ||
				a.Header().Get("Content-Length") != b.Header().Get("Content-Length") {
				t.Errorf("%s: streamed %d (%d bytes, length %q) differs from whole %d (%d bytes, length %q)", target,
					a.Code, a.Body.Len(), a.Header().Get("Content-Length"), b.Code, b.Body.Len(), b.Header().Get("Content-Length"))
			}
		}
	}
}

// clearingStore clears channel other before the page call of a keyed read.
type clearingStore struct {
	testStore
	other uint64
	page  int
	calls atomic.Int32
}

func (s *clearingStore) EntriesByKey(ctx context.Context, channelID, version uint64, keys []channels.EntryKey, page []channels.Entry) ([]channels.Entry, error) {
	if int(s.calls.Add(1)) == s.page {
		if err := s.testStore.ClearChannel(ctx, s.other); err != nil {
			return nil, err
		}
	}
	return s.testStore.EntriesByKey(ctx, channelID, version, keys, page)
}

// A large feed read is answered whole while another channel is cleared
// between its pages (before anything is sent, and after part of it is):
// the other channel's clear has nothing to do with this feed.
func TestStreamedFeedOtherChannelCleared(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Big", "d", true, map[int]string{1: "a"})
	other := e.channel("Other", "d", true, map[int]string{1: "a"})
	for i := range 1000 {
		e.entry(ch.ID, at(0, 0, 0).Add(time.Duration(i)*time.Second), map[int]string{0: strings.Repeat("x", 50) + strconv.Itoa(i)})
	}
	e.entry(other.ID, at(0, 0, 0), map[int]string{0: "1"})
	target := "/channels/" + strconv.FormatUint(ch.ID, 10) + "/feeds.csv?results=8000"
	want := e.get(target)
	if want.status != http.StatusOK || strings.Count(want.body, "\n") != 1001 {
		t.Fatalf("plain read: %d, %d lines", want.status, strings.Count(want.body, "\n"))
	}
	for _, page := range []int{1, 8} {
		store := &clearingStore{testStore: e.db, other: other.ID, page: page}
		srv := httptest.NewServer(httpd.NewAPI(httpd.APIOptions{
			Store: store, Registry: e.svc.Registry, Publisher: e.pub,
			Now: func() time.Time { return now },
		}))
		resp, err := http.Get(srv.URL + target)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(b) != want.body {
			t.Errorf("other channel cleared before page %d: status %d, %d of %d bytes, %v", page, resp.StatusCode, len(b), len(want.body), err)
		}
	}
}

// A feed read that meets its own channel's clear before anything is sent
// answers the feed as it is after the clear, not a server error (a user
// clearing a channel while a chart reads it did nothing wrong).
func TestStreamedFeedClearedBeforeAnswer(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Big", "d", true, map[int]string{1: "a"})
	for i := range 300 {
		e.entry(ch.ID, at(0, 0, 0).Add(time.Duration(i)*time.Second), map[int]string{0: strconv.Itoa(i)})
	}
	store := &clearingStore{testStore: e.db, other: ch.ID, page: 1}
	h := httpd.NewAPI(httpd.APIOptions{
		Store: store, Registry: e.svc.Registry, Publisher: e.pub,
		Now: func() time.Time { return now },
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/channels/"+strconv.FormatUint(ch.ID, 10)+"/feeds.csv?results=8000", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "created_at,entry_id,field1\n" {
		t.Errorf("read during its channel's clear: %d %q, want 200 and no entries", rec.Code, rec.Body.String())
	}
}
