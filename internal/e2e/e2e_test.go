package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// build is one build of ./cmd/feedmq, made once per test run.
type build struct {
	once sync.Once
	path string
	err  error
	args []string
}

var (
	// raceBuild is what the crash tests run: the race detector watches
	// the server while it is killed and recovers.
	raceBuild = &build{args: []string{"-race"}}
	// plainBuild is what the flood tests run: their RSS bounds are about
	// the server as shipped, and the race detector multiplies memory.
	plainBuild = &build{}
)

func (b *build) binary(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "feedmq-e2e-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "feedmq")
		args := append(append([]string{"build"}, b.args...), "-o", b.path, "github.com/feedmq/feedmq/cmd/feedmq")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// feedmqBinary is the race-enabled build.
func feedmqBinary(t *testing.T) string { return raceBuild.binary(t) }

// cli runs an admin command and decodes its --json output into v.
func cli(t *testing.T, data string, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(feedmqBinary(t), append([]string{"--data", data}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("feedmq %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("feedmq %s: bad JSON %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// server is a running `feedmq serve` process.
type server struct {
	cmd   *exec.Cmd
	addr  string            // the mqtt listener
	addrs map[string]string // every listener by name ("mqtt", "ws", "http", ...)
	done  chan error
	logs  *lockedBuffer

	once    sync.Once
	exitErr error
}

// wait returns the process's exit error once it has ended.
func (s *server) wait() error {
	s.once.Do(func() { s.exitErr = <-s.done })
	return s.exitErr
}

// startServe starts the race-enabled `feedmq serve` on loopback port 0,
// MQTT only, and waits for its "mqtt listening on" line.
func startServe(t *testing.T, data string) *server {
	t.Helper()
	return startServeWith(t, raceBuild, data, "--mqtt", "127.0.0.1:0",
		"--ws", "off", "--http", "off", "--log-level", "warn")
}

// startServeWith starts `feedmq serve --data data args...` from build b
// and waits until it has printed its listeners (the line of "http" when
// it listens on HTTP, else of "mqtt"). Flags left out take serve's
// defaults, so args should set every listener.
func startServeWith(t *testing.T, b *build, data string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(b.binary(t), append([]string{"serve", "--data", data}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	last := "mqtt"
	for i, a := range args {
		if a == "--http" && i+1 < len(args) && args[i+1] != "off" {
			last = "http"
		}
	}
	s := &server{cmd: cmd, done: make(chan error, 1), logs: new(lockedBuffer), addrs: map[string]string{}}
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() { s.done <- cmd.Wait() }()
	deadline := time.After(20 * time.Second)
	for s.addrs[last] == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited before listening:\n%s", s.logs.String())
			}
			if name, a, found := strings.Cut(l, " listening on "); found {
				s.addrs[name] = a
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("serve did not report its address:\n%s", s.logs.String())
		}
	}
	s.addr = s.addrs["mqtt"]
	go func() {
		for range lines {
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = s.wait()
	})
	return s
}

// rss returns the resident memory of the server process, from
// /proc/<pid>/status, in bytes.
func (s *server) rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kib << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls the log until it contains s.
func (b *lockedBuffer) waitFor(s string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(b.String(), s) {
			return true
		}
	}
	return false
}
