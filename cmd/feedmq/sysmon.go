package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Go's runtime has a monitor thread (sysmon) that sleeps deeply while
// every P is idle and is woken by the next system call; it then naps
// 20 µs at a time until all are idle again. A broker at a low message
// rate goes idle between messages, so every message woke it and paid for
// three or four naps: at 1000 messages/s, more than 4 of the 9 context
// switches and 4 of the 13 system calls per message, and a quarter of
// the CPU. With GODEBUG schedtrace set, sysmon never sleeps deeply: it
// naps for up to 10 ms while nothing needs it (100 wake-ups a second,
// busy or idle). The period set is the longest the runtime takes (about
// 24.8 days), so the trace it exists for prints at most one line per
// period. The first line is due once the monotonic clock (uptime) passes
// the period: at once on a host up longer than that. serve then executes
// itself with stderr on a pipe, reads that first line off it and drops
// it, and puts stderr back before doing anything else (schedSwallow).
//
// The runtime reads that setting only at start, so serve executes itself
// again with it. The caller's own GODEBUG is given back to the process
// environment afterwards, so that commands serve runs do not inherit it;
// a GODEBUG that already sets schedtrace is left alone.
const (
	sysmonSetting = "schedtrace=2147483647"
	// sysmonMark, in the environment of the process executed again,
	// holds the caller's GODEBUG: "=" and the value, or "" when unset.
	sysmonMark = "FEEDMQ_CALLER_GODEBUG"
	// schedMark, in that environment, names two descriptors: the read
	// end of the pipe stderr was put on, and the caller's stderr.
	schedMark = "FEEDMQ_SCHED_PIPE"
	// sysmonPeriod is the setting's period.
	sysmonPeriod = 2147483647 * time.Millisecond
)

// keepSysmonAwake executes serve again with sysmonSetting, or, in the
// process so executed, restores the caller's GODEBUG. It returns when
// nothing is to be done or the execution failed (serve then runs as it
// is).
func keepSysmonAwake() {
	if v, ok := os.LookupEnv(sysmonMark); ok {
		_ = os.Unsetenv(sysmonMark)
		if old, ok := strings.CutPrefix(v, "="); ok {
			_ = os.Setenv("GODEBUG", old)
		} else {
			_ = os.Unsetenv("GODEBUG")
		}
		if fds, ok := os.LookupEnv(schedMark); ok {
			_ = os.Unsetenv(schedMark)
			schedSwallow(fds)
		}
		return
	}
	env, ok := sysmonEnv(os.Args, os.Environ())
	if !ok {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil && time.Duration(ts.Nano()) >= sysmonPeriod {
		if restore, mark, err := schedPipe(); err == nil {
			defer restore()
			env = append(env, mark)
		}
	}
	_ = syscall.Exec(exe, os.Args, env) // returns only on failure
}

// schedPipe puts stderr on a pipe for the process about to be executed
// and returns what undoes it and the environment entry that tells that
// process where the pipe and the caller's stderr are. Both descriptors
// are left open across exec.
func schedPipe() (restore func(), mark string, err error) {
	saved, err := unix.Dup(2)
	if err != nil {
		return nil, "", err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], 0); err != nil {
		_ = unix.Close(saved)
		return nil, "", err
	}
	if err := unix.Dup2(p[1], 2); err != nil {
		_ = unix.Close(saved)
		_ = unix.Close(p[0])
		_ = unix.Close(p[1])
		return nil, "", err
	}
	_ = unix.Close(p[1])
	restore = func() {
		_ = unix.Dup2(saved, 2)
		_ = unix.Close(saved)
		_ = unix.Close(p[0])
	}
	return restore, fmt.Sprintf("%s=%d,%d", schedMark, p[0], saved), nil
}

// schedSwallow, in the process executed with stderr on a pipe, reads the
// runtime's first scheduler trace line off it (sysmon prints it within
// microseconds of the start), passes on anything else written there,
// and puts the caller's stderr back on descriptor 2. It waits at most a
// second for the line.
func schedSwallow(fds string) {
	rs, ss, ok := strings.Cut(fds, ",")
	r, err1 := strconv.Atoi(rs)
	saved, err2 := strconv.Atoi(ss)
	if !ok || err1 != nil || err2 != nil || r <= 2 || saved <= 2 || !schedPipeOnStderr(r, saved) {
		return
	}
	// os.Stderr was made while descriptor 2 was the pipe, which blocks,
	// so it never waits for room: on a non-blocking stderr that is full,
	// a write would fail and be lost. The caller's stderr blocks from
	// here on (what is passed on below included), as a descriptor
	// os/exec hands to a child does.
	_ = unix.SetNonblock(saved, false)
	defer func() {
		_ = unix.Dup2(saved, 2)
		_ = unix.Close(saved)
	}()
	if unix.SetNonblock(r, true) != nil {
		_ = unix.Close(r)
		return
	}
	f := os.NewFile(uintptr(r), "stderr pipe")
	defer f.Close()
	_ = f.SetReadDeadline(time.Now().Add(time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		got = append(got, buf[:n]...)
		rest, done := dropSchedLine(got)
		if done || err != nil {
			if len(rest) > 0 {
				_, _ = unix.Write(saved, rest)
			}
			return
		}
	}
}

// schedPipeOnStderr reports whether r is the read end of the pipe that
// descriptor 2 writes to and saved is open: the descriptors the process
// before exec set up, not ones an environment copied from elsewhere
// happens to name.
func schedPipeOnStderr(r, saved int) bool {
	var rs, es, ss unix.Stat_t
	if unix.Fstat(r, &rs) != nil || unix.Fstat(2, &es) != nil || unix.Fstat(saved, &ss) != nil {
		return false
	}
	if rs.Mode&unix.S_IFMT != unix.S_IFIFO || es.Mode&unix.S_IFMT != unix.S_IFIFO ||
		rs.Dev != es.Dev || rs.Ino != es.Ino {
		return false
	}
	fl, err := unix.FcntlInt(uintptr(r), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_ACCMODE == unix.O_RDONLY
}

// dropSchedLine returns b without its first complete line that starts
// with "SCHED ", and whether there was one.
func dropSchedLine(b []byte) ([]byte, bool) {
	for off := 0; off < len(b); {
		line := b[off:]
		end := bytes.IndexByte(line, '\n')
		if end < 0 {
			return b, false
		}
		if bytes.HasPrefix(line, []byte("SCHED ")) {
			return append(b[:off:off], line[end+1:]...), true
		}
		off += end + 1
	}
	return b, false
}

// sysmonEnv returns the environment to execute args again with, and
// false when args run no serve or GODEBUG already sets schedtrace.
func sysmonEnv(args, environ []string) ([]string, bool) {
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[:i]
	}
	if len(args) < 2 || !slices.Contains(args[1:], "serve") {
		return nil, false
	}
	env := make([]string, 0, len(environ)+2)
	mark, godebug := sysmonMark+"=", sysmonSetting
	for _, kv := range environ {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		switch {
		case !ok:
			if !strings.HasPrefix(kv, sysmonMark+"=") && !strings.HasPrefix(kv, schedMark+"=") {
				env = append(env, kv)
			}
		case strings.HasPrefix(v, "schedtrace=") || strings.Contains(v, ",schedtrace="):
			return nil, false
		default:
			mark += "=" + v
			if v != "" {
				godebug = v + "," + sysmonSetting
			}
		}
	}
	return append(env, "GODEBUG="+godebug, mark), true
}
