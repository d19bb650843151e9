// Package broker runs feedmq's MQTT side: an embedded mochi-mqtt server,
// its listeners, and the hooks that authenticate connections, authorize
// every publish and subscribe against auth.Registry, turn accepted
// publishes into stored entries and fan them out to subscribers.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"go.etcd.io/bbolt"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/safelog"
)

// Options configures a Server. Zero values take the defaults noted.
type Options struct {
	// MQTTAddr is the TCP listen address; "" or "off" disables it.
	MQTTAddr string
	// MQTTSAddr is the MQTT over TLS listen address; "" or "off" disables
	// it. It needs CertFile and KeyFile.
	MQTTSAddr string
	// WSAddr is the MQTT over WebSocket listen address (path /mqtt only);
	// "" or "off" disables it.
	WSAddr string
	// WSSAddr is the MQTT over secure WebSocket listen address (path
	// /mqtt); "" or "off" disables it. It needs CertFile and KeyFile.
	WSSAddr string
	// CertFile and KeyFile are the PEM certificate (chain) and private key
	// of the TLS listeners (TLS 1.2 or later) and of TLSConfig, read at
	// Open when both are set and again by ReloadCertificate.
	CertFile, KeyFile string
	// WSAllowedOrigins lists the web origins ("https://app.example.com")
	// whose pages may connect over WebSocket; "*" allows any. Requests
	// without an Origin header (MQTT libraries) are always allowed, and
	// so are same-origin pages under an IP address, localhost or the host
	// name in WSAddr/WSSAddr (not others: DNS rebinding).
	WSAllowedOrigins []string
	// Anonymous allows connections without a username (write/read keys in
	// topics and public channels only).
	Anonymous bool
	// IdleTimeout drops a keepalive-0 connection after this long without a
	// packet. Default 1h.
	IdleTimeout time.Duration
	// ConnectTimeout closes a connection that sends no CONNECT. Default 10s.
	ConnectTimeout time.Duration
	// WriteTimeout cuts off a client that does not read what is sent to
	// it. Default 10s.
	WriteTimeout time.Duration
	// Limits bounds publish payloads. Default channels.DefaultLimits().
	Limits channels.Limits
	// MaxPacketSize is the largest MQTT packet accepted. Default 64 KiB, or
	// more when Limits.MaxPayload needs it.
	MaxPacketSize int
	// RateLimit is the minimum interval between two entries of a channel
	// (ThingSpeak's free tier: 15s); a channel's own RateLimit overrides
	// it. 0 means no limit. Writes too soon are refused, over MQTT and
	// HTTP alike, and consume no entry ID.
	RateLimit time.Duration
	// MaxConnections caps live MQTT connections over all listeners, and
	// separately the sockets that have not sent CONNECT yet; 0 means no
	// limit. Past it only anonymous CONNECTs are refused: a device has
	// one client ID, so it holds at most one connection anyway (a second
	// one takes the first over), and anonymous clients at the cap must
	// not lock the devices out.
	MaxConnections int
	// MaxSubscriptions caps the filters one client holds at a time;
	// filters past it are refused (SUBACK 0x97 in MQTT 5, 0x80 in 3.1.1).
	// A filter the client already holds does not count again, and an
	// UNSUBSCRIBE frees its slot. Default 100; negative means no limit.
	MaxSubscriptions int
	// SendQueueBytes caps the bytes waiting to be written to one
	// subscriber (one that reads slower than entries arrive), and
	// SendQueueTotal bounds them over all subscribers: past it, only a
	// subscriber under an equal share of it queues more, up to twice it
	// (so stalled subscribers cannot starve reading ones); deliveries
	// beyond are dropped and counted. Defaults 1 MiB and 4 MiB.
	SendQueueBytes int
	SendQueueTotal int64
	// AuthBackoff throttles failed CONNECTs per source address.
	AuthBackoff AuthBackoff
	// Logger receives structured logs. Default slog.Default(). Every
	// string in them is cut short and API keys are masked
	// (internal/safelog). A logger already made by safelog is used as it
	// is, with its own rate limit, shared with whatever else logs to it.
	Logger *slog.Logger
	// LogRate caps the lines logged per second, over everything the
	// broker logs, after a burst of ten seconds' worth; what is dropped
	// is counted in a summary line. 0 means no limit. It is not used
	// when Logger is already a safelog logger.
	LogRate int

	// MaxFreeTopicLen bounds free topics and filters (outside channels/,
	// devices/ and $), in bytes. Default DefaultMaxFreeTopicLen.
	MaxFreeTopicLen int
	// RetainedMax and RetainedMaxBytes bound the retained messages of
	// free topics, in number and in payload bytes; a retained publish
	// past either is delivered but not retained (and logged). Defaults
	// 10000 and 16 MiB.
	RetainedMax      int
	RetainedMaxBytes int64
	// Retained, when set, keeps the retained messages of free topics
	// instead of the sessions file: a database every node of a cluster
	// shares, so that each node sends new subscribers the same ones.
	// Persistent sessions stay in the node's sessions file.
	Retained RetainedStore
	// SessionsPath is the bbolt file that keeps retained messages and
	// persistent sessions (free-topic subscriptions and queued QoS 1/2
	// messages) across restarts; "" keeps them in memory only.
	SessionsPath string
	// SessionExpiry is how long a persistent session lives after its
	// client disconnects: always for MQTT 3.1.1 (CleanSession=0), at most
	// for MQTT 5 (a longer session expiry interval is cut to it). Default
	// 7 days.
	SessionExpiry time.Duration
	// QueuedPerClient and QueuedTotal bound the QoS 1/2 messages waiting
	// for (or unacknowledged by) one client and over all clients; past
	// either, the oldest are dropped and counted. Defaults 1000 and
	// 100000.
	QueuedPerClient int
	QueuedTotal     int
	// QueuedMaxBytes bounds the payload bytes of those messages over all
	// clients, checked every second; past it the largest queues lose
	// their oldest first. Default 64 MiB.
	QueuedMaxBytes int64
	// MaxAnonymousSessions caps the persistent sessions of anonymous
	// clients (anyone may open one); past it an anonymous CONNECT asking
	// for one is refused. Default 100; negative: none at all.
	MaxAnonymousSessions int

	// Cluster links this node to others sharing its database; nil (one
	// node) fans entries out here only.
	Cluster Cluster
}

