package adminsock_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/adminsock"
)

type echoArgs struct {
	N int `json:"n"`
}

// handler answers "echo" with its args doubled, "fail" with a coded error,
// "oops" with a plain error, "panic" by panicking, and "slow" after the
// context ends or release is closed.
func handler(release <-chan struct{}) adminsock.Handler {
	return func(ctx context.Context, op string, args json.RawMessage) (any, error) {
		switch op {
		case "echo":
			var a echoArgs
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, &adminsock.Error{Code: "invalid", Message: "bad args"}
			}
			return echoArgs{N: 2 * a.N}, nil
		case "fail":
			return nil, fmt.Errorf("wrapped: %w", &adminsock.Error{Code: "not_found", Message: "channel 9 not found"})
		case "oops":
			return nil, errors.New("disk on fire")
		case "panic":
			panic("boom")
		case "slow":
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, &adminsock.Error{Code: "invalid", Message: "unknown op " + op}
	}
}

func mustListen(tb testing.TB) (*adminsock.Server, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "feedmq.sock")
	s, err := adminsock.Listen(path, handler(nil))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, path
}

func mustDial(tb testing.TB, path string) *adminsock.Client {
	tb.Helper()
	c, err := adminsock.Dial(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func TestCall(t *testing.T) {
	_, path := mustListen(t)
	c := mustDial(t, path)
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		for i := 1; i <= 3; i++ { // several requests on one connection
			var got echoArgs
			if err := c.Call(ctx, "echo", echoArgs{N: i}, &got); err != nil {
				t.Fatal(err)
			}
			if got.N != 2*i {
				t.Fatalf("got %d, want %d", got.N, 2*i)
			}
		}
	})
	t.Run("CodedError", func(t *testing.T) {
		err := c.Call(ctx, "fail", nil, nil)
		var e *adminsock.Error
		if !errors.As(err, &e) || e.Code != "not_found" || e.Message != "channel 9 not found" {
			t.Fatalf("got %#v", err)
		}
	})
	t.Run("PlainErrorIsInternal", func(t *testing.T) {
		err := c.Call(ctx, "oops", nil, nil)
		var e *adminsock.Error
		if !errors.As(err, &e) || e.Code != adminsock.CodeInternal || e.Message != "disk on fire" {
			t.Fatalf("got %#v", err)
		}
	})
	t.Run("Panic", func(t *testing.T) {
		err := c.Call(ctx, "panic", nil, nil)
		var e *adminsock.Error
		if !errors.As(err, &e) || e.Code != adminsock.CodeInternal || !strings.Contains(e.Message, "boom") {
			t.Fatalf("got %#v", err)
		}
		// The connection survives.
		if err := c.Call(ctx, "echo", echoArgs{N: 1}, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var got echoArgs
				if err := c.Call(ctx, "echo", echoArgs{N: i}, &got); err != nil || got.N != 2*i {
					t.Errorf("call %d: %v, %d", i, err, got.N)
				}
			}()
		}
		wg.Wait()
	})
}

func TestMalformedRequest(t *testing.T) {
	_, path := mustListen(t)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, `{"op":`)
	fmt.Fprintln(conn, `{"op":"echo","args":{"n":4}}`)
	r := bufio.NewReader(conn)
	for _, want := range []string{
		`{"error":{"code":"invalid","message":"malformed admin request"}}`,
		`{"result":{"n":8}}`,
	} {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(line); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}

func TestListen(t *testing.T) {
	t.Run("Mode0600", func(t *testing.T) {
		_, path := mustListen(t)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want socket with 0600", fi.Mode())
		}
		// No temporary directory is left behind.
		ents, _ := os.ReadDir(filepath.Dir(path))
		if len(ents) != 1 {
			t.Fatalf("directory holds %d entries, want only the socket", len(ents))
		}
	})
	t.Run("LiveServerRefused", func(t *testing.T) {
		_, path := mustListen(t)
		_, err := adminsock.Listen(path, handler(nil))
		if !errors.Is(err, adminsock.ErrRunning) {
			t.Fatalf("got %v, want ErrRunning", err)
		}
		if !strings.Contains(err.Error(), "another feedmq serve is running on this data directory") {
			t.Fatalf("message %q", err)
		}
	})
	t.Run("StaleSocketReplaced", func(t *testing.T) {
		path := staleSocket(t)
		s, err := adminsock.Listen(path, handler(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := mustDial(t, path).Call(context.Background(), "echo", echoArgs{}, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NotASocketRefused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "feedmq.sock")
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := adminsock.Listen(path, handler(nil)); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("got %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatal("the file was removed")
		}
	})
}

// staleSocket leaves a socket file that nothing listens on.
func staleSocket(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "feedmq.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	return path
}

func TestDialNoServer(t *testing.T) {
	for name, path := range map[string]string{
		"Missing": filepath.Join(t.TempDir(), "feedmq.sock"),
		"Stale":   staleSocket(t),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := adminsock.Dial(path); !errors.Is(err, adminsock.ErrNoServer) {
				t.Fatalf("got %v, want ErrNoServer", err)
			}
		})
	}
}

func TestCallContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feedmq.sock")
	release := make(chan struct{})
	s, err := adminsock.Listen(path, handler(release))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer close(release)
	c := mustDial(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	// The exchange was cut short, so the connection is not reused.
	if err := c.Call(context.Background(), "echo", echoArgs{}, nil); err == nil {
		t.Fatal("call on a broken connection succeeded")
	}
}

func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feedmq.sock")
	release := make(chan struct{})
	s, err := adminsock.Listen(path, handler(release))
	if err != nil {
		t.Fatal(err)
	}
	idle := mustDial(t, path)
	if err := idle.Call(context.Background(), "echo", echoArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	busy := mustDial(t, path)
	result := make(chan error, 1)
	go func() {
		var got string
		err := busy.Call(context.Background(), "slow", nil, &got)
		if err == nil && got != "done" {
			err = fmt.Errorf("got %q", got)
		}
		result <- err
	}()
	time.Sleep(20 * time.Millisecond) // let "slow" start
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a request was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-result; err != nil {
		t.Fatalf("request in progress during Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file still there: %v", err)
	}
	if err := idle.Call(context.Background(), "echo", echoArgs{}, nil); err == nil {
		t.Fatal("call after Close succeeded")
	}
}
