package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const unitFile = "../../configs/feedmq.service"

// readUnit parses a systemd unit file into section -> key -> values (a key
// may repeat).
func readUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := make(map[string]map[string][]string)
	var section string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			unit[section] = make(map[string][]string)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			unit[section][k] = append(unit[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

// The unit file states what the issue and README promise.
func TestServiceUnit(t *testing.T) {
	unit := readUnit(t, unitFile)
	svc := unit["Service"]
	for key, want := range map[string]string{
		"Type":                    "notify",
		"WatchdogSec":             "30",
		"ExecStart":               "/usr/local/bin/feedmq serve --config /etc/feedmq/feedmq.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"DynamicUser":             "yes",
		"StateDirectory":          "feedmq",
		"ConfigurationDirectory":  "feedmq",
		"Restart":                 "on-failure",
		"LimitNOFILE":             "1048576",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"SystemCallArchitectures": "native",
	} {
		if got := svc[key]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %q, want %q", key, got, want)
		}
	}
	// The data directory comes from $STATE_DIRECTORY: nothing may set
	// another one.
	if strings.Contains(svc["ExecStart"][0], "--data") {
		t.Error("ExecStart sets --data; the data directory is StateDirectory=")
	}
	if got := unit["Install"]["WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q", got)
	}
}

// systemd-analyze checks every directive, value and referenced path.
func TestServiceUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("FEEDMQ_REQUIRE_CLIENTS") != "" {
			t.Fatal("systemd-analyze not found (make test-deps installs the systemd package)")
		}
		t.Skip("systemd-analyze not found: install the systemd package (make test-deps) to verify configs/feedmq.service")
	}
	// verify insists that ExecStart's binary exists; point it at a stand-in
	// so the test does not depend on `make install`.
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "feedmq")
	writeFile(t, bin, "#!/bin/sh\n")
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	const installed = "ExecStart=/usr/local/bin/feedmq "
	if !bytes.Contains(unit, []byte(installed)) {
		t.Fatalf("unit has no %q", installed)
	}
	path := filepath.Join(dir, "feedmq.service")
	writeFile(t, path, strings.Replace(string(unit), installed, "ExecStart="+bin+" ", 1))

	// verify exits 0 on unknown directives and bad values, only warning:
	// any output is a failure. --man=no: the pages are not installed here.
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The hardening keeps the exposure score "OK" (at most 2.0 of 10).
	out, err = exec.Command(analyze, "--offline=yes", "--threshold=20", "--no-pager", "security", path).CombinedOutput()
	if strings.Contains(string(out), "Unknown option") || strings.Contains(string(out), "unrecognized option") {
		t.Logf("systemd-analyze too old for offline security scores: %s", out)
		return
	}
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if i := bytes.Index(out, []byte("Overall exposure level")); i >= 0 {
		t.Logf("%s", bytes.TrimSpace(out[i:]))
	}
}

// fakeSystemd is a NOTIFY_SOCKET that records what the service sends.
type fakeSystemd struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
	done chan struct{}
}

// newFakeSystemd listens on a notify socket, points $NOTIFY_SOCKET at it
// for the test and sets the watchdog to watchdog (0: off).
func newFakeSystemd(t *testing.T, watchdog time.Duration) *fakeSystemd {
	t.Helper()
	// Unix socket paths are short; t.TempDir() can exceed the limit.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
		t.Setenv("WATCHDOG_PID", "")
	}
	sd := &fakeSystemd{conn: conn, done: make(chan struct{})}
	go sd.read()
	t.Cleanup(func() { conn.Close(); <-sd.done })
	return sd
}

func (sd *fakeSystemd) read() {
	defer close(sd.done)
	buf := make([]byte, 4096)
	for {
		n, err := sd.conn.Read(buf)
		if err != nil {
			return
		}
		sd.mu.Lock()
		sd.msgs = append(sd.msgs, string(buf[:n]))
		sd.mu.Unlock()
	}
}

// messages returns what was received so far.
func (sd *fakeSystemd) messages() []string {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return append([]string(nil), sd.msgs...)
}

