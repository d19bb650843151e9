package httpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts of the HTTP listener. Devices on slow links get generous
// bounds; a client that sends nothing is cut off quickly.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	// ResponseTimeout is the server's write deadline for a whole answer
	// (an 8000-entry CSV over a slow link); a per-write timeout longer
	// than it would never trip.
	ResponseTimeout = 2 * time.Minute
	idleTimeout     = 2 * time.Minute
	maxHeaderBytes  = 16 << 10
	// shutdownTimeout bounds the wait for requests in flight at
	// shutdown; writes among them are committed before the broker closes.
	shutdownTimeout = 5 * time.Second
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Addr is the host:port to listen on (port 0 picks one).
	Addr string
	// Logger receives the server's and its handlers' failures; default:
	// discard. It replaces the API's and the dashboard's Logger.
	Logger *slog.Logger
	// API configures the REST API, which serves every path the dashboard
	// and /metrics do not. ResponseTimeout is set by the server.
	API APIOptions
	// Dashboard configures the web dashboard. Next is set by the server.
	Dashboard DashboardOptions
	// Metrics, when set, serves GET /metrics.
	Metrics http.Handler
	// Console, when set, serves the web console at /console and lets its
	// signed-in owner read private channels on the dashboard. Logger and
	// Feeds (the API's Store) are set by the server, and Throttle, when
	// nil, is the API's KeyThrottle: one budget of wrong guesses per
	// address.
	Console *ConsoleOptions
}

// Server is feedmq's HTTP listener: the dashboard in front of /metrics and
// the REST API, with the listener's timeouts. Open binds and serves; Close
// shuts down.
type Server struct {
	opts    ServerOptions
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	console *Console
	done    chan struct{}
}

// NewServer returns a server that is not yet listening. The API's and the
// dashboard's required options are checked here (they panic when missing).
func NewServer(opts ServerOptions) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	if opts.Metrics != nil {
		mux.Handle("/metrics", opts.Metrics)
	}
	api := opts.API
	api.Logger = log
	// A stalled reader trips the write deadline and frees what it holds
	// long before the whole answer's deadline.
	api.ResponseTimeout = ResponseTimeout
	mux.Handle("/", NewAPI(api))
	dopts := opts.Dashboard
	dopts.Next, dopts.Logger = mux, log
	s := &Server{opts: opts, log: log, done: make(chan struct{})}
	if opts.Console != nil {
		copts := *opts.Console
		copts.Logger, copts.Feeds = log, api.Store
		if copts.Throttle == nil {
			copts.Throttle = api.KeyThrottle
		}
		s.console = NewConsole(copts)
		mux.Handle("/console", s.console)
		mux.Handle("/console/", s.console)
		dopts.Owner = s.console.Owner
	}
	dash := NewDashboard(dopts)
	s.srv = &http.Server{
		Handler:           dash,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      ResponseTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// Malformed requests from the internet are not worth a warning.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Shutdown ends the event streams, so that it need not wait for them.
	s.srv.RegisterOnShutdown(dash.Shutdown)
	return s
}

// Open binds Addr and serves in the background. A port in use fails here,
// at startup.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", "error", err)
		}
	}()
	return nil
}

// Console returns the web console, nil when it is off (its Counters are
// for /metrics).
func (s *Server) Console() *Console { return s.console }

// Addr returns the bound address; nil before Open.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting requests and waits up to 5 s for those in
// flight, then closes what is left. It does nothing before Open.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	return err
}
