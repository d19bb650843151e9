package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// Config is feedmq's configuration: defaults, then the YAML file given with
// --config, then the flags the user set. configs/feedmq.yaml documents
// every key.
type Config struct {
	// DataDir holds the database and the admin socket; "" means
	// $STATE_DIRECTORY when set (systemd), else ./feedmq-data.
	DataDir   string `yaml:"data_dir"`
	LogLevel  string `yaml:"log_level"`  // debug, info, warn or error
	LogFormat string `yaml:"log_format"` // text or json

	// Storage is where channels, devices and feeds live: "" for the bbolt
	// file in the data directory, or the postgres:// (postgresql://) URL
	// of a PostgreSQL database, which several nodes may share.
	Storage string `yaml:"storage"`
	// StoragePasswordFile names a file holding the database password, so
	// that it stays out of the configuration file.
	StoragePasswordFile string `yaml:"storage_password_file"`
	// storagePassword is what StoragePasswordFile holds, read by Validate.
	storagePassword string

	Listeners ListenersConfig `yaml:"listeners"`
	TLS       TLSConfig       `yaml:"tls"`
	// WSAllowedOrigins lists the web origins (scheme://host[:port]) whose
	// pages may connect over ws/wss; "*" allows any. Clients without an
	// Origin header always may, and so may same-origin pages under an IP
	// address, localhost or the listeners' configured host names.
	WSAllowedOrigins []string `yaml:"ws_allowed_origins"`

	// Anonymous allows connections without a username.
	Anonymous      bool     `yaml:"anonymous"`
	IdleTimeout    Duration `yaml:"idle_timeout"`
	ConnectTimeout Duration `yaml:"connect_timeout"`

	Limits LimitsConfig `yaml:"limits"`

	// RateLimit is the minimum interval between two entries of a channel;
	// 0 means none (ThingSpeak's free tier uses 15s).
	RateLimit Duration `yaml:"rate_limit"`
	// MaxConnections caps live MQTT connections (past it, anonymous
	// CONNECTs are refused; devices always get in), and separately sockets
	// that have not sent CONNECT yet; 0 means no limit.
	MaxConnections int               `yaml:"max_connections"`
	AuthBackoff    AuthBackoffConfig `yaml:"auth_backoff"`
	// LogRate caps serve's log lines per second, MQTT, HTTP and admin
	// together (after a burst of ten seconds' worth); 0 means no limit.
	LogRate int `yaml:"log_rate"`
	// SendQueueBytes caps the bytes waiting for one subscriber and
	// SendQueueTotal over all subscribers (past it, a subscriber under an
	// equal share still queues, up to twice it); deliveries beyond are
	// dropped.
	SendQueueBytes int   `yaml:"send_queue_bytes"`
	SendQueueTotal int64 `yaml:"send_queue_total"`

	HTTP HTTPConfig `yaml:"http"`

	Retained RetainedConfig `yaml:"retained"`
	Sessions SessionsConfig `yaml:"sessions"`

	// Cluster lists the NATS servers (comma-separated URLs) through which
	// nodes sharing a PostgreSQL storage exchange entries; "" runs one
	// node. ClusterName prefixes the NATS subjects; NodeName names this
	// node, unique among the nodes of the database ("" for the host
	// name). ClusterTLS and ClusterCredentials secure NATS (clustercfg.go).
	Cluster            string           `yaml:"cluster"`
	ClusterName        string           `yaml:"cluster_name"`
	NodeName           string           `yaml:"node_name"`
	ClusterTLS         ClusterTLSConfig `yaml:"cluster_tls"`
	ClusterCredentials string           `yaml:"cluster_credentials"`
}

// RetainedConfig bounds the retained messages of free topics.
type RetainedConfig struct {
	MaxMessages int   `yaml:"max_messages"` // retained topics held
	MaxBytes    int64 `yaml:"max_bytes"`    // their payloads, together
}

