package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/mqtttest"
	"github.com/feedmq/feedmq/internal/natstest"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// testNATS starts a NATS server in this process on a loopback port.
func testNATS(t *testing.T) string {
	t.Helper()
	return natstest.Start(t, natsserver.Options{}).ClientURL()
}

// fastBeats makes nodes beat every 50 ms and fail closed after 2 s
// without a confirmation, for the test (shorter, a loaded machine's
// scheduling delays alone failed a healthy node closed).
func fastBeats(t *testing.T) {
	oldI, oldF := nodeBeatInterval, nodeFailAfter
	nodeBeatInterval, nodeFailAfter = 50*time.Millisecond, 2*time.Second
	t.Cleanup(func() { nodeBeatInterval, nodeFailAfter = oldI, oldF })
}

func healthz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mqttConnect(addr string, d *auth.Device, password string) (*mqtttest.Conn, byte, error) {
	c, err := mqtttest.Dial(addr)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	code, err := c.Connect(mqtttest.Connect{ClientID: d.ClientID, Username: d.Username, Password: password, Clean: true})
	if err != nil || code != 0 {
		c.Close()
		return nil, code, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, 0, nil
}

// A cluster node that cannot confirm its configuration version with the
// database fails closed: its connections are closed, CONNECTs refused,
// /healthz answers 503 saying so and /metrics shows it; once it can
// confirm again it opens.
func TestServeFailsClosedAndRecovers(t *testing.T) {
	fastBeats(t)
	ctx := context.Background()
	dbURL := pgtest.New(t)
	cfg := pgServeConfig(t, t.TempDir(), dbURL)
	cfg.Cluster, cfg.NodeName, cfg.Listeners.HTTP = testNATS(t), "n1", "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s, err := openServer(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.addr("http").String()
	mqtt := s.addr("mqtt").String()
	cr, err := s.svc.CreateDevice(ctx, auth.DeviceSpec{Name: "d"})
	if err != nil {
		t.Fatal(err)
	}
	c, code, err := mqttConnect(mqtt, cr.Device, cr.Password)
	if err != nil || code != 0 {
		t.Fatalf("CONNECT to a healthy node: code %d, %v", code, err)
	}
	defer c.Close()
	if code, body := healthz(t, base); code != 200 || !strings.Contains(body, "fail_closed: false\n") || !strings.Contains(body, "node: n1\n") {
		t.Fatalf("healthy /healthz = %d %q", code, body)
	}

	// The configuration version cannot be read: nothing is confirmed.
	execSQL(t, dbURL, "ALTER TABLE config_version RENAME TO config_version_hidden")
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, _, err := c.ReadPacket(); err != nil {
				return
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open on a node that could not confirm its state")
	}
	waitFor(t, func() bool {
		code, body := healthz(t, base)
		return code == 503 && strings.HasPrefix(body, "unavailable\n") && strings.Contains(body, "fail_closed: true\n")
	})
	if _, code, _ := mqttConnect(mqtt, cr.Device, cr.Password); code != 3 {
		t.Fatalf("CONNECT to a failed-closed node: code %d, want 3 (server unavailable)", code)
	}
	if !strings.Contains(metricsOf(t, base), "feedmq_cluster_fail_closed 1\n") {
		t.Fatal("/metrics does not show the node failed closed")
	}

	execSQL(t, dbURL, "ALTER TABLE config_version_hidden RENAME TO config_version")
	waitFor(t, func() bool { code, _ := healthz(t, base); return code == 200 })
	c2, code, err := mqttConnect(mqtt, cr.Device, cr.Password)
	if err != nil || code != 0 {
		t.Fatalf("CONNECT after recovery: code %d, %v", code, err)
	}
	c2.Close()
	if !strings.Contains(logs.String(), "failed closed") || !strings.Contains(logs.String(), "accepting connections again") {
		t.Fatalf("the log does not tell the failure and the recovery:\n%s", logs.String())
	}
}

func metricsOf(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A node on PostgreSQL without cluster: is alone on its database: a
// second node, lone or clustered, is refused with an error naming the
// first; once the first stopped cleanly another starts at once. A node
// whose NATS does not answer does not start, and leaves no row behind.
func TestServeNodeRefusals(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.New(t)
	quiet := slog.New(slog.DiscardHandler)
	a := pgServeConfig(t, t.TempDir(), dbURL)
	a.NodeName = "a"
	sa, err := openServer(ctx, a, quiet)
	if err != nil {
		t.Fatal(err)
	}
	b := pgServeConfig(t, t.TempDir(), dbURL)
	b.NodeName = "b"
	if _, err := openServer(ctx, b, quiet); err == nil || !strings.Contains(err.Error(), `node "a" is live on this database`) {
		t.Fatalf("second lone node: %v", err)
	}
	b.Cluster = testNATS(t)
	if _, err := openServer(ctx, b, quiet); err == nil || !strings.Contains(err.Error(), `node "a" serves this database without cluster:`) {
		t.Fatalf("clustered node beside a lone one: %v", err)
	}
	if err := sa.Close(); err != nil {
		t.Fatal(err)
	}
	sb, err := openServer(ctx, b, quiet)
	if err != nil {
		t.Fatalf("clustered node after the lone one stopped: %v", err)
	}
	defer sb.Close()

	c := pgServeConfig(t, t.TempDir(), dbURL)
	c.NodeName, c.Cluster = "c", "nats://127.0.0.1:1"
	_, err = openServer(ctx, c, quiet)
	if err == nil || !strings.Contains(err.Error(), "cluster: connect to NATS") || strings.Contains(err.Error(), "cluster: cluster:") {
		t.Fatalf("node without NATS: %v", err)
	}
	live, err := sb.node.pg.Live(ctx, time.Minute)
	if err != nil || len(live) != 1 || live[0].Node != "b" {
		t.Fatalf("live nodes = %v, %v; want only b", live, err)
	}
}

// TLS and a user and password to NATS: a node with the CA and the
// password in its URL connects; a wrong password or no CA is refused at
// start, and no error repeats the password.
func TestServeClusterTLSAndAuth(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t, natsserver.Options{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, TLSTimeout: 5,
		Username: "feedmq", Password: "s3cret-nats"})
	port := ns.Addr().(*net.TCPAddr).Port
	dbURL := pgtest.New(t)
	quiet := slog.New(slog.DiscardHandler)
	cfgWith := func(name, url, ca string) Config {
		c := pgServeConfig(t, t.TempDir(), dbURL)
		c.NodeName, c.Cluster, c.ClusterTLS.CA = name, url, ca
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, bad := range []struct {
		name string
		cfg  Config
	}{
		{"wrong password", cfgWith("w", fmt.Sprintf("tls://feedmq:wrong-pass@127.0.0.1:%d", port), certFile)},
		{"no CA", cfgWith("x", fmt.Sprintf("tls://feedmq:s3cret-nats@127.0.0.1:%d", port), "")},
	} {
		_, err := openServer(ctx, bad.cfg, quiet)
		if err == nil || !strings.Contains(err.Error(), "cluster: connect to NATS") {
			t.Errorf("%s: openServer = %v", bad.name, err)
		} else if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong-pass") {
			t.Errorf("%s: the error repeats the password: %v", bad.name, err)
		}
	}
	s, err := openServer(ctx, cfgWith("ok", fmt.Sprintf("tls://feedmq:s3cret-nats@127.0.0.1:%d", port), certFile), quiet)
	if err != nil {
		t.Fatalf("TLS with the CA and the password: %v", err)
	}
	defer s.Close()
	if m := s.node.cl.Metrics(); !m.NATSConnected {
		t.Fatal("not connected to NATS")
	}
}
