package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
	"github.com/feedmq/feedmq/storage"
)

// dbPath is the bbolt database file serve keeps, "" on PostgreSQL.
func (s *server) dbPath() string {
	if db, ok := s.db.(*storage.DB); ok {
		return db.Path()
	}
	return ""
}

// metrics are what GET /metrics serves, in the Prometheus text format.
// The broker's counters are read at scrape time (feedCollector), so the
// publish path touches only the atomics it keeps anyway; the storage
// writer reports each group commit through storage.Options.OnCommit into
// two histograms.
type metrics struct {
	commitSeconds prometheus.Histogram
	commitEntries prometheus.Histogram
	// httpRefused counts the HTTP API's refused requests; the API adds
	// to it, a scrape reads it.
	httpRefused *httpd.Refusals
	// httpFieldsDropped counts disabled-field values HTTP writes carried.
	httpFieldsDropped atomic.Uint64
}

func newMetrics() *metrics {
	return &metrics{
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "feedmq_storage_commit_duration_seconds",
			Help:    "Duration of the storage writer's group commits (one write-ahead log write and fdatasync each on the bbolt file, one transaction on PostgreSQL).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		commitEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "feedmq_storage_commit_entries",
			Help:    "Entries stored per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1 .. 4096, the writer's largest batch
		}),
		httpRefused: &httpd.Refusals{},
	}
}

// observeCommit is storage.Options.OnCommit. It runs on the writer
// goroutine, before the commit's callers are answered.
func (m *metrics) observeCommit(entries int, d time.Duration) {
	m.commitSeconds.Observe(d.Seconds())
	m.commitEntries.Observe(float64(entries))
}

// handler returns the /metrics handler for a running server: feedmq's
// metrics plus the Go runtime and process collectors, in a registry of
// its own (tests run several servers in one process).
func (m *metrics) handler(s *server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commitSeconds, m.commitEntries,
		&feedCollector{broker: s.broker, dbPath: s.dbPath(), httpFieldsDropped: &m.httpFieldsDropped},
		refusalCollector{m.httpRefused},
		bindingCollector{s.broker},
	)
	if s.node != nil {
		reg.MustRegister(nodeCollector{s.node})
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            promLogger{s},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// promLogger sends promhttp's errors to the server log.
type promLogger struct{ s *server }

func (l promLogger) Println(v ...any) {
	// A constant message, so that the log's per-message limit counts
	// these lines together.
	l.s.log.Warn("metrics: collection failed", "component", "http", "error", fmt.Sprint(v...))
}

var (
	descConnections = prometheus.NewDesc("feedmq_connections",
		"Live MQTT connections, by listener (mqtt, mqtts, ws, wss; running listeners only).", []string{"listener"}, nil)
	descConnAccepted = prometheus.NewDesc("feedmq_connections_accepted_total",
		"MQTT connections accepted, by listener.", []string{"listener"}, nil)
	descConnRefused = prometheus.NewDesc("feedmq_connections_refused_total",
		"MQTT CONNECTs refused, by reason.", []string{"reason"}, nil)
	descEntriesStored = prometheus.NewDesc("feedmq_entries_stored_total",
		"Feed entries stored and fanned out, from MQTT and HTTP.", nil, nil)
	descRejected = prometheus.NewDesc("feedmq_publishes_rejected_total",
		"MQTT publishes refused, by reason.", []string{"reason"}, nil)
	descFanout = prometheus.NewDesc("feedmq_fanout_deliveries_total",
		"Fan-out publishes of stored entries handed to the MQTT server (one per topic: the feed topic and each field topic).", nil, nil)
	descDropped = prometheus.NewDesc("feedmq_deliveries_dropped_total",
		"Messages to subscribers dropped because the subscriber's outbound queue was full.", nil, nil)
	descSubscriptions = prometheus.NewDesc("feedmq_subscriptions",
		"Live MQTT subscriptions.", nil, nil)
	descFieldsDropped = prometheus.NewDesc("feedmq_fields_dropped_total",
		"Values of fields the channel has not enabled that writes carried and that were left out of the stored entries (the rest of each write is stored, as ThingSpeak does), by source (mqtt, http).", []string{"source"}, nil)
	descDBSize = prometheus.NewDesc("feedmq_storage_file_size_bytes",
		"Size of the bbolt database file.", nil, nil)
	descFreePublished = prometheus.NewDesc("feedmq_free_publishes_total",
		"MQTT publishes (and wills) on free topics (outside channels/ and devices/) allowed by access rules and routed; refused ones count in feedmq_publishes_rejected_total.", nil, nil)
	descRetained = prometheus.NewDesc("feedmq_retained_messages",
		"Retained messages held on free topics.", nil, nil)
	descRetainedRefused = prometheus.NewDesc("feedmq_retained_refused_total",
		"Retained publishes delivered but not retained: over retained.max_messages or retained.max_bytes.", nil, nil)
	descQueued = prometheus.NewDesc("feedmq_queued_messages",
		"QoS 1/2 messages held for MQTT clients: waiting for a persistent session's client or not yet acknowledged.", nil, nil)
	descQueueDropped = prometheus.NewDesc("feedmq_queued_dropped_total",
		"Queued QoS 1/2 messages dropped, oldest first, over sessions.max_queued_per_client or sessions.max_queued_total.", nil, nil)
	descSessions = prometheus.NewDesc("feedmq_persistent_sessions",
		"Persistent MQTT sessions whose client is away.", nil, nil)
)

// feedCollector reads the broker's counters and the database file size
// at scrape time.
type feedCollector struct {
	broker *broker.Server
	// dbPath is the bbolt file; "" on PostgreSQL, whose size is the
	// database server's to report, so the gauge is left out.
	dbPath            string
	httpFieldsDropped *atomic.Uint64
}

func (c *feedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descConnAccepted, descConnRefused, descEntriesStored,
		descRejected, descFanout, descDropped, descSubscriptions, descDBSize, descFieldsDropped,
		descFreePublished, descRetained, descRetainedRefused, descQueued, descQueueDropped, descSessions} {
		ch <- d
	}
}