// SessionsConfig bounds persistent MQTT sessions.
type SessionsConfig struct {
	// Expiry: how long a session lives after its client left (MQTT
	// 3.1.1 always, MQTT 5 at most).
	Expiry             Duration `yaml:"expiry"`
	MaxQueuedPerClient int      `yaml:"max_queued_per_client"` // QoS 1/2 messages held for one client
	MaxQueuedTotal     int      `yaml:"max_queued_total"`      // over all clients
	MaxQueuedBytes     int64    `yaml:"max_queued_bytes"`      // their payloads, over all clients
	MaxAnonymous       int      `yaml:"max_anonymous"`         // sessions of anonymous clients
}

// HTTPConfig bounds what slow or many HTTP clients can hold.
type HTTPConfig struct {
	// MaxFeedReads caps feeds and fields reads served at once; 0: no cap.
	MaxFeedReads int `yaml:"max_feed_reads"`
	// MaxBodyBytesInFlight bounds the request body bytes (writes,
	// management requests, console forms) read at once; 0: no bound.
	MaxBodyBytesInFlight int64 `yaml:"max_body_bytes_in_flight"`
	// MaxSSEStreams caps dashboard event streams open at once; 0: no cap.
	MaxSSEStreams int `yaml:"max_sse_streams"`
	// WriteTimeout cuts off a client that takes no part of a feed answer
	// or event stream for that long.
	WriteTimeout Duration `yaml:"write_timeout"`
	// EmbedPollInterval is how often a dynamic chart or widget page asks
	// for new entries.
	EmbedPollInterval Duration `yaml:"embed_poll_interval"`
}

// AuthBackoffConfig throttles failed logins per source address.
type AuthBackoffConfig struct {
	AfterFailures int      `yaml:"after_failures"` // 0 disables throttling
	Initial       Duration `yaml:"initial"`
	Max           Duration `yaml:"max"`
}

// ListenersConfig holds listen addresses; "off" disables a listener.
type ListenersConfig struct {
	MQTT  string `yaml:"mqtt"`
	WS    string `yaml:"ws"`
	MQTTS string `yaml:"mqtts"` // "" means :8883 when tls.cert is set, else off
	WSS   string `yaml:"wss"`   // "" means :8084 when tls.cert is set, else off
	HTTP  string `yaml:"http"`
	// HTTPS serves what HTTP does over TLS with tls.cert; "" means off.
	HTTPS string `yaml:"https"`
}

// TLSConfig names the certificate of the TLS listeners.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// LimitsConfig caps what one instance holds and accepts.
type LimitsConfig struct {
	MaxDevices           int `yaml:"max_devices"`             // 0: no limit
	MaxChannelsPerDevice int `yaml:"max_channels_per_device"` // 0: no limit
	MaxPayload           int `yaml:"max_payload"`             // bytes per publish
	MaxValueLen          int `yaml:"max_value_len"`           // characters per value
	// MaxSubscriptionsPerClient caps the filters one MQTT client holds;
	// from 1 to maxSubscriptionsLimit (no "unlimited": every filter costs
	// memory in the topic index).
	MaxSubscriptionsPerClient int `yaml:"max_subscriptions_per_client"`
	// MaxFreeTopicLength bounds topics and filters outside channels/,
	// devices/ and $, in bytes (1 to 65535, MQTT's own limit).
	MaxFreeTopicLength int `yaml:"max_free_topic_length"`
	// Bindings of free topics to channels; 0: no limit.
	MaxBindingsPerChannel int `yaml:"max_bindings_per_channel"`
	MaxBindings           int `yaml:"max_bindings"`
}

// maxSubscriptionsLimit bounds limits.max_subscriptions_per_client.
const maxSubscriptionsLimit = 10000

// Default listener addresses of DESIGN §2 and §6.
const (
	defaultMQTTS = ":8883"
	defaultWSS   = ":8084"
	off          = "off"
)

// maxPayloadLimit bounds limits.max_payload: far above any sensor
// reading, far below what would let one client exhaust memory.
const maxPayloadLimit = 1 << 20