// states returns the first line of each message, e.g. "READY=1".
func (sd *fakeSystemd) states() []string {
	var out []string
	for _, m := range sd.messages() {
		out = append(out, firstLine(m))
	}
	return out
}

func (sd *fakeSystemd) count(state string) int {
	n := 0
	for _, s := range sd.states() {
		if s == state {
			n++
		}
	}
	return n
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNotifier(t *testing.T) {
	sd := newFakeSystemd(t, 0)
	n := newNotifier(discardLogger())
	n.Ready("mqtt 127.0.0.1:1883")
	reloaded := false
	if err := n.Reload(func() error { reloaded = true; return nil }, "reloaded"); err != nil || !reloaded {
		t.Fatalf("reload: %v, ran %v", err, reloaded)
	}
	failed := errors.New("bad key\nmore detail")
	if err := n.Reload(func() error { return failed }, "reloaded"); err != failed {
		t.Fatalf("reload error: %v", err)
	}
	n.Stopping()
	waitFor(t, func() bool { return len(sd.messages()) == 6 })
	msgs := sd.messages()
	want := []string{
		"READY=1\nSTATUS=mqtt 127.0.0.1:1883",
		"RELOADING=1\nMONOTONIC_USEC=",
		"READY=1\nSTATUS=reloaded",
		"RELOADING=1\nMONOTONIC_USEC=",
		"READY=1\nSTATUS=reload failed, still serving: bad key",
		"STOPPING=1\nSTATUS=shutting down",
	}
	for i, w := range want {
		if !strings.HasPrefix(msgs[i], w) || (!strings.HasSuffix(w, "=") && msgs[i] != w) {
			t.Errorf("message %d: got %q, want %q", i, msgs[i], w)
		}
	}
	// MONOTONIC_USEC is CLOCK_MONOTONIC, the clock systemd compares with.
	if usec := strings.TrimPrefix(msgs[1], "RELOADING=1\nMONOTONIC_USEC="); usec == "" || usec == "0" {
		t.Errorf("MONOTONIC_USEC missing: %q", msgs[1])
	}
	// No watchdog configured: StartWatchdog starts nothing.
	n.StartWatchdog()()
}

func TestNotifierWatchdog(t *testing.T) {
	sd := newFakeSystemd(t, 100*time.Millisecond)
	n := newNotifier(discardLogger())
	stop := n.StartWatchdog()
	waitFor(t, func() bool { return sd.count("WATCHDOG=1") >= 3 })
	stop()
	stop() // idempotent
	got := sd.count("WATCHDOG=1")
	time.Sleep(150 * time.Millisecond)
	if sd.count("WATCHDOG=1") != got {
		t.Fatal("keep-alives continue after stop")
	}
}

// Outside systemd nothing is sent and nothing fails.
func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	var logs bytes.Buffer
	n := newNotifier(slog.New(slog.NewTextHandler(&logs, nil)))
	n.Ready("x")
	n.Stopping()
	n.StartWatchdog()()
	if logs.Len() > 0 {
		t.Fatalf("logged: %s", logs.String())
	}
}

// Under systemd, text logs leave the time to the journal.
func TestLoggerUnderSystemd(t *testing.T) {
	for _, tt := range []struct {
		name, env, format string
		wantTime          bool
	}{
		{"Terminal", "", "text", true},
		{"JournalStream", "JOURNAL_STREAM", "text", false},
		{"InvocationID", "INVOCATION_ID", "text", false},
		{"JSONKeepsTime", "INVOCATION_ID", "json", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", "")
			t.Setenv("INVOCATION_ID", "")
			if tt.env != "" {
				t.Setenv(tt.env, "8:1234")
			}
			cfg := DefaultConfig()
			cfg.LogFormat = tt.format
			var buf bytes.Buffer
			newLogger(cfg, &buf).With("component", "x").Info("client connected", "time", "attr named time stays")
			line := buf.String()
			hasTime := strings.HasPrefix(line, "time=") || strings.HasPrefix(line, `{"time":`)
			if hasTime != tt.wantTime {
				t.Fatalf("time present %v, want %v: %s", hasTime, tt.wantTime, line)
			}
			if !strings.Contains(line, "client connected") || !strings.Contains(line, "attr named time stays") {
				t.Fatalf("line lost content: %s", line)
			}
		})
	}
}

