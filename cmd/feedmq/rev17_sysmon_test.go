package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

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
}
