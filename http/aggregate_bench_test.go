package httpd_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
	"github.com/feedmq/feedmq/storage"
)

// benchFeed returns an API handler over a public channel 1 with n
// entries, one every step, ending before now, with two numeric fields.
// With backDated, one more entry is written last, dated before all of
// them, so that no read can trust entry_id order.
func benchFeed(b *testing.B, n int, step time.Duration, backDated ...bool) http.Handler {
	b.Helper()
	db, err := storage.Open(filepath.Join(b.TempDir(), "feedmq.db"), storage.Options{Now: func() time.Time { return created }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	ctx := context.Background()
	svc, err := admin.NewLocal(ctx, db, auth.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	spec := auth.ChannelSpec{Name: "Bench", Public: true}
	spec.Fields[0], spec.Fields[1] = "Temperature", "Humidity"
	if _, err := svc.CreateChannel(ctx, spec); err != nil {
		b.Fatal(err)
	}
	// Queued appends share commits, so 100k entries take seconds.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	start := now.Add(-time.Duration(n) * step)
	for i := range n {
		e := &channels.Entry{ChannelID: 1, CreatedAt: start.Add(time.Duration(i) * step)}
		e.SetValue(0, strconv.FormatFloat(20+float64(i%100)/10, 'f', 1, 64))
		e.SetValue(1, strconv.Itoa(40+i%20))
		wg.Add(1)
		err := db.AppendEntryAsync(ctx, e, func(_ *channels.Entry, err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
			wg.Done()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
	if len(backDated) > 0 && backDated[0] {
		e := &channels.Entry{ChannelID: 1, CreatedAt: start.Add(-time.Hour)}
		e.SetValue(0, "1")
		if err := db.AppendEntry(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	return httpd.NewAPI(httpd.APIOptions{Store: db, Registry: svc.Registry, Publisher: &fakePublisher{store: db}, Now: func() time.Time { return now }})
}

// discard is a ResponseWriter that counts the body and keeps nothing.
type discard struct {
	h    http.Header
	code int
	n    int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

func benchRead(b *testing.B, h http.Handler, target string, minBytes int) {
	b.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d := &discard{h: http.Header{}, code: 200}
		h.ServeHTTP(d, req)
		if d.code != 200 || d.n < minBytes {
			b.Fatalf("%s: %d, %d bytes", target, d.code, d.n)
		}
		b.SetBytes(int64(d.n))
	}
}

// BenchmarkAverage60 reads 8000 entries, one every 15 s (33 hours), as
// 60-minute averages: 34 rows.
func BenchmarkAverage60(b *testing.B) {
	h := benchFeed(b, 8000, 15*time.Second)
	b.Run("json", func(b *testing.B) { benchRead(b, h, "/channels/1/feeds.json?results=8000&average=60", 34*50) })
	b.Run("csv", func(b *testing.B) { benchRead(b, h, "/channels/1/feeds.csv?results=8000&average=60", 34*30) })
	// The same read without averaging, for comparison.
	b.Run("plain-json", func(b *testing.B) { benchRead(b, h, "/channels/1/feeds.json?results=8000", 8000*50) })
}

// BenchmarkFeedsCSV8000 reads the newest 8000 entries of a 100k-entry
// channel as CSV.
func BenchmarkFeedsCSV8000(b *testing.B) {
	h := benchFeed(b, 100_000, 15*time.Second)
	benchRead(b, h, "/channels/1/feeds.csv?results=8000", 8000*30)
}

// BenchmarkFeedsCSV8000BackDated is BenchmarkFeedsCSV8000 on a channel
// whose newest entry_id is dated before all others: the read walks the
// whole feed and keeps the newest 8000 by time in a heap.
func BenchmarkFeedsCSV8000BackDated(b *testing.B) {
	h := benchFeed(b, 100_000, 15*time.Second, true)
	benchRead(b, h, "/channels/1/feeds.csv?results=8000", 8000*30)
}
