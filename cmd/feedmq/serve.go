package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
	"github.com/feedmq/feedmq/internal/gctune"
	"github.com/feedmq/feedmq/internal/safelog"
	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/postgres"
)

func newServeCommand() *cobra.Command {
	def := DefaultConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker until SIGINT or SIGTERM",
		Long: `Run the MQTT broker on the data directory. It prints one line per listener
with its bound address, serves admin commands on the admin socket in the data
directory, and shuts down cleanly on SIGINT or SIGTERM.

While no web console password is set, serve logs one line with a setup
link on the --http listener (or --https, when only that one runs),
http://HOST:PORT/console/setup?token=...: open it once to choose the
password. The token lives until serve stops.

Flags override the --config file, which overrides the defaults. An address
of "off" disables a listener.

With storage set to a PostgreSQL URL, serve is a node on that database
(named node_name): it refuses to start while another node without
cluster is live there, follows the changes other processes make to
channels, devices and rules, and with cluster set (NATS URLs) exchanges
entries with the other nodes. A node that cannot confirm its state with
the database for 30 seconds closes its connections and refuses new ones
until it can; /healthz and /metrics show the cluster.

On SIGHUP serve reads the TLS certificate and key files again: new
connections get the new certificate, established ones stay. When the new
files are not a valid pair, the previous certificate stays in use and the
error is logged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			// Everything serve logs may carry what clients sent (MQTT
			// client IDs and topics, URL paths, error texts): one
			// sanitizing, rate-limited logger for all of it.
			log := safelog.Logger(newLogger(cfg, cmd.ErrOrStderr()), cfg.LogRate)
			if addr, _ := cmd.Flags().GetString("pprof"); addr != "" {
				stop, err := startPprof(addr, log)
				if err != nil {
					return err
				}
				defer stop()
			}
			return runServe(cmd.Context(), cfg, cmd.OutOrStdout(), log)
		},
	}
	f := cmd.Flags()
	f.String("mqtt", def.Listeners.MQTT, "MQTT over TCP address, or off")
	f.String("ws", def.Listeners.WS, "MQTT over WebSocket (path /mqtt) address, or off")
	f.String("mqtts", "", "MQTT over TLS address, or off (default :8883 with --tls-cert)")
	f.String("wss", "", "MQTT over secure WebSocket address, or off (default :8084 with --tls-cert)")
	f.String("tls-cert", "", "TLS certificate file (PEM) for mqtts, wss and https")
	f.String("tls-key", "", "TLS private key file (PEM) for mqtts, wss and https")
	f.String("http", def.Listeners.HTTP, "HTTP address (REST feed API, /metrics, /healthz), or off")
	f.String("https", "", "HTTPS address serving what --http does, with --tls-cert; off by default")
	f.Bool("anonymous", def.Anonymous, "allow connections without a username (API keys in topics, public channels)")
	f.Duration("idle-timeout", time.Duration(def.IdleTimeout), "drop a keepalive-0 connection after this long without a packet")
	f.String("pprof", "", "serve Go's profiler (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; off by default")
	return cmd
}

// listenerNames are the listeners serve reports, in this order.
var listenerNames = []string{"mqtt", "ws", "mqtts", "wss", "http", "https"}

// runServe runs a server until ctx is done, printing the bound listener
// addresses to out.
// gcTuneInterval is how often the GC percentage follows the ratio of
// goroutine stacks to live heap (see internal/gctune).
const gcTuneInterval = 5 * time.Second

func runServe(ctx context.Context, cfg Config, out io.Writer, log *slog.Logger) error {
	// SIGHUP reloads the certificate; it must not kill a running server.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	checkFileLimit(log, cfg.MaxConnections)
	s, err := openServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	var bound []string
	for _, name := range listenerNames {
		if addr := s.addr(name); addr != nil {
			fmt.Fprintf(out, "%s listening on %s\n", name, addr)
			bound = append(bound, fmt.Sprintf("%s %s", name, addr))
		}
	}
	// Every listener is bound and the store is open: under systemd
	// (Type=notify) the service is started now. Nothing is sent elsewhere.
	sd := newNotifier(log)
	tuneCtx, stopTuning := context.WithCancel(ctx)
	defer stopTuning()
	go gctune.Run(tuneCtx, gcTuneInterval)
	go gctune.Release(tuneCtx, time.Second, log)
	status := "serving: " + strings.Join(bound, ", ")
	sd.Ready(status)
	stopWatchdog := sd.StartWatchdog()
	defer stopWatchdog() // after Close: a long shutdown is not a hang
	for {
		select {
		case <-hup:
			// logged; serve goes on either way
			_ = sd.Reload(func() error { return s.reloadCertificate(cfg) }, status)
		case <-ctx.Done():
			sd.Stopping()
			log.Info("shutting down")
			return s.Close()
		}
	}
}

// reloadCertificate reads the TLS certificate again, on SIGHUP, and logs
// the outcome. Without a certificate there is nothing to do. On an error
// the server goes on with the previous certificate.
func (s *server) reloadCertificate(cfg Config) error {
	if cfg.TLS.Cert == "" {
		s.log.Info("SIGHUP: no TLS certificate configured; nothing to reload")
		return nil
	}
	if err := s.broker.ReloadCertificate(); err != nil {
		s.log.Error("SIGHUP: TLS certificate not reloaded", "error", err)
		return err
	}
	s.log.Info("SIGHUP: TLS certificate reloaded", "cert", cfg.TLS.Cert)
	return nil
}

// server is a running feedmq instance: database, admin service, broker,
// HTTP listener and admin socket, opened in that order and closed in
// reverse.
type server struct {
	log *slog.Logger
	db  serveStore
	// pg is db when it is PostgreSQL, nil on the bbolt file: what only a
	// shared database offers (change notices, cluster) hangs on it.
	pg     *postgres.DB
	svc    *admin.Local
	broker *broker.Server
	http   *httpd.Server // nil when --http is off
	// metrics are served on /metrics; the store reports commits to them.
	metrics *metrics
	sock    *admin.Server
	// stopPrune stops the background retention (see dbcmd.go).
	stopPrune func()
	// node is the node's life on a PostgreSQL storage (heartbeat,
	// configuration changes of other processes, NATS with cluster:);
	// nil on the bbolt file.
	node *clusterNode
}

// serveLockTimeout is how long serve waits for an admin command that has
// the database open; an admin command holds it for milliseconds.
const serveLockTimeout = 5 * time.Second

// openServer opens everything cfg describes. When it fails, what it
// opened is closed again.
func openServer(ctx context.Context, cfg Config, log *slog.Logger) (*server, error) {
	// serve made log safe already (then this is a no-op); a caller that
	// did not still gets every line sanitized and limited.
	log = safelog.Logger(log, cfg.LogRate)
	s := &server{log: log}
	if err := s.open(ctx, cfg); err != nil {
		s.Close()
		return nil, err
	}
	log.Info("feedmq serving", "version", version, "data", cfg.dataDir(), "storage", cfg.storageName(), "admin_socket", cfg.socketPath())
	s.logSetupLink()
	return s, nil
}

// logSetupLink logs, while no console password is set, the one line that
// carries a one-time link to choose it in the console: a user who just
// started serve opens it in a browser. The token in it lives only in this
// process's memory, so a restart ends it (and logs a new one). The link
// is on the --http listener, or on --https when only that one runs;
// nothing is logged without either, as there is no console.
func (s *server) logSetupLink() {
	scheme, addr := "http", s.addr("http")
	if addr == nil {
		scheme, addr = "https", s.addr("https")
	}
	if addr == nil {
		return
	}
	token, err := s.svc.NewSetupToken()
	if err != nil {
		// The broker serves on; the account needs repair (feedmq check).
		s.log.Error("owner account not readable; no console setup link", "err", err)
		return
	}
	if token == "" {
		return // a password is set
	}
	s.log.Info("no console password is set; open this link to choose one (it is valid once, until serve stops)",
		"url", setupURL(scheme, addr, token))
}

// setupURL is the console's setup link on the bound address addr. An
// unspecified address (all interfaces) becomes localhost, which at least
// works on the machine itself.
func setupURL(scheme string, addr net.Addr, token string) string {
	hostport := addr.String()
	if host, port, err := net.SplitHostPort(hostport); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "localhost"
		}
		hostport = net.JoinHostPort(host, port)
	}
	return scheme + "://" + hostport + "/console/setup?token=" + token
}

func (s *server) open(ctx context.Context, cfg Config) (err error) {
	log := s.log
	if c, err := admin.Dial(cfg.dataDir()); err == nil {
		c.Close()
		return fmt.Errorf("%w (its admin socket %s answers)", admin.ErrRunning, cfg.socketPath())
	}
	s.metrics = newMetrics()
	if s.db, err = openStore(ctx, cfg, s.metrics, log); err != nil {
		return err
	}
	s.pg, _ = s.db.(*postgres.DB)
	if s.pg != nil {
		if s.node, err = startNode(ctx, cfg, s.pg, log); err != nil {
			return err
		}
	}
	if s.svc, err = admin.NewLocal(ctx, s.db, cfg.authLimits()); err != nil {
		return err
	}
	opts := brokerOptions(cfg, log)
	opts.Cluster = s.node.brokerCluster()
	if rs, ok := s.db.(broker.RetainedStore); ok {
		opts.Retained = rs // shared by every node: PostgreSQL
	}
	if s.broker, err = broker.New(opts, s.db, s.svc.Registry); err != nil {
		return err
	}
	s.svc.Revoke = s.broker.Revoke
	if err = s.svc.WatchBindings(ctx, s.broker.SetBindings); err != nil {
		return err
	}
	if s.node != nil {
		if err = s.node.follow(ctx, s.svc, s.broker); err != nil {
			return err
		}
	}
	s.svc.Activity = s.broker.DeviceActivity
	if err = s.broker.Open(); err != nil {
		return err
	}
	if s.http, err = openHTTP(cfg, s); err != nil {
		return err
	}
	if s.sock, err = admin.Listen(cfg.dataDir(), s.svc, log.With("component", "admin")); err != nil {
		return err
	}
	s.stopPrune = startPruner(s.db, log.With("component", "retention"), pruneInterval)
	return nil
}

// serveStore is what serve needs of its database, the bbolt file or
// PostgreSQL: the admin service's store, the broker's appends (one at a
// time, without waiting, in batches), the HTTP API's counted and paged
// reads, and retention. Both stores have all of it, so nothing serve
// offers on one is missing on the other.
type serveStore interface {
	admin.Store
	channels.AsyncAppender
	channels.BatchAppender
	channels.EntryCounter
	httpd.TimePager
	Prune(ctx context.Context, now time.Time) (int, error)
}

var (
	_ serveStore           = (*storage.DB)(nil)
	_ serveStore           = (*postgres.DB)(nil)
	_ broker.RetainedStore = (*postgres.DB)(nil)
)

// openStore opens the database of cfg: the PostgreSQL database of
// storage, or else the data directory's file, which it locks.
func openStore(ctx context.Context, cfg Config, m *metrics, log *slog.Logger) (serveStore, error) {
	if !cfg.usesPostgres() {
		return storage.Open(cfg.dbPath(), storage.Options{Timeout: serveLockTimeout, OnCommit: m.observeCommit,
			OnError: func(err error) { log.Error("storage", "err", err) }})
	}
	// The data directory still holds this node's admin socket and MQTT
	// sessions.
	if err := os.MkdirAll(cfg.dataDir(), 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if _, err := os.Stat(cfg.dbPath()); err == nil {
		// Most likely an instance moved to PostgreSQL whose data was not
		// copied: serve would start on what the database holds.
		log.Warn("the data directory holds a bbolt database, which serve does not use with storage set; "+
			"copy its contents with feedmq db copy --from DATA_DIR --to URL if that is still to do", "file", cfg.dbPath())
	}
	octx, cancel := context.WithTimeout(ctx, storageOpenTimeout)
	defer cancel()
	db, err := cfg.openPostgres(octx, postgres.Options{RateLimit: time.Duration(cfg.RateLimit), OnCommit: m.observeCommit})
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", cfg.storageName(), err)
	}
	return db, nil
}

// storageOpenTimeout bounds serve's wait for PostgreSQL at start (its
// connection and the schema migration): an unreachable database is an
// error, not a hang.
const storageOpenTimeout = 30 * time.Second

// anonymousSessions maps sessions.max_anonymous, where 0 refuses them
// all, to the broker's option, where 0 means the default.
func anonymousSessions(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// sessionsFile, in the data directory, keeps retained messages (unless
// PostgreSQL keeps them, for every node) and persistent MQTT sessions
// (mochi's bbolt storage hook; a file apart from the feed database, which
// has its own write-ahead log).
const sessionsFile = "mqtt-sessions.db"

func brokerOptions(cfg Config, log *slog.Logger) broker.Options {
	return broker.Options{
		MQTTAddr:         cfg.Listeners.MQTT,
		MQTTSAddr:        cfg.mqttsAddr(),
		WSAddr:           cfg.Listeners.WS,
		WSSAddr:          cfg.wssAddr(),
		CertFile:         cfg.TLS.Cert,
		KeyFile:          cfg.TLS.Key,
		WSAllowedOrigins: cfg.WSAllowedOrigins,
		Anonymous:        cfg.Anonymous,
		IdleTimeout:      time.Duration(cfg.IdleTimeout),
		ConnectTimeout:   time.Duration(cfg.ConnectTimeout),
		Limits:           cfg.payloadLimits(),
		RateLimit:        time.Duration(cfg.RateLimit),
		MaxConnections:   cfg.MaxConnections,
		MaxSubscriptions: cfg.Limits.MaxSubscriptionsPerClient,
		AuthBackoff:      authBackoff(cfg.AuthBackoff),
		LogRate:          cfg.LogRate,
		SendQueueBytes:   cfg.SendQueueBytes,
		SendQueueTotal:   cfg.SendQueueTotal,
		Logger:           log,

		MaxFreeTopicLen:      cfg.Limits.MaxFreeTopicLength,
		RetainedMax:          cfg.Retained.MaxMessages,
		RetainedMaxBytes:     cfg.Retained.MaxBytes,
		SessionsPath:         filepath.Join(cfg.dataDir(), sessionsFile),
		SessionExpiry:        time.Duration(cfg.Sessions.Expiry),
		QueuedPerClient:      cfg.Sessions.MaxQueuedPerClient,
		QueuedTotal:          cfg.Sessions.MaxQueuedTotal,
		QueuedMaxBytes:       cfg.Sessions.MaxQueuedBytes,
		MaxAnonymousSessions: anonymousSessions(cfg.Sessions.MaxAnonymous),
	}
}

// authBackoff maps the config, where 0 failures means off, to the broker's
// options, where a negative count does.
func authBackoff(c AuthBackoffConfig) broker.AuthBackoff {
	if c.AfterFailures == 0 {
		return broker.AuthBackoff{AfterFailures: -1}
	}
	return broker.AuthBackoff{AfterFailures: c.AfterFailures, Initial: time.Duration(c.Initial), Max: time.Duration(c.Max)}
}

// Close shuts down in order: the admin socket (no new changes), the HTTP
// listener (requests in flight finish), the node's heartbeat and
// configuration follower, the broker (in-flight publishes are committed),
// the NATS link and the node's row, then the database.
func (s *server) Close() error {
	var errs []error
	if s.sock != nil {
		errs = append(errs, s.sock.Close())
	}
	if s.http != nil {
		errs = append(errs, s.http.Close())
	}
	if s.node != nil {
		s.node.stopWatching() // a shutdown must not fail closed
	}
	if s.broker != nil {
		errs = append(errs, s.broker.Close())
	}
	if s.node != nil {
		// After the broker's last entries went out on NATS.
		errs = append(errs, s.node.close())
	}
	if s.stopPrune != nil {
		s.stopPrune()
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	return errors.Join(errs...)
}
