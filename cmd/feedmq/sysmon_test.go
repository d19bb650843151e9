package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSysmonEnv(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		environ []string
		want    []string // nil: not executed again
	}{
		{"serve", []string{"feedmq", "serve"}, []string{"HOME=/h"},
			[]string{"HOME=/h", "GODEBUG=" + sysmonSetting, sysmonMark + "="}},
		{"root flags first", []string{"feedmq", "--data", "/d", "serve", "--mqtt", ":1883"}, nil,
			[]string{"GODEBUG=" + sysmonSetting, sysmonMark + "="}},
		{"caller's GODEBUG kept", []string{"feedmq", "serve"}, []string{"GODEBUG=gctrace=1", "PATH=/bin"},
			[]string{"PATH=/bin", "GODEBUG=gctrace=1," + sysmonSetting, sysmonMark + "==gctrace=1"}},
		{"empty GODEBUG", []string{"feedmq", "serve"}, []string{"GODEBUG="},
			[]string{"GODEBUG=" + sysmonSetting, sysmonMark + "=="}},
		{"a stale mark is replaced", []string{"feedmq", "serve"}, []string{sysmonMark + "==x"},
			[]string{"GODEBUG=" + sysmonSetting, sysmonMark + "="}},
		{"a stale pipe mark is dropped", []string{"feedmq", "serve"}, []string{schedMark + "=3,4"},
			[]string{"GODEBUG=" + sysmonSetting, sysmonMark + "="}},
		{"caller's schedtrace", []string{"feedmq", "serve"}, []string{"GODEBUG=schedtrace=1000"}, nil},
		{"caller's schedtrace later", []string{"feedmq", "serve"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, nil},
		{"another command", []string{"feedmq", "channel", "list"}, nil, nil},
		{"serve after --", []string{"feedmq", "feed", "--", "serve"}, nil, nil},
		{"no command", []string{"feedmq"}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := sysmonEnv(c.args, c.environ)
			if ok != (c.want != nil) || !slices.Equal(got, c.want) {
				t.Fatalf("sysmonEnv(%q, %q) = %q, %v; want %q", c.args, c.environ, got, ok, c.want)
			}
		})
	}
}

// serve runs executed again with the setting, in the same process (the
// same PID: systemd's main process stays the one it started).
func TestServeKeepsSysmonAwake(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("no /proc")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "serve", "--data", dir, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off")
	cmd.Env = append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1", "GODEBUG=gctrace=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "mqtt listening on ") {
	}
	if sc.Err() != nil {
		t.Fatal(sc.Err())
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(string(b), "\x00")
	for _, want := range []string{"GODEBUG=gctrace=0," + sysmonSetting, sysmonMark + "==gctrace=0"} {
		if !slices.Contains(env, want) {
			t.Fatalf("serve's environment lacks %s", want)
		}
	}
}

// serve writes nothing but its own output on a host that has been up for
// a long time. The runtime's scheduler trace (GODEBUG schedtrace, which
// serve sets to keep sysmon awake) prints its first line once the
// monotonic clock, which counts from boot, passes the trace's period:
// at once on a host up for more than 24.8 days. The test runs serve in a
// time namespace whose monotonic clock is 25.5 days ahead.
func TestServeQuietOnLongUptime(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare")
	}
	if err := exec.Command("unshare", "--time", "--monotonic=2200000", "true").Run(); err != nil {
		t.Skipf("no time namespace here: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--time", "--monotonic=2200000",
		os.Args[0], "serve", "--data", dir, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "mqtt listening on ") {
	}
	// sysmon's first round comes within microseconds of the start, long
	// before the listener is up.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if strings.Contains(stderr.String(), "SCHED ") {
		t.Fatalf("serve printed the runtime's scheduler trace:\n%s", stderr.String())
	}

	// stderr is the caller's again: serve's own errors reach it.
	cmd = exec.Command("unshare", "--time", "--monotonic=2200000", os.Args[0], "serve", "--no-such-flag")
	cmd.Env = append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1")
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("serve --no-such-flag succeeded")
	}
	if got := stderr.String(); strings.Contains(got, "SCHED ") || !strings.Contains(got, "no-such-flag") {
		t.Fatalf("stderr of serve --no-such-flag:\n%s", got)
	}
}

