package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/cluster"
	"github.com/feedmq/feedmq/storage/postgres"
)

// clusterNode is what serve runs on a PostgreSQL storage beside the
// broker: the node's row in the nodes table and the monitor that beats it
// and fails the node closed when it cannot confirm its state, the
// follower of configuration changes other processes commit, and, with
// cluster:, the NATS link to the other nodes. Without cluster: the node
// is alone on the database and does all of it but NATS.
type clusterNode struct {
	name  string
	pg    *postgres.DB
	cl    *cluster.Cluster // nil without cluster:
	beats *beatRecorder
	mon   *cluster.Monitor
	svc   *admin.Local
	log   *slog.Logger

	stopFollow func()
	// readFailed is set when /healthz's last read of the store failed.
	readFailed atomic.Bool
}

// nodeBeatInterval is how often a node beats; a node is live while its
// last beat is within three of them. A node that cannot confirm its
// state for nodeFailAfter fails closed. Tests shorten both.
var (
	nodeBeatInterval = cluster.DefaultBeatInterval
	nodeFailAfter    = cluster.DefaultFailAfter
)

func nodeWindow() time.Duration { return 3 * nodeBeatInterval }

// startNode claims the node's name in the database (refusing a name a
// running process holds, a lone node beside others, a clustered node
// beside a lone one) and, with cluster:, connects to NATS. Nothing is
// received before the broker attaches.
func startNode(ctx context.Context, cfg Config, pg *postgres.DB, log *slog.Logger) (*clusterNode, error) {
	n := &clusterNode{name: cfg.nodeName(), pg: pg, beats: &beatRecorder{db: pg}, log: log}
	if err := pg.ClaimNode(ctx, postgres.NodeClaim{Node: n.name, Clustered: cfg.Cluster != "", Window: nodeWindow()}); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.name, err)
	}
	n.beats.ok.Store(true) // the claim just reached the database
	if cfg.Cluster == "" {
		return n, nil
	}
	urls, err := clusterURLs(cfg.Cluster)
	if err != nil {
		n.leave()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	dbID, err := pg.ClusterID(ctx)
	if err != nil {
		n.leave()
		return nil, err
	}
	n.cl, err = cluster.Open(cluster.Config{
		URLs: strings.Join(urls, ","), Name: cfg.ClusterName, Node: n.name, Database: dbID, Store: pg,
		NATSOptions: cfg.natsOptions(), Logger: log.With("component", "cluster"),
	})
	if err != nil {
		n.leave()
		// nats.go names the server without its password; the cluster
		// package's error starts with "cluster:".
		return nil, fmt.Errorf("%w (is a NATS server listening at the cluster URLs, and do cluster_tls and cluster_credentials match it?)", err)
	}
	return n, nil
}

// brokerCluster is the broker's Options.Cluster: nil (no interface
// holding a nil pointer) without cluster:.
func (n *clusterNode) brokerCluster() broker.Cluster {
	if n == nil || n.cl == nil {
		return nil
	}
	return n.cl
}

// follow keeps svc in step with the configuration changes of every
// process and starts the heartbeat monitor, whose check is that svc is
// current; failing closed closes b's connections.
func (n *clusterNode) follow(ctx context.Context, svc *admin.Local, b *broker.Server) error {
	n.svc = svc
	if n.cl != nil {
		svc.ChannelReset, svc.Delivered = n.cl.Reset, n.cl.Delivered
		n.cl.SetKnown(func(id uint64) bool { _, ok := svc.Registry.Channel(id); return ok })
	}
	stop, err := svc.Follow(ctx, n.pg, admin.FollowOptions{Logger: n.log.With("component", "config")})
	if err != nil {
		return err
	}
	n.stopFollow = stop
	n.mon = cluster.StartMonitor(cluster.MonitorOptions{
		Node: n.name, Beats: n.beats, Interval: nodeBeatInterval, Window: nodeWindow(), FailAfter: nodeFailAfter,
		Check:        svc.Confirm,
		OnFailClosed: func() { b.SetFailClosed(true) },
		OnRecovered:  func() { b.SetFailClosed(false) },
	})
	if n.cl != nil {
		n.cl.SetMonitor(n.mon)
	}
	return nil
}

// stopWatching stops the monitor (a shutdown must not fail closed) and
// the follower; the broker closes after it.
func (n *clusterNode) stopWatching() {
	if n.mon != nil {
		n.mon.Stop()
	}
	if n.stopFollow != nil {
		n.stopFollow()
		n.stopFollow = nil
	}
}

// close ends the NATS link (after the broker's last entries went out)
// and removes the node from the nodes table, so that a restart or a lone
// node need not wait for it to go stale.
func (n *clusterNode) close() error {
	var errs []error
	if n.cl != nil {
		errs = append(errs, n.cl.Close())
	}
	errs = append(errs, n.leave())
	return errors.Join(errs...)
}

