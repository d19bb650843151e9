package main

import (
	"os"
	"slices"
	"strings"
	"syscall"
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
// period (none while the host has been up less than that).
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
	_ = syscall.Exec(exe, os.Args, env) // returns only on failure
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
			if !strings.HasPrefix(kv, sysmonMark+"=") {
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
