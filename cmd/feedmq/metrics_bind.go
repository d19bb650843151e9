package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedmq/feedmq/broker"
)

var (
	descBindings = prometheus.NewDesc("feedmq_bindings",
		"Bindings of free topics to channels in force.", nil, nil)
	descBindingEntries = prometheus.NewDesc("feedmq_binding_entries_total",
		"Entries stored from publishes on bound free topics (also counted in feedmq_entries_stored_total).", nil, nil)
	descBindingFailures = prometheus.NewDesc("feedmq_binding_failures_total",
		"Publishes on bound free topics that stored no entry for a binding, by reason: no_values (none of the bound paths in the payload), bad_payload (unreadable, or a bound value not valid), too_large, unknown_channel, rate_limited, store_error, shutting_down. The publish itself is delivered either way.",
		[]string{"reason"}, nil)
)

// bindingCollector reads the broker's binding counters at scrape time.
type bindingCollector struct{ broker *broker.Server }

func (c bindingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBindings
	ch <- descBindingEntries
	ch <- descBindingFailures
}

func (c bindingCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.broker.BindingStats()
	ch <- prometheus.MustNewConstMetric(descBindings, prometheus.GaugeValue, float64(st.Bindings))
	ch <- prometheus.MustNewConstMetric(descBindingEntries, prometheus.CounterValue, float64(st.Entries))
	for _, r := range sortedKeys(st.Failures) {
		ch <- prometheus.MustNewConstMetric(descBindingFailures, prometheus.CounterValue, float64(st.Failures[r]), r)
	}
}
