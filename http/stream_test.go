package httpd_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// plainStore hides storage.DB's paging, so that the handler builds whole
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