func (n *clusterNode) leave() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return n.pg.LeaveNode(ctx)
}

// beatRecorder is the monitor's Heartbeats, remembering whether the last
// beat reached the database.
type beatRecorder struct {
	db *postgres.DB
	ok atomic.Bool
}

func (r *beatRecorder) Beat(ctx context.Context, node, status string) error {
	err := r.db.Beat(ctx, node, status)
	r.ok.Store(err == nil)
	return err
}

func (r *beatRecorder) Live(ctx context.Context, window time.Duration) ([]cluster.NodeStatus, error) {
	return r.db.Live(ctx, window)
}

// health is /healthz on a node on the shared database. Only a node that
// failed closed answers unavailable: a failed read of the database only
// says so in the detail. The database is shared, so a failed read fails on
// every node at once, and a balancer checking /healthz would then take out
// every node and close every connection, with nowhere to move them; a node
// cut off on its own fails closed after the confirmation window and is
// taken out then.
func (n *clusterNode) health(store func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if n.mon != nil && n.mon.FailClosed() {
			return errors.New("failed closed: the node could not confirm its state with the database in time")
		}
		n.readFailed.Store(store(ctx) != nil)
		return nil
	}
}

// healthDetail is what /healthz adds: one "key: value" line each.
func (n *clusterNode) healthDetail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\n", n.name)
	reachable := n.beats.ok.Load() && !n.readFailed.Load()
	fmt.Fprintf(&b, "database: %s\n", map[bool]string{true: "reachable", false: "unreachable"}[reachable])
	failed := n.mon != nil && n.mon.FailClosed()
	fmt.Fprintf(&b, "fail_closed: %t\n", failed)
	if n.cl != nil {
		m := n.cl.Metrics()
		fmt.Fprintf(&b, "nats: %s\n", map[bool]string{true: "connected", false: "disconnected"}[m.NATSConnected])
		fmt.Fprintf(&b, "gap_fills: %d\nsequencer_waits: %d\n", m.GapFills, m.SequencerWaits)
	}
	var nodes []string
	if n.mon != nil {
		for _, s := range n.mon.Nodes() {
			nodes = append(nodes, s.Node+" "+s.Status)
		}
	}
	fmt.Fprintf(&b, "nodes: %s\n", strings.Join(nodes, ", "))
	return b.String()
}

var (
	descClusterNodes = prometheus.NewDesc("feedmq_cluster_nodes",
		"Nodes that beat into the database's nodes table lately (this one included), by name and status (ok, fail-closed); 1 each.", []string{"node", "status"}, nil)
	descClusterNodesLive = prometheus.NewDesc("feedmq_cluster_nodes_live",
		"How many nodes beat lately, this one included.", nil, nil)
	descClusterDB = prometheus.NewDesc("feedmq_cluster_database_reachable",
		"1 when this node's last heartbeat reached the database.", nil, nil)
	descClusterNATS = prometheus.NewDesc("feedmq_cluster_nats_connected",
		"1 while the NATS connection is up (cluster mode only).", nil, nil)
	descClusterFailClosed = prometheus.NewDesc("feedmq_cluster_fail_closed",
		"1 while the node refuses connections because it could not confirm its state with the database in time.", nil, nil)
	descClusterReloads = prometheus.NewDesc("feedmq_cluster_config_reloads_total",
		"Full reloads of the configuration (at start, after a lost notification connection, or when the polled version was ahead).", nil, nil)
)