func (o *Options) ensureDefaults() {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Hour
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	def := channels.DefaultLimits()
	if o.Limits.MaxPayload <= 0 {
		o.Limits.MaxPayload = def.MaxPayload
	}
	if o.Limits.MaxValueLen <= 0 {
		o.Limits.MaxValueLen = def.MaxValueLen
	}
	if o.MaxPacketSize <= 0 {
		o.MaxPacketSize = max(64<<10, o.Limits.MaxPayload+4096)
	}
	if o.MaxSubscriptions == 0 {
		o.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SendQueueBytes <= 0 {
		o.SendQueueBytes = 1 << 20
	}
	if o.SendQueueTotal <= 0 {
		o.SendQueueTotal = 4 << 20
	}
	if o.MaxFreeTopicLen <= 0 {
		o.MaxFreeTopicLen = DefaultMaxFreeTopicLen
	}
	o.MaxFreeTopicLen = min(o.MaxFreeTopicLen, 65535)
	if o.RetainedMax <= 0 {
		o.RetainedMax = 10000
	}
	if o.RetainedMaxBytes <= 0 {
		o.RetainedMaxBytes = 16 << 20
	}
	if o.SessionExpiry <= 0 {
		o.SessionExpiry = 7 * 24 * time.Hour
	}
	if o.QueuedPerClient <= 0 {
		o.QueuedPerClient = 1000
	}
	if o.QueuedTotal <= 0 {
		o.QueuedTotal = 100000
	}
	if o.QueuedMaxBytes <= 0 {
		o.QueuedMaxBytes = 64 << 20
	}
	if o.MaxAnonymousSessions == 0 {
		o.MaxAnonymousSessions = 100
	}
}

// DefaultMaxFreeTopicLen is Options.MaxFreeTopicLen when unset: room for
// any topic Home Assistant, Zigbee2MQTT or Tasmota use, far below MQTT's
// 65535, so that a topic alias or a retained topic pins little memory.
const DefaultMaxFreeTopicLen = 1024

// DefaultMaxSubscriptions is Options.MaxSubscriptions when unset: far more
// filters than any device needs (one per channel and format), few enough
// that no client can grow the topic index without bound.
const DefaultMaxSubscriptions = 100

// maxTopicAliases is the Topic Alias Maximum a CONNACK grants MQTT 5
// clients.
const maxTopicAliases = 16

// Server is an MQTT broker bound to a feed store and a registry.
type Server struct {
	opts     Options
	store    channels.Store
	registry *auth.Registry
	log      *slog.Logger
	mochi    *mqtt.Server
	// free carries free-topic messages to and from the other nodes, and
	// remote is the inline client their messages are published as here;
	// both nil outside a cluster (freefwd.go).
	free   FreeCluster
	remote *mqtt.Client

	listeners map[string]boundListener // by ID ("mqtt", "mqtts", "ws", "wss"), bound in Open
	certs     *certHolder              // the TLS certificate; nil without TLS listeners
	origins   originPolicy             // who may connect over WebSocket
	// mochiReads leaves every packet to mochi (readpath.go): for
	// benchmarks that compare the two.
	mochiReads bool

	sessions sync.Map   // *mqtt.Client -> *session, read on every delivery
	router   router     // subscribers per delivered topic (fanout.go)
	topics   topicCache // each channel's subscribe topics (topics.go)
	byConn   sync.Map   // net.Conn -> *mqtt.Client, to end sessions mochi drops silently
	live     atomic.Int64
	queued   atomic.Int64 // bytes waiting in every subscriber's sender (fanout.go)
	// backlogged counts the senders with bytes waiting (fanout.go).
	backlogged atomic.Int64
	// unconnected lists sockets that have not sent CONNECT (listener.go).
	unconnected pendingSockets
	endMu       sync.Mutex
	ends        chan struct{} // closed when a session ends; nil while nobody waits (awaitPrevious)
	throttle    *throttle
	rates       rateLimiter
	handlers    *handlerPool // goroutines serving TCP connections (handlers.go)

	// closing is set by Close to refuse new publishes and shorten writes;
	// publishing holds gate for reading so Close can wait for commits.
	closing atomic.Bool
	gate    sync.RWMutex
	// failClosed refuses CONNECTs (SetFailClosed).
	failClosed atomic.Bool
	// pending counts entries queued with commitAsync and not yet fanned
	// out; fanq carries them from the store's writer to fanOutLoop.
	pending sync.WaitGroup
	fanq    chan *queuedEntry
	// inCommit counts the feed commits under way: queued ones not yet
	// fanned out, and QoS 1 ones a reader waits for (write).
	inCommit atomic.Int64
	// unacked counts the PUBACKs of QoS 1 feed publishes not yet written
	// (puback.go).
	unacked atomic.Int64
	stats   stats

	// Extra fan-out topics and who listens to them (extra.go).
	legacyCount atomic.Int64
	sensorCount atomic.Int64
	fieldCount  atomic.Int64 // filters that may match channels/<id>/subscribe/fields/field<N>
	namesMu     sync.Mutex
	sensorNames map[string]int // exact name-form sensor filters -> subscriptions

	// Each device's record, and the start its times count from
	// (activity.go).
	activity sync.Map // device ID -> *deviceActivity
	started  time.Time

	// In-process entry watchers (watch.go).
	watch watchers

	// Free topics (free.go): retained message sizes, the store that keeps
	// sessions and retained messages (nil: memory only), and the sweep
	// that bounds queued messages over all clients.
	retained  retainedIndex
	shared    *sharedRetained // nil without Options.Retained
	sessStore *sessionStore
	sweepStop chan struct{}
	// queueMu orders dropOldest against orderQueued: a message one
	// drops must not be put back by the other.
	queueMu   sync.Mutex
	sweepDone chan struct{}
	wills     willHold // MQTT 5 wills waiting for their delay (willdelay.go)
	// Bindings of free topics to channels (bind.go).
	binds bindState
}

// New builds a server; it binds nothing until Open.
func New(opts Options, store channels.Store, reg *auth.Registry) (*Server, error) {
	if store == nil || reg == nil {
		return nil, errors.New("broker: a store and a registry are required")
	}
	opts.ensureDefaults()
	origins, err := newOriginPolicy(opts.WSAllowedOrigins, opts.WSAddr, opts.WSSAddr)
	if err != nil {
		return nil, fmt.Errorf("broker: websocket allowed origins: %w", err)
	}
	// A logger its caller already made safe keeps its own limiter.
	logs := safelog.New(opts.Logger.Handler(), opts.LogRate)
	s := &Server{
		opts: opts, store: store, registry: reg, log: slog.New(logs),
		listeners: make(map[string]boundListener), origins: origins,
		sensorNames: make(map[string]int),
		throttle:    newThrottle(opts.AuthBackoff),
		handlers:    newHandlerPool(),
		fanq:        make(chan *queuedEntry, 1024),
		started:     time.Now(),
	}
	go s.fanOutLoop()
	s.stats.init()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(opts.MaxPacketSize)
	// Free topics keep persistent sessions (anonymous ones capped: see
	// OnConnect) up to this long after their client left; MQTT 3.1.1 sessions get
	// exactly this. Entries of the reserved trees are fanned out at QoS 0
	// and never queued.
	caps.MaximumSessionExpiryInterval = uint32(min(opts.SessionExpiry/time.Second, math.MaxUint32))
	// mochi's default drops every retained and queued message a day
	// after it was published, whatever its own expiry: Home Assistant's
	// retained discovery configs must stay until replaced.
	caps.MaximumMessageExpiryInterval = 0
	// QueuedPerClient is enforced by dropping the oldest (OnQosPublish);
	// mochi's own cap refuses the newest, so it sits just above ours.
	caps.MaximumInflight = uint16(min(opts.QueuedPerClient+16, math.MaxUint16))
	// mochi's send queue (a channel of this many packet pointers, made for
	// every client: 64 KiB at mochi's default of 8192) carries what mochi
	// itself routes: free-topic publishes, retained messages and wills.
	// Entries go out through our own senders (fanout.go), and
	// acknowledgements of the reserved trees are written directly. A
	// subscriber further behind than this loses QoS 0 messages (counted
	// in OnPublishDropped); 256 slots cost 2 KiB of every connection.
	caps.MaximumClientWritesPending = maxWritesPending
	caps.SharedSubAvailable = 0
	// Each inbound topic alias keeps its publish's whole packet buffer
	// alive for the connection's life: at mochi's default of 65535, one
	// client could pin gigabytes. A device publishes to a handful of
	// topics; a larger alias is a protocol error (DISCONNECT 0x94).
	caps.TopicAliasMaximum = maxTopicAliases
	s.mochi = mqtt.New(&mqtt.Options{
		InlineClient:            true,
		ClientNetReadBufferSize: 1024, // sensor packets are small
		// A subscriber with packets queued gets them in one write of up
		// to this size instead of a syscall each; the buffer exists
		// only while packets are queued.
		ClientNetWriteBufferSize: 8192,
		Capabilities:             caps,
		Logger:                   slog.New(mochiHandler{logs}),
		SysTopicResendInterval:   math.MaxInt32, // nobody may read $SYS
	})
	if opts.Cluster != nil {
		if err := opts.Cluster.Attach(s.fanOut, s.takeoverRemote); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	if opts.Retained != nil {
		s.shared = newSharedRetained(s, opts.Retained)
		if err := s.mochi.AddHook(&scanHook{r: s.shared}, nil); err != nil {
			return nil, fmt.Errorf("broker: add hook: %w", err)
		}
	}
	if err := s.mochi.AddHook(&hook{srv: s}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	if opts.SessionsPath != "" {
		if err := checkSessionsFile(opts.SessionsPath); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		st := &sessionStore{srv: s, Hook: new(bolt.Hook), stored: make(map[string]bool)}
		if err := s.mochi.AddHook(st, &bolt.Options{Path: opts.SessionsPath,
			Options: &bbolt.Options{Timeout: time.Second}}); err != nil {
			return nil, fmt.Errorf("broker: open %s: %w", opts.SessionsPath, err)
		}
		s.sessStore = st
	}
	if fc, ok := opts.Cluster.(FreeCluster); ok {
		// Last, so that every hook vets what other nodes send. The
		// client is not among mochi's clients: it never connects.
		s.remote = s.mochi.NewClient(nil, "cluster", mqtt.InlineClientId, true)
		s.remote.Properties.ProtocolVersion = 5
		if err := s.mochi.AddHook(&forwardHook{srv: s}, nil); err != nil {
			return nil, fmt.Errorf("broker: add hook: %w", err)
		}
		s.free = fc
		if err := fc.AttachFree(s.deliverRemoteFree, opts.MaxPacketSize); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	return s, nil
}

// Open binds every configured listener and starts serving. A port already
// in use is reported here, not later.
func (s *Server) Open() error {
	if err := s.open(); err != nil {
		s.closeListeners()
		if s.shared != nil {
			s.shared.stop()
		}
		return err
	}
	return nil
}

func (s *Server) open() error {
	o := s.opts
	tlsNeeded := enabled(o.MQTTSAddr) || enabled(o.WSSAddr)
	if tlsNeeded && (o.CertFile == "" || o.KeyFile == "") {
		return errors.New("broker: the mqtts and wss listeners need a certificate and key file")
	}
	// A certificate is read whenever one is given: TLSConfig shares it
	// with listeners outside the broker.
	if o.CertFile != "" && o.KeyFile != "" {
		s.certs = &certHolder{certFile: o.CertFile, keyFile: o.KeyFile, log: s.log}
		if err := s.certs.load(); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	for _, l := range []struct {
		id, addr string
		new      func(net.Listener) boundListener
	}{
		{"mqtt", o.MQTTAddr, func(ln net.Listener) boundListener { return newListener("mqtt", ln, nil, s) }},
		{"mqtts", o.MQTTSAddr, func(ln net.Listener) boundListener {
			return newListener("mqtts", ln, s.certs.tlsConfig(), s)
		}},
		{"ws", o.WSAddr, func(ln net.Listener) boundListener { return newWSListener("ws", ln, nil, s) }},
		{"wss", o.WSSAddr, func(ln net.Listener) boundListener {
			return newWSListener("wss", ln, s.certs.tlsConfig("http/1.1"), s)
		}},
	} {
		if !enabled(l.addr) {
			continue
		}
		ln, err := mqttListenConfig.Listen(context.Background(), "tcp", l.addr)
		if err != nil {
			return fmt.Errorf("broker: %s listener: %w", l.id, err)
		}
		bl := l.new(ln)
		if err := s.mochi.AddListener(bl); err != nil {
			bl.release()
			return fmt.Errorf("broker: %s listener: %w", l.id, err)
		}
		s.listeners[l.id] = bl
	}
	// Retained messages are in the index before the first client
	// subscribes.
	if s.shared != nil {
		if err := s.shared.start(); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	if err := s.mochi.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	s.startSweep()
	return nil
}

// mqttListenConfig turns off the TCP keepalive Go sets on every accepted
// connection by default: four setsockopt calls per connect (6% of the
// broker's CPU in a connect storm) for what MQTT's own keepalive and the
// idle timeout already do, as in Mosquitto.
var mqttListenConfig = net.ListenConfig{KeepAlive: -1}

// enabled reports whether a listen address turns its listener on.
func enabled(addr string) bool { return addr != "" && addr != "off" }

// closeListeners releases sockets bound by a failed Open.
func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.release()
	}
}

// Addr returns the bound address of a listener ("mqtt", "mqtts", "ws" or
// "wss"), or nil when it is not running.
func (s *Server) Addr(id string) net.Addr {
	if l, ok := s.listeners[id]; ok {
		return l.addr()
	}
	return nil
}

// Close refuses new publishes, disconnects every client after in-flight
// publishes are committed, and stops the listeners. It does not close the
// store.
func (s *Server) Close() error {
	s.gate.Lock()
	already := s.closing.Swap(true)
	s.gate.Unlock()
	if already {
		return nil
	}
	// No new write can start now; those queued are committed and fanned
	// out before the clients are disconnected.
	s.pending.Wait()
	s.flushAcks(s.writeTimeout())
	s.stopSweep()
	err := s.mochi.Close()
	if s.shared != nil {
		s.shared.stop()
	}
	close(s.fanq)
	return err
}

// Revoke closes every live connection of a device and discards its
// persistent sessions: after a password reset or a deletion, nothing that
// authenticated with the old credentials may stay connected or resume.
func (s *Server) Revoke(deviceID uint64) {
	if deviceID == auth.Anonymous {
		return
	}
	s.sessions.Range(func(_, v any) bool {
		if ss := v.(*session); ss.device == deviceID {
			s.log.Info("closing connection: credentials revoked", "client", ss.cl.ID, "device", deviceID)
			// Nothing of what it authenticated for stays: no will, no
			// persistent session (OnDisconnect discards it).
			ss.revoked.Store(true)
			atomic.StoreUint32(&ss.cl.Properties.Will.Flag, 0)
			ss.cl.Stop(errRevoked)
		}
		return true
	})
	s.discardSessions(deviceID)
	s.wills.forget(deviceID)
	if !s.registry.HasDevice(deviceID) {
		s.activity.Delete(deviceID) // deleted: forget it
	}
}

var errRevoked = errors.New("credentials revoked")

// Publish writes an entry to channel ch on behalf of a non-MQTT source (the
// HTTP API): the same commit-then-fan-out path as an MQTT publish.
func (s *Server) Publish(ctx context.Context, e *channels.Entry) error {
	return s.commit(ctx, e)
}

// PublishBatch writes the entries of one channel (all with the same
// ChannelID) as one batch, for the HTTP bulk write: the store commits all
// or none, with consecutive entry IDs in the order given, and only then
// are they fanned out, in that order. The batch counts as one write
// against the channel's rate limit: a bulk write exists to send what a
// device collected between its writes.
func (s *Server) PublishBatch(ctx context.Context, es []*channels.Entry) error {
	return s.commitBatch(ctx, es)
}