// DefaultConfig returns the configuration used when no file and no flag
// says otherwise.
func DefaultConfig() Config {
	al, cl := auth.DefaultLimits(), channels.DefaultLimits()
	return Config{
		LogLevel:  "info",
		LogFormat: "text",
		Listeners: ListenersConfig{MQTT: ":1883", WS: ":8083", HTTP: ":8080"},
		Anonymous: true,

		WSAllowedOrigins: []string{},

		IdleTimeout:    Duration(time.Hour),
		ConnectTimeout: Duration(10 * time.Second),
		AuthBackoff:    AuthBackoffConfig{AfterFailures: 5, Initial: Duration(time.Second), Max: Duration(5 * time.Minute)},
		HTTP: HTTPConfig{MaxFeedReads: 32, MaxBodyBytesInFlight: 8 << 20, MaxSSEStreams: 128, WriteTimeout: Duration(20 * time.Second),
			EmbedPollInterval: Duration(httpd.DefaultEmbedPoll)},
		MaxConnections: 1000,
		LogRate:        20,
		SendQueueBytes: 1 << 20,
		SendQueueTotal: 4 << 20,
		Limits: LimitsConfig{
			MaxDevices: al.MaxDevices, MaxChannelsPerDevice: al.MaxChannelsPerDevice,
			MaxPayload: cl.MaxPayload, MaxValueLen: cl.MaxValueLen,
			MaxSubscriptionsPerClient: broker.DefaultMaxSubscriptions,
			MaxFreeTopicLength:        broker.DefaultMaxFreeTopicLen,
			MaxBindingsPerChannel:     al.MaxBindingsPerChannel, MaxBindings: al.MaxBindings,
		},
		Retained: RetainedConfig{MaxMessages: 10000, MaxBytes: 16 << 20},
		Sessions: SessionsConfig{Expiry: Duration(7 * 24 * time.Hour), MaxQueuedPerClient: 1000, MaxQueuedTotal: 100000,
			MaxQueuedBytes: 64 << 20, MaxAnonymous: 100},
		ClusterName: defaultClusterName,
	}
}

// ReadConfigFile decodes the YAML file at path over c. Unknown keys and
// values of the wrong type are errors that name the key and line.
func ReadConfigFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := decodeConfig(b, c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// decodeConfig decodes YAML b over c with unknown keys refused.
func decodeConfig(b []byte, c *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil // empty file: nothing overrides the defaults
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return namedErrors(te, keyPaths(&doc))
	}
	return err
}

