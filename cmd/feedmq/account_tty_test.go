//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal, closed when the
// test ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// ttySession runs feedmq set-password in a child process whose stdin is a
// terminal, typing each answer once the prompt is shown and echo is off.
// It returns the exit status, stdout, stderr and everything the terminal
// echoed.
func ttySession(t *testing.T, dir string, answers ...string) (code int, stdout, stderr, echoed string) {
	t.Helper()
	master, slave := openPTY(t)
	var echo syncBuffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			echo.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	cmd := exec.Command(os.Args[0], "--data", dir, "account", "set-password")
	cmd.Env = append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1")
	var out, errOut syncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	echoOff := func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO == 0
	}
	for i, answer := range answers {
		prompt := []string{"New console password: ", "Repeat it: "}[i]
		waitFor(t, func() bool { return strings.Contains(errOut.String(), prompt) && echoOff() })
		if _, err := master.Write([]byte(answer + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	err := cmd.Wait()
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String(), echo.String()
}

// On a terminal, set-password asks twice without echo.
func TestAccountSetPasswordTerminal(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut, echoed := ttySession(t, dir, "typed password", "typed password")
	if code != 0 || !strings.Contains(out, "Console password set") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if strings.Contains(echoed, "typed") || strings.Contains(errOut, "typed") {
		t.Fatalf("the password was echoed: %q, stderr %q", echoed, errOut)
	}
	if err := verifyPassword(t, dir, "typed password"); err != nil {
		t.Fatal(err)
	}

	// Two different answers change nothing.
	code, _, errOut, _ = ttySession(t, dir, "another password", "an0ther password")
	if code == 0 || !strings.Contains(errOut, "the two passwords differ; nothing changed") {
		t.Fatalf("mismatch: exit %d, stderr %q", code, errOut)
	}
	// A password that breaks the rules is refused before the repeat.
	code, _, errOut, _ = ttySession(t, dir, "short")
	if code == 0 || !strings.Contains(errOut, "password is too short") || strings.Contains(errOut, "Repeat") {
		t.Fatalf("short: exit %d, stderr %q", code, errOut)
	}
	if err := verifyPassword(t, dir, "typed password"); err != nil {
		t.Fatalf("a refused change changed the password: %v", err)
	}
}
