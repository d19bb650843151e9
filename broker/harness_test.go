package broker_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// testServer is a real broker on 127.0.0.1:0 over a bbolt file in a temp
// dir, like `feedmq serve` wires it.
type testServer struct {
	t    testing.TB
	dir  string
	opts broker.Options
	db   *storage.DB
	svc  *admin.Local
	srv  *broker.Server
	addr string
	// wrap, when set, gives the broker another store over db (a fake
	// that fails as a shared database can).
	wrap func(*storage.DB) channels.Store
}

func startServer(t testing.TB, opts broker.Options) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: t.TempDir(), opts: opts}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	db, err := storage.Open(filepath.Join(ts.dir, "feedmq.db"), storage.Options{})
	if err != nil {
		ts.t.Fatal(err)
	}
	svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		ts.t.Fatal(err)
	}
	opts := ts.opts
	opts.MQTTAddr = "127.0.0.1:0"
	if opts.SessionsPath == "" {
		opts.SessionsPath = filepath.Join(ts.dir, "mqtt-sessions.db") // as serve keeps it
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(ts.t)
	}
	var store channels.Store = db
	if ts.wrap != nil {
		store = ts.wrap(db)
	}
	srv, err := broker.New(opts, store, svc.Registry)
	if err != nil {
		ts.t.Fatal(err)
	}
	svc.Revoke = srv.Revoke
	if err := srv.Open(); err != nil {
		ts.t.Fatal(err)
	}
	ts.db, ts.svc, ts.srv, ts.addr = db, svc, srv, srv.Addr("mqtt").String()
}

func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	if err := ts.srv.Close(); err != nil {
		ts.t.Errorf("close broker: %v", err)
	}
	if err := ts.db.Close(); err != nil {
		ts.t.Errorf("close db: %v", err)
	}
	ts.srv = nil
}

func (ts *testServer) restart() {
	ts.t.Helper()
	ts.stop()
	ts.start()
}

// channel creates a channel with the given field labels (none: all eight).
func (ts *testServer) channel(public bool, labels ...string) uint64 {
	ts.t.Helper()
	spec := auth.ChannelSpec{Name: "test", Public: public}
	copy(spec.Fields[:], labels)
	c, err := ts.svc.CreateChannel(context.Background(), spec)
	if err != nil {
		ts.t.Fatal(err)
	}
	return c.ID
}

// device creates a device with grants.
func (ts *testServer) device(grants ...auth.Grant) *auth.Credentials {
	ts.t.Helper()
	cr, err := ts.svc.CreateDevice(context.Background(), auth.DeviceSpec{Name: "dev", Grants: grants})
	if err != nil {
		ts.t.Fatal(err)
	}
	return cr
}

func pubsub(id uint64) auth.Grant { return auth.Grant{ChannelID: id, Publish: true, Subscribe: true} }

// client is a paho client that records what it receives.
type client struct {
	paho.Client
	mu   sync.Mutex
	msgs chan message
	lost chan error
}

type message struct{ topic, payload string }

// connect connects with a device's credentials (nil: anonymous) and
// returns the client and the CONNACK return code.
func connect(t testing.TB, addr string, cr *auth.Credentials, version uint) (*client, byte, error) {
	t.Helper()
	return connectURL(t, "tcp://"+addr, cr, version, nil)
}

// connectURL connects to a broker URL (tcp://, ssl://, ws://, wss://)
// with an optional TLS configuration.
func connectURL(t testing.TB, url string, cr *auth.Credentials, version uint, tlsConfig *tls.Config) (*client, byte, error) {
	t.Helper()
	c := &client{msgs: make(chan message, 1000), lost: make(chan error, 1)}
	o := paho.NewClientOptions().AddBroker(url).SetProtocolVersion(version).SetTLSConfig(tlsConfig).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(30 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			c.msgs <- message{m.Topic(), string(m.Payload())}
		})
	if cr != nil {
		o.SetClientID(cr.Device.ClientID).SetUsername(cr.Device.Username).SetPassword(cr.Password)
	} else {
		o.SetClientID(fmt.Sprintf("anon-%d", time.Now().UnixNano()))
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("connect timed out")
	}
	code := tok.(*paho.ConnectToken).ReturnCode()
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(0) })
	}
	return c, code, tok.Error()
}

func mustConnect(t testing.TB, addr string, cr *auth.Credentials) *client {
	t.Helper()
	c, _, err := connect(t, addr, cr, 4)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

// subscribe subscribes and returns the SUBACK code.
func (c *client) subscribe(t testing.TB, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 0, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *client) publish(t testing.TB, topic string, qos byte, payload string) error {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("publish %s: no PUBACK", topic)
	}
	return tok.Error()
}

// expect waits for the next message.
func (c *client) expect(t testing.TB) message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return message{}
}

// expectNothing asserts that no message arrives within a short wait.
func (c *client) expectNothing(t testing.TB) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message on %s: %s", m.topic, m.payload)
	case <-time.After(300 * time.Millisecond):
	}
}

// entries returns the stored entries of a channel as JSON lines.
func (ts *testServer) entries(ch uint64) []string {
	ts.t.Helper()
	es, err := ts.svc.Entries(context.Background(), ch, channels.EntryFilter{})
	if err != nil {
		ts.t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, string(e.AppendJSON(nil)))
	}
	return out
}

func joinLines(s []string) string { return strings.Join(s, "\n") }

// testLogger writes server logs to the test log (shown with -v or on
// failure).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