func (c *feedCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.broker.Stats()
	for _, id := range sortedKeys(st.Connections) {
		ls := st.Connections[id]
		ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(ls.Live), id)
		ch <- prometheus.MustNewConstMetric(descConnAccepted, prometheus.CounterValue, float64(ls.Accepted), id)
	}
	for _, r := range sortedKeys(st.Refused) {
		ch <- prometheus.MustNewConstMetric(descConnRefused, prometheus.CounterValue, float64(st.Refused[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(descEntriesStored, prometheus.CounterValue, float64(st.Accepted))
	for _, r := range sortedKeys(st.Rejected) {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(st.Rejected[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(descFanout, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descFieldsDropped, prometheus.CounterValue, float64(st.FieldsDropped), "mqtt")
	ch <- prometheus.MustNewConstMetric(descFieldsDropped, prometheus.CounterValue, float64(c.httpFieldsDropped.Load()), "http")
	ch <- prometheus.MustNewConstMetric(descSubscriptions, prometheus.GaugeValue, float64(c.broker.Subscriptions()))
	ch <- prometheus.MustNewConstMetric(descFreePublished, prometheus.CounterValue, float64(st.FreePublished))
	ch <- prometheus.MustNewConstMetric(descRetained, prometheus.GaugeValue, float64(st.Retained))
	ch <- prometheus.MustNewConstMetric(descRetainedRefused, prometheus.CounterValue, float64(st.RetainedRefused))
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(descQueueDropped, prometheus.CounterValue, float64(st.QueueDropped))
	ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(st.Sessions))
	if c.dbPath == "" {
		return
	}
	if fi, err := os.Stat(c.dbPath); err != nil {
		ch <- prometheus.NewInvalidMetric(descDBSize, err)
	} else {
		ch <- prometheus.MustNewConstMetric(descDBSize, prometheus.GaugeValue, float64(fi.Size()))
	}
}

var descHTTPRefused = prometheus.NewDesc("feedmq_http_refused_total",
	"HTTP requests refused (the REST and management API, the dashboard, the console), by reason: the error code answered without its error_ prefix (auth_required, too_many_requests, bad_request, resource_not_found, ...), or rate_limited for a write answered 0; the web console's refusals are console_sign_in_failed, console_sign_in_throttled and console_csrf, and busy (as the API's) for a form that found the server reading as many request bodies as it allows.",
	[]string{"reason"}, nil)

// refusalCollector reads the HTTP API's refusal counts at scrape time.
type refusalCollector struct{ r *httpd.Refusals }

func (c refusalCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descHTTPRefused }

func (c refusalCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.r.Snapshot()
	for _, reason := range sortedKeys(counts) {
		ch <- prometheus.MustNewConstMetric(descHTTPRefused, prometheus.CounterValue, float64(counts[reason]), reason)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// healthTimeout bounds how long /healthz waits for the store.
const healthTimeout = 2 * time.Second

// storeHealth is /healthz's check that the store answers: a read
// transaction that lists the channels. At most one read is in flight; a
// check that finds one running waits for it, so probes that pile up on a
// stuck store do not pile up goroutines.
type storeHealth struct {
	db channels.Store

	mu      sync.Mutex
	running chan struct{} // closed when the read in flight ends; nil when none
	last    error         // outcome of the last read that ended
}

func (h *storeHealth) check(ctx context.Context) error {
	h.mu.Lock()
	done := h.running
	if done == nil {
		done = make(chan struct{})
		h.running = done
		go func() {
			_, err := h.db.ListChannels(context.Background())
			h.mu.Lock()
			h.last, h.running = err, nil
			h.mu.Unlock()
			close(done)
		}()
	}
	h.mu.Unlock()
	t := time.NewTimer(healthTimeout)
	defer t.Stop()
	select {
	case <-done:
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.last != nil {
			return fmt.Errorf("store: %w", h.last)
		}
		return nil
	case <-t.C:
		return errors.New("store: no answer within " + healthTimeout.String())
	case <-ctx.Done():
		return ctx.Err()
	}
}