var (
	lineRE         = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type`)
)

// namedErrors rewrites yaml.v3's "line N: ..." messages so that each
// names the dotted key it is about.
func namedErrors(te *yaml.TypeError, paths map[int]string) error {
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		sub := lineRE.FindStringSubmatch(m)
		if sub == nil {
			msgs = append(msgs, m)
			continue
		}
		line, _ := strconv.Atoi(sub[1])
		key, msg := paths[line], sub[2]
		if u := unknownFieldRE.FindStringSubmatch(msg); u != nil {
			if key == "" {
				key = u[1]
			}
			msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q (see configs/feedmq.yaml for the valid keys)", line, key))
			continue
		}
		if key == "" {
			msgs = append(msgs, m)
			continue
		}
		msgs = append(msgs, fmt.Sprintf("line %d: %s: %s", line, key, msg))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// keyPaths maps line numbers of a YAML document to the dotted path of the
// key written there, e.g. 12 -> "limits.max_devices".
func keyPaths(doc *yaml.Node) map[int]string {
	paths := make(map[int]string)
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				path := prefix + k.Value
				if _, ok := paths[k.Line]; !ok {
					paths[k.Line] = path
				}
				if _, ok := paths[v.Line]; !ok && v.Kind == yaml.ScalarNode {
					paths[v.Line] = path
				}
				walk(v, path+".")
			}
		}
	}
	walk(doc, "")
	return paths
}

// Validate checks every value and names the key of the first bad one.
func (c *Config) Validate() error {
	checks := []func() error{c.validateLogging, c.validateStorage, c.validateListeners, c.validateTimeouts, c.validateLimits, c.validateHTTP,
		c.validateFreeTopics, c.validateCluster}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateLogging() error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log_format: %q is not text or json", c.LogFormat)
	}
	return nil
}

func (c *Config) validateListeners() error {
	l := c.Listeners
	for _, a := range []struct {
		key, addr string
		auto      bool
	}{{"mqtt", l.MQTT, false}, {"ws", l.WS, false}, {"mqtts", l.MQTTS, true}, {"wss", l.WSS, true}, {"http", l.HTTP, false},
		{"https", l.HTTPS, true}} {
		if err := validateAddr(a.addr, a.auto); err != nil {
			return fmt.Errorf("listeners.%s: %w", a.key, err)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("tls: cert and key go together; set both tls.cert and tls.key (--tls-cert, --tls-key) or neither")
	}
	for key, f := range map[string]string{"tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key} {
		if err := notSpecialFile(f); f != "" && err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	if err := broker.ValidateOrigins(c.WSAllowedOrigins); err != nil {
		return fmt.Errorf("ws_allowed_origins: %w", err)
	}
	if c.TLS.Cert == "" {
		if l.MQTTS != "" && l.MQTTS != off {
			return errors.New("listeners.mqtts: needs a certificate; set tls.cert and tls.key (--tls-cert, --tls-key)")
		}
		if l.WSS != "" && l.WSS != off {
			return errors.New("listeners.wss: needs a certificate; set tls.cert and tls.key (--tls-cert, --tls-key)")
		}
		if l.HTTPS != "" && l.HTTPS != off {
			return errors.New("listeners.https: needs a certificate; set tls.cert and tls.key (--tls-cert, --tls-key)")
		}
	}
	return nil
}

// validateAddr accepts "off", HOST:PORT with a numeric port, and "" when
// the listener has an automatic default.
func validateAddr(addr string, auto bool) error {
	if addr == off || (addr == "" && auto) {
		return nil
	}
	if addr == "" {
		return errors.New(`address is empty; give HOST:PORT such as ":1883", or "off"`)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`%q is not HOST:PORT (such as ":1883" or "127.0.0.1:1883") or "off"`, addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	return nil
}

func (c *Config) validateTimeouts() error {
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("idle_timeout: must be positive (got %s)", c.IdleTimeout)
	}
	if c.ConnectTimeout <= 0 {
		return fmt.Errorf("connect_timeout: must be positive (got %s)", c.ConnectTimeout)
	}
	return nil
}

func (c *Config) validateLimits() error {
	l, b := c.Limits, c.AuthBackoff
	switch {
	case c.RateLimit < 0:
		return fmt.Errorf("rate_limit: must not be negative (got %s; 0 means no limit)", c.RateLimit)
	case c.MaxConnections < 0:
		return fmt.Errorf("max_connections: must not be negative (got %d; 0 means no limit)", c.MaxConnections)
	case c.SendQueueBytes < 4096:
		return fmt.Errorf("send_queue_bytes: must be at least 4096 (got %d)", c.SendQueueBytes)
	case c.SendQueueTotal < int64(c.SendQueueBytes):
		return fmt.Errorf("send_queue_total: must be at least send_queue_bytes (%d) (got %d)", c.SendQueueBytes, c.SendQueueTotal)
	case c.LogRate < 0:
		return fmt.Errorf("log_rate: must not be negative (got %d; 0 means no limit)", c.LogRate)
	case b.AfterFailures < 0:
		return fmt.Errorf("auth_backoff.after_failures: must not be negative (got %d; 0 turns throttling off)", b.AfterFailures)
	case b.AfterFailures > 0 && (b.Initial <= 0 || b.Max < b.Initial):
		return fmt.Errorf("auth_backoff: initial must be positive and max at least initial (got %s and %s)", b.Initial, b.Max)
	case l.MaxDevices < 0:
		return fmt.Errorf("limits.max_devices: must not be negative (got %d; 0 means no limit)", l.MaxDevices)
	case l.MaxChannelsPerDevice < 0:
		return fmt.Errorf("limits.max_channels_per_device: must not be negative (got %d; 0 means no limit)", l.MaxChannelsPerDevice)
	case l.MaxPayload < 1 || l.MaxPayload > maxPayloadLimit:
		return fmt.Errorf("limits.max_payload: must be from 1 to %d bytes (got %d)", maxPayloadLimit, l.MaxPayload)
	case l.MaxValueLen < 1 || l.MaxValueLen > l.MaxPayload:
		return fmt.Errorf("limits.max_value_len: must be from 1 to limits.max_payload (%d) (got %d)", l.MaxPayload, l.MaxValueLen)
	case l.MaxSubscriptionsPerClient < 1 || l.MaxSubscriptionsPerClient > maxSubscriptionsLimit:
		return fmt.Errorf("limits.max_subscriptions_per_client: must be from 1 to %d (got %d)", maxSubscriptionsLimit, l.MaxSubscriptionsPerClient)
	case l.MaxBindingsPerChannel < 0:
		return fmt.Errorf("limits.max_bindings_per_channel: must not be negative (got %d; 0 means no limit)", l.MaxBindingsPerChannel)
	case l.MaxBindings < 0:
		return fmt.Errorf("limits.max_bindings: must not be negative (got %d; 0 means no limit)", l.MaxBindings)
	}
	return nil
}

// Ceilings of the free-topic keys: far above any real use, low enough
// that a typo cannot let retained or queued messages take all memory.
const (
	maxRetainedMessages  = 1000000
	maxRetainedBytes     = 1 << 30
	maxQueuedPerClient   = 65000 // below MQTT's 65535 packet IDs
	maxQueuedTotal       = 10000000
	maxQueuedBytes       = 16 << 30
	maxAnonymousSessions = 100000
)

func (c *Config) validateFreeTopics() error {
	r, se := c.Retained, c.Sessions
	switch {
	case c.Limits.MaxFreeTopicLength < 1 || c.Limits.MaxFreeTopicLength > 65535:
		return fmt.Errorf("limits.max_free_topic_length: must be from 1 to 65535 bytes (got %d)", c.Limits.MaxFreeTopicLength)
	case r.MaxMessages < 1 || r.MaxMessages > maxRetainedMessages:
		return fmt.Errorf("retained.max_messages: must be from 1 to %d (got %d)", maxRetainedMessages, r.MaxMessages)
	case r.MaxBytes < 1 || r.MaxBytes > maxRetainedBytes:
		return fmt.Errorf("retained.max_bytes: must be from 1 to %d (got %d)", maxRetainedBytes, r.MaxBytes)
	case se.Expiry < Duration(time.Second) || se.Expiry > Duration(math.MaxUint32*time.Second):
		return fmt.Errorf("sessions.expiry: must be from 1s to %s (got %s)", time.Duration(math.MaxUint32*time.Second), se.Expiry)
	case se.MaxQueuedPerClient < 1 || se.MaxQueuedPerClient > maxQueuedPerClient:
		return fmt.Errorf("sessions.max_queued_per_client: must be from 1 to %d (got %d)", maxQueuedPerClient, se.MaxQueuedPerClient)
	case se.MaxQueuedTotal < se.MaxQueuedPerClient || se.MaxQueuedTotal > maxQueuedTotal:
		return fmt.Errorf("sessions.max_queued_total: must be from sessions.max_queued_per_client (%d) to %d (got %d)",
			se.MaxQueuedPerClient, maxQueuedTotal, se.MaxQueuedTotal)
	case se.MaxQueuedBytes < 1 || se.MaxQueuedBytes > maxQueuedBytes:
		return fmt.Errorf("sessions.max_queued_bytes: must be from 1 to %d (got %d)", int64(maxQueuedBytes), se.MaxQueuedBytes)
	case se.MaxAnonymous < 0 || se.MaxAnonymous > maxAnonymousSessions:
		return fmt.Errorf("sessions.max_anonymous: must be from 0 to %d (got %d; 0 refuses anonymous persistent sessions)",
			maxAnonymousSessions, se.MaxAnonymous)
	}
	return nil
}

func (c *Config) validateHTTP() error {
	h := c.HTTP
	switch {
	case h.MaxFeedReads < 0:
		return fmt.Errorf("http.max_feed_reads: must not be negative (got %d; 0 means no limit)", h.MaxFeedReads)
	case h.MaxBodyBytesInFlight != 0 && h.MaxBodyBytesInFlight < httpd.MaxManageBody:
		return fmt.Errorf("http.max_body_bytes_in_flight: must be 0 (no limit) or at least %d bytes, the largest body a request may send (got %d)", httpd.MaxManageBody, h.MaxBodyBytesInFlight)
	case h.MaxSSEStreams < 0:
		return fmt.Errorf("http.max_sse_streams: must not be negative (got %d; 0 means no limit)", h.MaxSSEStreams)
	case h.WriteTimeout < Duration(time.Second) || h.WriteTimeout > Duration(httpd.ResponseTimeout):
		return fmt.Errorf("http.write_timeout: must be from 1s to %s (got %s)", httpd.ResponseTimeout, h.WriteTimeout)
	case h.EmbedPollInterval < Duration(httpd.MinEmbedPoll) || h.EmbedPollInterval > Duration(httpd.MaxEmbedPoll):
		return fmt.Errorf("http.embed_poll_interval: must be from %s to %s (got %s)", httpd.MinEmbedPoll, httpd.MaxEmbedPoll, h.EmbedPollInterval)
	}
	return nil
}

// dataDir returns the data directory: data_dir, else $STATE_DIRECTORY
// (the first one, as systemd may list several), else ./feedmq-data.
func (c *Config) dataDir() string {
	if c.DataDir != "" {
		return c.DataDir
	}
	if s := os.Getenv("STATE_DIRECTORY"); s != "" {
		first, _, _ := strings.Cut(s, ":")
		return first
	}
	return "feedmq-data"
}

func (c *Config) dbPath() string     { return admin.DBPath(c.dataDir()) }
func (c *Config) socketPath() string { return admin.SocketPath(c.dataDir()) }

// mqttsAddr and wssAddr resolve the automatic TLS listener addresses.
func (c *Config) mqttsAddr() string { return autoTLSAddr(c.Listeners.MQTTS, defaultMQTTS, c.TLS.Cert) }
func (c *Config) wssAddr() string   { return autoTLSAddr(c.Listeners.WSS, defaultWSS, c.TLS.Cert) }

// httpsAddr is the HTTPS listen address, "" when off (it has no
// automatic default: the HTTP listener already serves everything).
func (c *Config) httpsAddr() string {
	if c.Listeners.HTTPS == off {
		return ""
	}
	return c.Listeners.HTTPS
}

func autoTLSAddr(addr, def, cert string) string {
	switch {
	case addr != "":
		return addr
	case cert != "":
		return def
	}
	return off
}

func (c *Config) authLimits() auth.Limits {
	return auth.Limits{MaxDevices: c.Limits.MaxDevices, MaxChannelsPerDevice: c.Limits.MaxChannelsPerDevice,
		MaxBindingsPerChannel: c.Limits.MaxBindingsPerChannel, MaxBindings: c.Limits.MaxBindings}
}

func (c *Config) payloadLimits() channels.Limits {
	return channels.Limits{MaxPayload: c.Limits.MaxPayload, MaxValueLen: c.Limits.MaxValueLen}
}

// applyFlags copies the flags the user set over c; flags left at their
// default never override the file.
func applyFlags(fs *pflag.FlagSet, c *Config) error {
	strs := map[string]*string{
		"data": &c.DataDir, "log-level": &c.LogLevel, "log-format": &c.LogFormat,
		"mqtt": &c.Listeners.MQTT, "ws": &c.Listeners.WS, "mqtts": &c.Listeners.MQTTS,
		"wss": &c.Listeners.WSS, "http": &c.Listeners.HTTP, "https": &c.Listeners.HTTPS,
		"tls-cert": &c.TLS.Cert, "tls-key": &c.TLS.Key,
	}
	for name, p := range strs {
		if f := fs.Lookup(name); f != nil && f.Changed {
			*p = f.Value.String()
		}
	}
	var err error
	if f := fs.Lookup("anonymous"); f != nil && f.Changed {
		c.Anonymous, err = fs.GetBool("anonymous")
	}
	if f := fs.Lookup("idle-timeout"); f != nil && f.Changed && err == nil {
		var d time.Duration
		d, err = fs.GetDuration("idle-timeout")
		c.IdleTimeout = Duration(d)
	}
	return err
}

// Duration is a time.Duration written in YAML as a Go duration string
// such as "90s" or "1h".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML parses a Go duration string. A bad value is reported as a
// type error so that it names its key like the others.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: %q is not a duration; write it like 90s, 10m or 1h", n.Line, n.Value),
		}}
	}
	*d = Duration(v)
	return nil
}
