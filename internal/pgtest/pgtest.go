// Package pgtest runs a throwaway PostgreSQL server for tests: one server
// per test binary, started on first use, and a fresh database per test.
//
// A package's TestMain calls Run; a test calls New for the URL of an
// empty database of its own:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
//	func TestX(t *testing.T) { url := pgtest.New(t); ... }
//
// The server comes from the local PostgreSQL installation (Debian's
// postgresql package: /usr/lib/postgresql/<version>/bin, or initdb and
// postgres on PATH, or the directory in FEEDMQ_PG_BINDIR). Without one a
// test is skipped, except in CI (CI or FEEDMQ_REQUIRE_POSTGRES set), where
// a missing server is a failure. PostgreSQL refuses to run as root, so
// under root the server runs as the postgres OS user.
package pgtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// minVersion is the oldest PostgreSQL major version feedmq supports.
const minVersion = 15

var (
	mu      sync.Mutex
	running bool    // Run is running the tests
	srv     *server // started by the first New
	srvErr  error   // why the server could not start; every New reports it
	skipMsg string  // set when there is no PostgreSQL and skipping is allowed
	dbSeq   atomic.Uint64
)

// server is one running postmaster.
type server struct {
	dir  string // holds data/, the socket and the log
	port int
	cmd  *exec.Cmd
	exit chan struct{} // closed when the process has ended
	// passwords is set once pwGroup's members must log in with one.
	passwords bool
}

// Run runs the tests of m and then stops the server, if one was started.
// Call it from TestMain and pass its result to os.Exit.
func Run(m *testing.M) int {
	mu.Lock()
	running = true
	mu.Unlock()
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	running = false
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
		srv = nil
	}
	return code
}

// Required reports whether a missing PostgreSQL fails tests rather than
// skipping them: in CI, and wherever FEEDMQ_REQUIRE_POSTGRES is set.
func Required() bool {
	return os.Getenv("CI") != "" || os.Getenv("FEEDMQ_REQUIRE_POSTGRES") != ""
}

// New returns the URL of a new, empty database on the test binary's
// server, dropped when t ends (after cleanups registered later, such as
// closing a pool, have run).
func New(t testing.TB) string {
	t.Helper()
	s := get(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends connections a test left open.
		if err := s.exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	return s.url(name)
}

// Admin returns the URL of the server's maintenance database, for tests
// that need to act on the server itself (end other sessions, say).
func Admin(t testing.TB) string {
	t.Helper()
	return get(t).url("postgres")
}

// Crash stops the test binary's server as a crash would (an immediate
// shutdown: every session is cut, no checkpoint is written) and returns a
// function that starts it again on the same port and data directory,
// where it recovers from its write-ahead log. It is for tests of clients
// that must ride out a database restart; tests of the same binary that
// run in parallel lose their connections too. If the test ends before
// the returned function is called, the server is started again then.
func Crash(t testing.TB) (restart func()) {
	t.Helper()
	s := get(t)
	mu.Lock()
	defer mu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatalf("pgtest: stop the server: %v", err)
	}
	select {
	case <-s.exit:
	case <-time.After(30 * time.Second):
		t.Fatal("pgtest: the server did not stop within 30s of SIGQUIT")
	}
	var once sync.Once
	restart = func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			if err := s.relaunch(); err != nil {
				srvErr = err // later tests report it rather than hang
				t.Errorf("pgtest: restart the server: %v", err)
			}
		})
	}
	t.Cleanup(restart)
	return restart
}

// relaunch starts a stopped server again on its port. The port was free
// a moment ago; another process may have taken it since, so a failed
// start is retried for a few seconds.
func (s *server) relaunch() error {
	bin, err := findBinaries()
	if err != nil {
		return err
	}
	cred, err := credential()
	if err != nil {
		return err
	}
	var lastErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if lastErr = s.launch(bin, cred); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// get returns the running server, starting it on first use.
func get(t testing.TB) *server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !running {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Run")
	}
	if srv == nil && srvErr == nil && skipMsg == "" {
		bin, err := findBinaries()
		switch {
		case err != nil && !Required():
			skipMsg = err.Error() + " (install Debian's postgresql package, or set FEEDMQ_PG_BINDIR)"
		case err != nil:
			srvErr = fmt.Errorf("%w; FEEDMQ_REQUIRE_POSTGRES or CI is set, so this fails (make test-deps installs it)", err)
		default:
			srv, srvErr = start(bin)
		}
	}
	if skipMsg != "" {
		t.Skip("pgtest: " + skipMsg)
	}
	if srvErr != nil {
		t.Fatalf("pgtest: %v", srvErr)
	}
	return srv
}

// findBinaries returns the directory holding initdb and postgres of
// version minVersion or newer, the newest installed.
func findBinaries() (string, error) {
	var dirs []string
	if d := os.Getenv("FEEDMQ_PG_BINDIR"); d != "" {
		dirs = append(dirs, d)
	} else {
		if p, err := exec.LookPath("initdb"); err == nil {
			dirs = append(dirs, filepath.Dir(p))
		}
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		// Newest version first: "9" must not sort above "15".
		slices.SortFunc(found, func(a, b string) int {
			return versionOfDir(b) - versionOfDir(a)
		})
		dirs = append(dirs, found...)
	}
	var why []string
	for _, d := range dirs {
		v, err := serverVersion(d)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		if v < minVersion {
			why = append(why, fmt.Sprintf("%s is PostgreSQL %d, older than %d", d, v, minVersion))
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			why = append(why, err.Error())
			continue
		}
		return d, nil
	}
	if len(why) == 0 {
		return "", errors.New("no PostgreSQL server found (no initdb on PATH, nothing in /usr/lib/postgresql)")
	}
	return "", fmt.Errorf("no usable PostgreSQL server: %s", strings.Join(why, "; "))
}

