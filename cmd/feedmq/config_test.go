package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The documented configuration file lists every key with its default.
func TestDefaultConfigFile(t *testing.T) {
	b, err := os.ReadFile("../../configs/feedmq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Decode into a zero Config: a key missing from the file stays zero
	// and shows up as a difference.
	var got Config
	if err := decodeConfig(b, &got); err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("configs/feedmq.yaml differs from DefaultConfig():\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Every invalid configuration is refused with an error naming its key.
func TestInvalidConfig(t *testing.T) {
	for file, want := range map[string]string{
		"unknown-key.yaml":            `line 2: unknown key "loglevel"`,
		"unknown-nested-key.yaml":     `line 3: unknown key "limits.max_device"`,
		"bad-duration.yaml":           `line 2: idle_timeout: "1 hour" is not a duration`,
		"negative-limit.yaml":         "limits.max_devices: must not be negative",
		"negative-bindings.yaml":      "limits.max_bindings_per_channel: must not be negative (got -1; 0 means no limit)",
		"wrong-type.yaml":             "line 3: limits.max_payload: cannot unmarshal",
		"bad-log-level.yaml":          `log_level: "verbose" is not debug, info, warn or error`,
		"bad-log-format.yaml":         `log_format: "xml" is not text or json`,
		"bad-address.yaml":            `listeners.mqtt: "localhost" is not HOST:PORT`,
		"tls-cert-without-key.yaml":   "tls: cert and key go together",
		"mqtts-without-cert.yaml":     "listeners.mqtts: needs a certificate",
		"value-len-over-payload.yaml": "limits.max_value_len: must be from 1 to limits.max_payload (100)",
		"zero-timeout.yaml":           "connect_timeout: must be positive",
		"zero-subscriptions.yaml":     "limits.max_subscriptions_per_client: must be from 1 to 10000 (got 0)",
		"syntax-error.yaml":           "did not find expected",
		"small-body-budget.yaml":      "http.max_body_bytes_in_flight: must be 0 (no limit) or at least 65536 bytes",
		"fast-embed-poll.yaml":        "http.embed_poll_interval: must be from 1s to 10m0s (got 500ms)",
		"slow-embed-poll.yaml":        "http.embed_poll_interval: must be from 1s to 10m0s (got 1h0m0s)",
	} {
		t.Run(strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
			path := filepath.Join("../../testdata/config", file)
			_, _, err := runCommand(t, "--data", t.TempDir(), "--config", path, "channel", "list")
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not contain %q", err, want)
			}
			if !strings.Contains(err.Error(), file) && !strings.HasPrefix(err.Error(), "invalid configuration: ") {
				t.Fatalf("error %q names neither the file nor the configuration", err)
			}
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feedmq.yaml")
	writeFile(t, path, "log_level: debug\nidle_timeout: 5m\nlisteners:\n  mqtt: \":1999\"\n  ws: \"off\"\nlimits:\n  max_devices: 3\n")

	t.Run("FileOverridesDefaults", func(t *testing.T) {
		cfg := serveConfig(t, "--config", path)
		want := DefaultConfig()
		want.LogLevel, want.IdleTimeout = "debug", Duration(5*time.Minute)
		want.Listeners.MQTT, want.Listeners.WS = ":1999", "off"
		want.Limits.MaxDevices = 3
		if !reflect.DeepEqual(cfg, want) {
			t.Fatalf("got %+v\nwant %+v", cfg, want)
		}
	})
	t.Run("FlagsOverrideFile", func(t *testing.T) {
		cfg := serveConfig(t, "--config", path, "--mqtt", "127.0.0.1:0", "--idle-timeout", "90s",
			"--anonymous=false", "--data", "/srv/feedmq", "--log-format", "json")
		if cfg.Listeners.MQTT != "127.0.0.1:0" || cfg.IdleTimeout != Duration(90*time.Second) ||
			cfg.Anonymous || cfg.DataDir != "/srv/feedmq" || cfg.LogFormat != "json" {
			t.Fatalf("flags did not override: %+v", cfg)
		}
		// Flags left at their defaults do not override the file.
		if cfg.LogLevel != "debug" || cfg.Listeners.WS != "off" {
			t.Fatalf("unset flags overrode the file: %+v", cfg)
		}
	})
	t.Run("BadFlag", func(t *testing.T) {
		_, _, err := runCommand(t, "serve", "--mqtt", "nowhere", "--data", t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "listeners.mqtt") {
			t.Fatalf("got %v", err)
		}
	})
}

// serveConfig parses args as `feedmq serve` flags and returns the
// resulting configuration.
func serveConfig(t *testing.T, args ...string) Config {
	t.Helper()
	serve, _, err := newRootCommand().Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(serve)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestDataDir(t *testing.T) {
	for _, tt := range []struct {
		name, dataDir, env, want string
	}{
		{"Default", "", "", "feedmq-data"},
		{"StateDirectory", "", "/var/lib/feedmq", "/var/lib/feedmq"},
		{"FirstStateDirectory", "", "/var/lib/feedmq:/var/lib/other", "/var/lib/feedmq"},
		{"ConfigWins", "/srv/feedmq", "/var/lib/feedmq", "/srv/feedmq"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("STATE_DIRECTORY", tt.env)
			c := Config{DataDir: tt.dataDir}
			if got := c.dataDir(); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTLSAddrs(t *testing.T) {
	c := DefaultConfig()
	if c.mqttsAddr() != "off" || c.wssAddr() != "off" {
		t.Fatalf("without a certificate: %q %q", c.mqttsAddr(), c.wssAddr())
	}
	c.TLS = TLSConfig{Cert: "c.pem", Key: "k.pem"}
	if c.mqttsAddr() != ":8883" || c.wssAddr() != ":8084" {
		t.Fatalf("with a certificate: %q %q", c.mqttsAddr(), c.wssAddr())
	}
	c.Listeners.WSS = "off"
	if c.wssAddr() != "off" {
		t.Fatal("wss: off ignored")
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.yaml")
	writeFile(t, path, "# nothing set\n")
	if cfg := serveConfig(t, "--config", path); !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("got %+v", cfg)
	}
}

// The free-topic keys (retained messages, persistent sessions, free topic
// length) refuse values out of range, naming the key.
func TestFreeTopicConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{"limits:\n  max_free_topic_length: 0\n", "limits.max_free_topic_length: must be from 1 to 65535 bytes (got 0)"},
		{"limits:\n  max_free_topic_length: 70000\n", "limits.max_free_topic_length: must be from 1 to 65535"},
		{"retained:\n  max_messages: 0\n", "retained.max_messages: must be from 1 to 1000000 (got 0)"},
		{"retained:\n  max_messages: -5\n", "retained.max_messages: must be from 1"},
		{"retained:\n  max_bytes: 0\n", "retained.max_bytes: must be from 1 to 1073741824 (got 0)"},
		{"retained:\n  max_bytes: 99999999999\n", "retained.max_bytes: must be from 1"},
		{"retained:\n  max_bytes: lots\n", "line 2: retained.max_bytes: cannot unmarshal"},
		{"sessions:\n  expiry: 0s\n", "sessions.expiry: must be from 1s"},
		{"sessions:\n  expiry: -1h\n", "sessions.expiry: must be from 1s"},
		{"sessions:\n  expiry: forever\n", `sessions.expiry: "forever" is not a duration`},
		{"sessions:\n  max_queued_per_client: 0\n", "sessions.max_queued_per_client: must be from 1 to 65000 (got 0)"},
		{"sessions:\n  max_queued_per_client: 70000\n", "sessions.max_queued_per_client: must be from 1 to 65000"},
		{"sessions:\n  max_queued_per_client: 10\n  max_queued_total: 5\n", "sessions.max_queued_total: must be from sessions.max_queued_per_client (10)"},
		{"sessions:\n  max_queue: 5\n", `unknown key "sessions.max_queue"`},
		{"sessions:\n  max_queued_bytes: 0\n", "sessions.max_queued_bytes: must be from 1 to 17179869184 (got 0)"},
		{"sessions:\n  max_queued_bytes: 99999999999\n", "sessions.max_queued_bytes: must be from 1"},
		{"sessions:\n  max_queued_bytes: 64MiB\n", "line 2: sessions.max_queued_bytes: cannot unmarshal"},
		{"sessions:\n  max_anonymous: -1\n", "sessions.max_anonymous: must be from 0 to 100000 (got -1"},
		{"sessions:\n  max_anonymous: 100001\n", "sessions.max_anonymous: must be from 0 to 100000"},
	} {
		path := filepath.Join(t.TempDir(), "feedmq.yaml")
		writeFile(t, path, tc.yaml)
		_, _, err := runCommand(t, "--data", t.TempDir(), "--config", path, "channel", "list")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Sessions.Expiry, cfg.Retained.MaxMessages = Duration(time.Hour), 5
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid values refused: %v", err)
	}
	o := brokerOptions(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if o.SessionExpiry != time.Hour || o.RetainedMax != 5 || o.QueuedPerClient != 1000 || o.MaxFreeTopicLen != 1024 ||
		o.MaxAnonymousSessions != 100 || o.QueuedMaxBytes != 64<<20 ||
		o.SessionsPath != filepath.Join(cfg.dataDir(), "mqtt-sessions.db") {
		t.Fatalf("broker options %+v", o)
	}
	cfg.Sessions.MaxAnonymous = 0
	if o := brokerOptions(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); o.MaxAnonymousSessions >= 0 {
		t.Fatalf("max_anonymous 0 gives the broker %d, want none at all (negative)", o.MaxAnonymousSessions)
	}
}