// serve tells systemd it is ready only once every listener is bound and the
// store is open, pings the watchdog, wraps SIGHUP handling in
// RELOADING=1 ... READY=1 and says STOPPING=1 when it shuts down.
func TestServeNotifiesSystemd(t *testing.T) {
	sd := newFakeSystemd(t, 100*time.Millisecond)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	selfSigned(t, "first", certFile, keyFile)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listeners = ListenersConfig{MQTT: "127.0.0.1:0", WS: off, MQTTS: "127.0.0.1:0", WSS: off, HTTP: off}
	cfg.TLS = TLSConfig{Cert: certFile, Key: keyFile}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, out, discardLogger()) }()

	waitFor(t, func() bool { return sd.count("READY=1") == 1 })
	// By then serve has bound and reported every listener and opened the
	// database and the admin socket.
	lines := out.String()
	var mqttAddr, mqttsAddr string
	if _, err := fmt.Sscanf(lines, "mqtt listening on %s\nmqtts listening on %s\n", &mqttAddr, &mqttsAddr); err != nil {
		t.Fatalf("listeners not reported before READY=1: %v\n%s", err, lines)
	}
	ready := sd.messages()[0]
	if want := "READY=1\nSTATUS=serving: mqtt " + mqttAddr + ", mqtts " + mqttsAddr; ready != want {
		t.Fatalf("got %q, want %q", ready, want)
	}
	for _, addr := range []string{mqttAddr, mqttsAddr} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("READY=1 before %s accepts: %v", addr, err)
		}
		c.Close()
	}
	if _, err := os.Stat(cfg.socketPath()); err != nil {
		t.Fatalf("READY=1 before the admin socket: %v", err)
	}
	waitFor(t, func() bool { return sd.count("WATCHDOG=1") >= 2 })

	// systemctl reload: the certificate is read again.
	selfSigned(t, "second", certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return sd.count("READY=1") == 2 })
	// A bad key: serve goes on with the old certificate and says so.
	writeFile(t, keyFile, "not a key")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return sd.count("READY=1") == 3 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return sd.count("STOPPING=1") == 1 })
	var states []string
	for _, m := range sd.messages() {
		if m != "WATCHDOG=1" {
			states = append(states, m)
		}
	}
	serving := "STATUS=serving: mqtt " + mqttAddr + ", mqtts " + mqttsAddr
	want := []string{"READY=1\n" + serving, "RELOADING=1", "READY=1\n" + serving, "RELOADING=1",
		"READY=1\nSTATUS=reload failed, still serving: ", "STOPPING=1\nSTATUS=shutting down"}
	if len(states) != len(want) {
		t.Fatalf("got %q", states)
	}
	for i := range want {
		if !strings.HasPrefix(states[i], want[i]) {
			t.Fatalf("message %d: got %q, want %q...", i, states[i], want[i])
		}
	}
	// Keep-alives stop with serve.
	n := sd.count("WATCHDOG=1")
	time.Sleep(150 * time.Millisecond)
	if sd.count("WATCHDOG=1") != n {
		t.Fatal("watchdog keep-alives after serve returned")
	}
}

// A serve that cannot start never reports itself ready: systemd sees the
// exit status instead.
func TestServeNotReadyOnFailure(t *testing.T) {
	sd := newFakeSystemd(t, 100*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listeners = ListenersConfig{MQTT: ln.Addr().String(), WS: off, MQTTS: off, WSS: off, HTTP: off}
	if err := runServe(context.Background(), cfg, io.Discard, discardLogger()); err == nil {
		t.Fatal("serve started on a port in use")
	}
	time.Sleep(50 * time.Millisecond)
	if msgs := sd.messages(); len(msgs) > 0 {
		t.Fatalf("sent %q", msgs)
	}
}