// clusterCounters are the cluster layer's counters, as metrics.
var clusterCounters = []struct {
	desc *prometheus.Desc
	get  func(cluster.Metrics) uint64
}{
	{prometheus.NewDesc("feedmq_cluster_entries_published_total", "Entries this node committed and sent to the other nodes over NATS.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Published }},
	{prometheus.NewDesc("feedmq_cluster_publish_errors_total", "Entries NATS refused to send (the other nodes read them from the database).", nil, nil),
		func(m cluster.Metrics) uint64 { return m.PublishErrors }},
	{prometheus.NewDesc("feedmq_cluster_entries_received_total", "Entries received from other nodes over NATS.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Received }},
	{prometheus.NewDesc("feedmq_cluster_malformed_messages_total", "NATS messages dropped as neither entries nor notices.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Malformed }},
	{prometheus.NewDesc("feedmq_cluster_unknown_channel_entries_total", "Entries from NATS dropped because their channel is unknown here (deleted, or not a channel: check who may publish on the cluster's subjects).", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Unknown }},
	{prometheus.NewDesc("feedmq_cluster_foreign_messages_total", "NATS messages of another feedmq database's nodes, dropped (clusters sharing NATS servers need a cluster_name each).", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Foreign }},
	{prometheus.NewDesc("feedmq_cluster_duplicates_total", "Entries dropped as delivered already.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Duplicates }},
	{prometheus.NewDesc("feedmq_cluster_sequencer_waits_total", "Gaps in a channel's entry ids held open for a missing entry.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.SequencerWaits }},
	{prometheus.NewDesc("feedmq_cluster_gap_fills_total", "Reads of the database that filled a gap.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.GapFills }},
	{prometheus.NewDesc("feedmq_cluster_gap_filled_entries_total", "Entries delivered from gap fills.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Filled }},
	{prometheus.NewDesc("feedmq_cluster_gap_fill_errors_total", "Gap fills (and catch-up reads) that failed.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.FillErrors }},
	{prometheus.NewDesc("feedmq_cluster_stale_total", "Held entries dropped because the database no longer had them.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Stale }},
	{prometheus.NewDesc("feedmq_cluster_skipped_total", "Entry ids past a fill's bound, never delivered live.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Skipped }},
	{prometheus.NewDesc("feedmq_cluster_overflow_total", "Entries not held because too many were (filled from the database instead).", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Overflow }},
	{prometheus.NewDesc("feedmq_cluster_catch_ups_total", "Reads of every channel's last id after NATS reconnected or dropped messages.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.CatchUps }},
	{prometheus.NewDesc("feedmq_cluster_takeover_notices_total", "Client-ID takeover notices received from other nodes.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Notices }},
	{prometheus.NewDesc("feedmq_cluster_takeovers_total", "Local connections closed because their client ID connected on another node.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.Takeovers }},
	{prometheus.NewDesc("feedmq_cluster_free_forwarded_total", "Free-topic messages (and wills) this node routed and sent to the other nodes over NATS.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.FreeForwarded }},
	{prometheus.NewDesc("feedmq_cluster_free_forward_errors_total", "Free-topic messages NATS refused to send (lost for the other nodes: delivery across nodes is at most once).", nil, nil),
		func(m cluster.Metrics) uint64 { return m.FreeForwardErrors }},
	{prometheus.NewDesc("feedmq_cluster_free_received_total", "Free-topic messages received from other nodes and routed to this node's subscribers.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.FreeReceived }},
	{prometheus.NewDesc("feedmq_cluster_free_malformed_total", "Free-topic messages from NATS dropped as malformed or over this node's packet limit.", nil, nil),
		func(m cluster.Metrics) uint64 { return m.FreeDropped }},
}

// nodeCollector reads the node's state at scrape time.
type nodeCollector struct{ n *clusterNode }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClusterNodes, descClusterNodesLive, descClusterDB, descClusterFailClosed, descClusterReloads} {
		ch <- d
	}
	if c.n.cl != nil {
		ch <- descClusterNATS
		for _, k := range clusterCounters {
			ch <- k.desc
		}
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	var nodes []cluster.NodeStatus
	failed := false
	if n.mon != nil {
		nodes, failed = n.mon.Nodes(), n.mon.FailClosed()
	}
	for _, s := range nodes {
		ch <- prometheus.MustNewConstMetric(descClusterNodes, prometheus.GaugeValue, 1, s.Node, s.Status)
	}
	ch <- prometheus.MustNewConstMetric(descClusterNodesLive, prometheus.GaugeValue, float64(len(nodes)))
	ch <- prometheus.MustNewConstMetric(descClusterDB, prometheus.GaugeValue, b2f(n.beats.ok.Load()))
	ch <- prometheus.MustNewConstMetric(descClusterFailClosed, prometheus.GaugeValue, b2f(failed))
	var reloads uint64
	if n.svc != nil {
		reloads = n.svc.Reloads()
	}
	ch <- prometheus.MustNewConstMetric(descClusterReloads, prometheus.CounterValue, float64(reloads))
	if n.cl == nil {
		return
	}
	m := n.cl.Metrics()
	ch <- prometheus.MustNewConstMetric(descClusterNATS, prometheus.GaugeValue, b2f(m.NATSConnected))
	for _, k := range clusterCounters {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(k.get(m)))
	}
}

// health is /healthz's check: the store answers, and on PostgreSQL the
// node has not failed closed.
func (s *server) health() func(context.Context) error {
	store := (&storeHealth{db: s.db}).check
	if s.node == nil {
		return store
	}
	return s.node.health(store)
}

// healthDetail is what /healthz adds on PostgreSQL; nil on the bbolt file.
func (s *server) healthDetail() func() string {
	if s.node == nil {
		return nil
	}
	return s.node.healthDetail
}