func TestDropSchedLine(t *testing.T) {
	for _, c := range []struct {
		in, want string
		done     bool
	}{
		{"", "", false},
		{"SCHED 0ms: gomaxprocs=2", "SCHED 0ms: gomaxprocs=2", false}, // not yet whole
		{"SCHED 0ms: gomaxprocs=2\n", "", true},
		{"warning\nSCHED 1ms: x\nafter", "warning\nafter", true},
		{"a SCHED line\n", "a SCHED line\n", false},
		{"SCHEDULE\nSCHED 2ms\n", "SCHEDULE\n", true},
	} {
		got, done := dropSchedLine([]byte(c.in))
		if string(got) != c.want || done != c.done {
			t.Errorf("dropSchedLine(%q) = %q, %v; want %q, %v", c.in, got, done, c.want, c.done)
		}
	}
}

// A FEEDMQ_SCHED_PIPE in serve's own environment (copied, say, from
// /proc/PID/environ of a running serve, with or without the caller's
// GODEBUG mark) names no pipe of this start: serve's stderr stays the
// caller's, and the descriptors it names are left alone.
func TestServeStaleSchedPipe(t *testing.T) {
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"pipe mark", []string{schedMark + "=9,3"}},
		{"both marks", []string{sysmonMark + "=", schedMark + "=9,3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			other, err := os.Create(t.TempDir() + "/other")
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			cmd := exec.Command(os.Args[0], "serve", "--no-such-flag")
			// Descriptor 3 in serve is other; 9 is not open.
			cmd.ExtraFiles = []*os.File{other}
			cmd.Env = append(append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1"), c.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err == nil {
				t.Fatal("serve --no-such-flag succeeded")
			}
			if got := stderr.String(); !strings.Contains(got, "no-such-flag") {
				b, _ := os.ReadFile(other.Name())
				t.Fatalf("stderr of serve --no-such-flag: %q; descriptor 3 got %q", got, b)
			}
		})
	}
}

// serve's errors reach a caller's stderr that is non-blocking and full
// (a log reader that is behind): the write waits for room, as Go's
// os.Stderr does for a non-blocking descriptor it finds at start, on
// this host and in a time namespace 25.5 days ahead (stderr is on a pipe
// at the start there, and is the caller's again afterwards).
func TestServeNonblockingStderr(t *testing.T) {
	for _, c := range []struct {
		name   string
		prefix []string
	}{
		{"this host", nil},
		{"up 25.5 days", []string{"unshare", "--time", "--monotonic=2200000"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			argv := append(slices.Clone(c.prefix), os.Args[0], "serve", "--no-such-flag")
			if c.prefix != nil {
				if _, err := exec.LookPath("unshare"); err != nil {
					t.Skip("no unshare")
				}
				if err := exec.Command("unshare", "--time", "--monotonic=2200000", "true").Run(); err != nil {
					t.Skipf("no time namespace here: %v", err)
				}
			}
			path, err := exec.LookPath(argv[0])
			if err != nil {
				t.Fatal(err)
			}
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			defer unix.Close(p[0])
			wclosed := false
			defer func() {
				if !wclosed {
					_ = unix.Close(p[1])
				}
			}()
			// The smallest pipe, full before serve starts.
			_, _ = unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 4096)
			filler := bytes.Repeat([]byte{'.'}, 4096)
			filled := 0
			for {
				n, err := unix.Write(p[1], filler)
				if err != nil {
					break
				}
				filled += n
			}
			null, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			defer null.Close()
			// Started without os/exec, which makes the descriptors it
			// hands over blocking.
			pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
				Env:   append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1"),
				Files: []uintptr{null.Fd(), null.Fd(), uintptr(p[1])},
			})
			if err != nil {
				t.Fatal(err)
			}
			_ = unix.Close(p[1])
			wclosed = true
			time.Sleep(300 * time.Millisecond) // serve writes its error meanwhile, or tries to
			if err := unix.SetNonblock(p[0], false); err != nil {
				t.Fatal(err)
			}
			var got []byte
			buf := make([]byte, 4096)
			for {
				n, err := unix.Read(p[0], buf)
				if n <= 0 || err != nil {
					break
				}
				got = append(got, buf[:n]...)
			}
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
				t.Fatal(err)
			}
			if rest := string(got[min(filled, len(got)):]); !strings.Contains(rest, "no-such-flag") {
				t.Fatalf("serve --no-such-flag wrote %q to its stderr after the %d bytes already there (exit %v)", rest, filled, ws)
			}
		})
	}
}
