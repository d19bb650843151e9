package adminsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Handler serves one request. args is the raw "args" value (nil when the
// request has none); the result is encoded as JSON.
type Handler func(ctx context.Context, op string, args json.RawMessage) (any, error)

// Server accepts connections on a unix socket and runs a Handler for
// every request.
type Server struct {
	path    string
	ln      *net.UnixListener
	handler Handler
	ctx     context.Context
	cancel  context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// CloseGrace is how long Close lets requests in progress run before it
// cancels their context.
const CloseGrace = 5 * time.Second

// ErrRunning is returned by Listen when a live server already answers on
// the socket.
var ErrRunning = errors.New("another feedmq serve is running on this data directory")

// Listen creates the socket at path with permission 0600 and serves
// requests with handler until Close. A socket file left by a server that
// is gone is replaced; a live one is an error wrapping ErrRunning.
func Listen(path string, handler Handler) (*Server, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{path: path, ln: ln, handler: handler, ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path returns the socket path.
func (s *Server) Path() string { return s.path }

// Close stops accepting, lets requests in progress finish (cancelling
// their context after CloseGrace), closes every connection and removes
// the socket file.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			// Wake readers; a handler in progress still writes its answer.
			_ = c.SetReadDeadline(time.Unix(1, 0))
		}
		s.conns = nil // refuse connections accepted from now on
		s.mu.Unlock()
		s.wait()
		if rmErr := os.Remove(s.path); rmErr != nil && !os.IsNotExist(rmErr) && err == nil {
			err = rmErr
		}
	})
	return err
}

// wait waits for the connection goroutines. Requests in progress get
// CloseGrace to finish; then their context is cancelled.
func (s *Server) wait() {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTimer(CloseGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	s.cancel()
	<-done
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// track registers c, or reports false when the server is closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 4096), MaxRequestSize)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		if err := enc.Encode(s.serveRequest(sc.Bytes())); err != nil {
			return
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		_ = enc.Encode(response{Error: &Error{Code: "invalid", Message: fmt.Sprintf("request larger than %d bytes", MaxRequestSize)}})
	}
}

// serveRequest decodes one request line, runs the handler and builds the
// answer. A panicking handler answers with an internal error.
func (s *Server) serveRequest(line []byte) (resp response) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil || req.Op == "" {
		return response{Error: &Error{Code: "invalid", Message: "malformed admin request"}}
	}
	defer func() {
		if r := recover(); r != nil {
			resp = response{Error: &Error{Code: CodeInternal, Message: fmt.Sprintf("admin operation %s panicked: %v", req.Op, r)}}
		}
	}()
	result, err := s.handler(s.ctx, req.Op, req.Args)
	if err != nil {
		return response{Error: toError(err)}
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return response{Error: &Error{Code: CodeInternal, Message: fmt.Sprintf("encode result of %s: %v", req.Op, err)}}
	}
	return response{Result: raw}
}

// removeStale removes a socket file that nothing answers on. It returns an
// error wrapping ErrRunning when a server answers, and refuses to remove a
// path that is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("admin socket %s exists and is not a socket; move it away", path)
	}
	c, err := Dial(path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w (admin socket %s answers)", ErrRunning, path)
	}
	if !errors.Is(err, ErrNoServer) {
		return err
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove stale admin socket: %w", err)
	}
	return nil
}

// listenPrivate binds the socket in a fresh private directory next to
// path, sets its mode to 0600 and renames it into place, so that it is
// never reachable with a wider mode.
func listenPrivate(path string) (*net.UnixListener, error) {
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".sock")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w (a shorter --data path may help)", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}