func versionOfDir(d string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
	return v
}

// serverVersion runs "postgres --version" ("postgres (PostgreSQL) 15.8
// (Debian 15.8-0+deb12u1)") and returns the major version.
func serverVersion(dir string) (int, error) {
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s/postgres --version: %w", dir, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return 0, fmt.Errorf("%s/postgres --version: unexpected answer %q", dir, out)
	}
	major, _, _ := strings.Cut(f[2], ".")
	v, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("%s/postgres --version: unexpected answer %q", dir, out)
	}
	return v, nil
}

// credential returns who the server runs as: nil (this process's user)
// unless this process is root, which PostgreSQL refuses.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root: %w (the postgresql package creates that user)", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid or gid (%s, %s)", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// benchmarking reports whether the test binary runs benchmarks: they get
// a server that syncs to disk like a real one, tests a faster one.
func benchmarking() bool {
	f := flag.Lookup("test.bench")
	return f != nil && f.Value.String() != ""
}

// start initialises a cluster in a new temporary directory and starts a
// server on a free loopback port.
func start(bin string) (*server, error) {
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "feedmq-pgtest-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(fmt.Errorf("hand %s to user postgres: %w", dir, err))
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "--no-sync", "-D", data,
		"-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}
	// The port is free when looked at; another process may take it
	// before the server binds it, so a failed start tries another.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		s := &server{dir: dir, port: port}
		if err := s.launch(bin, cred); err != nil {
			lastErr = err
			continue
		}
		return s, nil
	}
	return fail(lastErr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the postmaster and waits until it accepts connections.
func (s *server) launch(bin string, cred *syscall.Credential) error {
	logPath := filepath.Join(s.dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	if cred != nil {
		if err := logf.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	args := []string{"-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"}
	if !benchmarking() {
		// Tests need no durability across a crash of this machine.
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Dir = s.dir
	// Pdeathsig: a test binary killed by its timeout must not leave a
	// server behind (SIGQUIT: immediate shutdown).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	s.exit = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the process
		// ends, not the process: this goroutine keeps its thread for
		// as long as the server runs (a goroutine that ends locked
		// takes its thread with it, once the server is gone).
		runtime.LockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.cmd.Wait()
		close(s.exit)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.exec(ctx, "SELECT 1")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exit:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited at start: %s", tail(out))
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres did not accept connections within 30s (%v): %s", err, tail(out))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (s *server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// exec runs one statement on the maintenance database.
func (s *server) exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

// stop shuts the server down (fast: sessions are ended), by PID, and
// removes its directory.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exit:
	case <-time.After(30 * time.Second):
		s.kill()
	}
	return os.RemoveAll(s.dir)
}

func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.exit
}

// pwGroup is the role whose members must log in with a password: the
// server trusts every other role (tests need no credentials).
const pwGroup = "pgtest_password"

// NewWithPassword is New for a role of its own that must give a password
// (SCRAM), for tests of credentials. It returns the database's URL, which
// holds no password, and the password. The role and the database are
// dropped when t ends.
func NewWithPassword(t testing.TB) (url, password string) {
	t.Helper()
	s := get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.requirePasswords(ctx); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	n := dbSeq.Add(1)
	role := fmt.Sprintf("pw%d_%d", os.Getpid(), n)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), n)
	password = fmt.Sprintf("pw-%d-%d-%d", os.Getpid(), n, time.Now().UnixNano())
	if err := s.exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE %s", role, password, pwGroup)); err != nil {
		t.Fatalf("pgtest: create role: %v", err)
	}
	if err := s.exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s TEMPLATE template0", name, role)); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
		if err := s.exec(ctx, "DROP ROLE "+role); err != nil {
			t.Errorf("pgtest: drop role: %v", err)
		}
	})
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", role, s.port, name), password
}

// requirePasswords makes the server ask pwGroup's members for a password,
// once: a line ahead of the trusting ones in pg_hba.conf, then a reload.
func (s *server) requirePasswords(ctx context.Context) error {
	mu.Lock()
	defer mu.Unlock()
	if s.passwords {
		return nil
	}
	if err := s.exec(ctx, "CREATE ROLE "+pwGroup+" NOLOGIN"); err != nil {
		return fmt.Errorf("create role %s: %w", pwGroup, err)
	}
	hba := filepath.Join(s.dir, "data", "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		return err
	}
	line := "host all +" + pwGroup + " 127.0.0.1/32 scram-sha-256\n"
	// Written in place: the file keeps its owner (the postgres user).
	if err := os.WriteFile(hba, append([]byte(line), old...), 0o600); err != nil {
		return err
	}
	if err := s.exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	// The reload is asynchronous: wait until a member without a
	// password is turned away.
	probe := pwGroup + "_probe"
	if err := s.exec(ctx, "CREATE ROLE "+probe+" LOGIN IN ROLE "+pwGroup); err != nil {
		return err
	}
	probeURL := strings.Replace(s.url("postgres"), "postgres@", probe+"@", 1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := pgx.Connect(ctx, probeURL)
		if err != nil {
			break
		}
		c.Close(context.Background())
		if time.Now().After(deadline) {
			return errors.New("the server did not load the password rule")
		}
	}
	s.passwords = true
	return nil
}
