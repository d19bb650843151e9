package httpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
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
	// Addr is the host:port to listen on (port 0 picks one); "" for none.
	Addr string
	// TLSAddr, when set, is a second host:port that serves the same
	// handler over TLS with TLSConfig, which must hold the certificate
	// (Certificates or GetCertificate). Requests there have r.TLS set.
	TLSAddr   string
	TLSConfig *tls.Config
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
	// Feeds (the API's Store) are set by the server; Throttle, when nil,
	// is the API's KeyThrottle (one budget of wrong guesses per address)
	// and Refusals the API's (one metric).
	Console *ConsoleOptions
}

// Server is feedmq's HTTP listener: the dashboard in front of /metrics and
// the REST API, with the listener's timeouts. Open binds and serves; Close
// shuts down.
type Server struct {
	opts    ServerOptions
	log     *slog.Logger
	ln      net.Listener // nil without Addr
	tlsLn   net.Listener // nil without TLSAddr
	srv     *http.Server
	console *Console
	done    sync.WaitGroup // the Serve loops
	// refusals counts the API's refused requests.
	refusals *Refusals
	bodies   *bodyBudget // shared by the API and the console
}

// Refusals returns the counts of requests the API refused, by reason.
func (s *Server) Refusals() *Refusals { return s.refusals }

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
	if api.Refusals == nil {
		api.Refusals = &Refusals{}
	}
	// A stalled reader trips the write deadline and frees what it holds
	// long before the whole answer's deadline.
	api.ResponseTimeout = ResponseTimeout
	// One budget for every body the server reads: the API's and the
	// console's.
	api.bodies = newBodyBudget(api.MaxBodyBytesInFlight)
	mux.Handle("/", NewAPI(api))
	dopts := opts.Dashboard
	dopts.Next, dopts.Logger = mux, log
	if dopts.Refusals == nil {
		dopts.Refusals = api.Refusals
	}
	s := &Server{opts: opts, log: log, refusals: api.Refusals, bodies: api.bodies}
	if opts.Console != nil {
		copts := *opts.Console
		copts.Logger, copts.Feeds, copts.bodies = log, api.Store, api.bodies
		if copts.Throttle == nil {
			copts.Throttle = api.KeyThrottle
		}
		if copts.Refusals == nil {
			copts.Refusals = api.Refusals
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

// Open binds Addr and TLSAddr and serves in the background. A port in
// use fails here, at startup, with nothing left bound.
func (s *Server) Open() error {
	o := s.opts
	if o.Addr == "" && o.TLSAddr == "" {
		return errors.New("http listener: no address")
	}
	var tlsConfig *tls.Config
	if o.TLSAddr != "" {
		if o.TLSConfig == nil || (len(o.TLSConfig.Certificates) == 0 && o.TLSConfig.GetCertificate == nil) {
			return errors.New("https listener: needs a certificate")
		}
		tlsConfig = o.TLSConfig.Clone()
		tlsConfig.MinVersion = max(tlsConfig.MinVersion, tls.VersionTLS12)
		// HTTP/1.1 only, as on the plain listener, whose timeouts and
		// stream limits assume one request at a time per connection.
		tlsConfig.NextProtos = []string{"http/1.1"}
	}
	var ln, tlsLn net.Listener
	if o.Addr != "" {
		l, err := net.Listen("tcp", o.Addr)
		if err != nil {
			return fmt.Errorf("http listener: %w", err)
		}
		ln = l
	}
	if o.TLSAddr != "" {
		l, err := net.Listen("tcp", o.TLSAddr)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			return fmt.Errorf("https listener: %w", err)
		}
		// net/http does the handshake (bounded by the read timeouts) on
		// the connection's goroutine, and answers plain HTTP with 400.
		tlsLn = tls.NewListener(l, tlsConfig)
	}
	s.ln, s.tlsLn = ln, tlsLn
	for _, l := range []net.Listener{ln, tlsLn} {
		if l == nil {
			continue
		}
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http listener stopped", "addr", l.Addr().String(), "error", err)
			}
		}()
	}
	return nil
}

// Console returns the web console, nil when it is off.
func (s *Server) Console() *Console { return s.console }

// Addr returns the bound address of Addr; nil before Open or without it.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// TLSAddr returns the bound address of TLSAddr; nil before Open or
// without it.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Close stops accepting requests and waits up to 5 s for those in
// flight, then closes what is left. It does nothing before Open.
func (s *Server) Close() error {
	if s.ln == nil && s.tlsLn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	s.done.Wait()
	return err
}
