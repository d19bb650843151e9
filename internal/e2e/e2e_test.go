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

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// feedmqBinary builds ./cmd/feedmq once per test run.
func feedmqBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "feedmq-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "feedmq")
		out, err := exec.Command("go", "build", "-race", "-o", binary, "github.com/feedmq/feedmq/cmd/feedmq").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

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
	cmd  *exec.Cmd
	addr string
	done chan error
	logs *lockedBuffer

	once    sync.Once
	exitErr error
}

// wait returns the process's exit error once it has ended.
func (s *server) wait() error {
	s.once.Do(func() { s.exitErr = <-s.done })
	return s.exitErr
}

// startServe starts `feedmq serve` on loopback port 0 and waits for its
// "mqtt listening on" line.
func startServe(t *testing.T, data string) *server {
	t.Helper()
	cmd := exec.Command(feedmqBinary(t), "serve", "--data", data, "--mqtt", "127.0.0.1:0",
		"--ws", "off", "--http", "off", "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, done: make(chan error, 1), logs: new(lockedBuffer)}
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
	for s.addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited before listening:\n%s", s.logs.String())
			}
			if a, found := strings.CutPrefix(l, "mqtt listening on "); found {
				s.addr = a
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("serve did not report its address:\n%s", s.logs.String())
		}
	}
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
