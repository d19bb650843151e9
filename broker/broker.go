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

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Options configures a Server. Zero values take the defaults noted.
type Options struct {
	// MQTTAddr is the TCP listen address; "" or "off" disables it.
	MQTTAddr string
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
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Server is an MQTT broker bound to a feed store and a registry.
type Server struct {
	opts     Options
	store    channels.Store
	registry *auth.Registry
	log      *slog.Logger
	mochi    *mqtt.Server

	listeners map[string]*listener // by ID, bound in Open

	sessions sync.Map // *mqtt.Client -> *session, read on every delivery

	// closing is set by Close to refuse new publishes and shorten writes;
	// publishing holds gate for reading so Close can wait for commits.
	closing atomic.Bool
	gate    sync.RWMutex
	stats   stats
}

// New builds a server; it binds nothing until Open.
func New(opts Options, store channels.Store, reg *auth.Registry) (*Server, error) {
	if store == nil || reg == nil {
		return nil, errors.New("broker: a store and a registry are required")
	}
	opts.ensureDefaults()
	s := &Server{
		opts: opts, store: store, registry: reg, log: opts.Logger,
		listeners: make(map[string]*listener),
	}
	s.stats.init()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(opts.MaxPacketSize)
	// Sessions end with the connection (clean sessions only), and a slow
	// subscriber may queue little: entries are fanned out at QoS 0.
	caps.MaximumSessionExpiryInterval = 0
	caps.MaximumClientWritesPending = 1024
	caps.SharedSubAvailable = 0
	s.mochi = mqtt.New(&mqtt.Options{
		InlineClient:           true,
		Capabilities:           caps,
		Logger:                 slog.New(minLevel{opts.Logger.Handler(), slog.LevelError}),
		SysTopicResendInterval: math.MaxInt32, // nobody may read $SYS
	})
	if err := s.mochi.AddHook(&hook{srv: s}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	return s, nil
}

// Open binds every configured listener and starts serving. A port already
// in use is reported here, not later.
func (s *Server) Open() error {
	if addr := s.opts.MQTTAddr; addr != "" && addr != "off" {
		if err := s.addListener("mqtt", addr); err != nil {
			return err
		}
	}
	if err := s.mochi.Serve(); err != nil {
		s.closeListeners()
		return fmt.Errorf("broker: serve: %w", err)
	}
	return nil
}

func (s *Server) addListener(id, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.closeListeners()
		return fmt.Errorf("broker: %s listener: %w", id, err)
	}
	l := newListener(id, ln, s)
	if err := s.mochi.AddListener(l); err != nil {
		ln.Close()
		s.closeListeners()
		return fmt.Errorf("broker: %s listener: %w", id, err)
	}
	s.listeners[id] = l
	return nil
}

// closeListeners releases sockets bound by a failed Open.
func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// Addr returns the bound address of a listener ("mqtt"), or nil when it is
// not running.
func (s *Server) Addr(id string) net.Addr {
	if l, ok := s.listeners[id]; ok {
		return l.ln.Addr()
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
	return s.mochi.Close()
}

// Revoke closes every live connection of a device: after a password reset
// or a deletion, nothing that authenticated with the old credentials may
// stay connected.
func (s *Server) Revoke(deviceID uint64) {
	if deviceID == auth.Anonymous {
		return
	}
	s.sessions.Range(func(_, v any) bool {
		if ss := v.(*session); ss.device == deviceID {
			s.log.Info("closing connection: credentials revoked", "client", ss.cl.ID, "device", deviceID)
			ss.cl.Stop(errRevoked)
		}
		return true
	})
}

var errRevoked = errors.New("credentials revoked")

// Publish writes an entry to channel ch on behalf of a non-MQTT source (the
// HTTP API): the same commit-then-fan-out path as an MQTT publish.
func (s *Server) Publish(ctx context.Context, e *channels.Entry) error {
	return s.commit(ctx, e)
}

// minLevel drops records below a level. mochi logs per connection and per
// packet at info and warn (every keepalive-0 device earns a warning); the
// hook logs those events itself, once, with feedmq's fields.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.level && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.level}
}

func (m minLevel) WithGroup(g string) slog.Handler {
	return minLevel{m.Handler.WithGroup(g), m.level}
}
