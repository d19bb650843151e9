package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// runMain runs the feedmq command in a child process (this test binary,
// see TestMain) and returns its stdout, stderr and exit status.
func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FEEDMQ_TEST_RUN_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// configCases maps each file of testdata/config to the key (or, for a
// syntax error, the line) its error must name.
var configCases = map[string]string{
	"bad-address.yaml":            "listeners.mqtt",
	"bad-duration.yaml":           "line 2: idle_timeout",
	"bad-log-format.yaml":         "log_format",
	"bad-log-level.yaml":          "log_level",
	"fast-embed-poll.yaml":        "http.embed_poll_interval",
	"slow-embed-poll.yaml":        "http.embed_poll_interval",
	"mqtts-without-cert.yaml":     "listeners.mqtts",
	"negative-limit.yaml":         "limits.max_devices",
	"negative-bindings.yaml":      "limits.max_bindings_per_channel",
	"syntax-error.yaml":           "line 1",
	"small-body-budget.yaml":      "http.max_body_bytes_in_flight",
	"tls-cert-without-key.yaml":   "tls.key",
	"unknown-key.yaml":            `line 2: unknown key "loglevel"`,
	"unknown-nested-key.yaml":     `line 3: unknown key "limits.max_device"`,
	"value-len-over-payload.yaml": "limits.max_value_len",
	"wrong-type.yaml":             "line 3: limits.max_payload",
	"zero-timeout.yaml":           "connect_timeout",
	"zero-subscriptions.yaml":     "limits.max_subscriptions_per_client",
}

func TestConfigCheck(t *testing.T) {
	// Every file in testdata/config has a case: a new one cannot be
	// forgotten.
	files, err := filepath.Glob("../../testdata/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/config files: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		want, ok := configCases[name]
		if !ok {
			t.Errorf("testdata/config/%s has no case in configCases", name)
			continue
		}
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			out, _, err := runCommand(t, "config", "check", path)
			if err == nil {
				t.Fatalf("accepted; printed %q", out)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, want) {
				t.Fatalf("error %q does not name the file and %q", msg, want)
			}
			if out != "" {
				t.Fatalf("printed %q on failure", out)
			}
		})
	}

	t.Run("Default", func(t *testing.T) {
		const path = "../../configs/feedmq.yaml"
		out, _, err := runCommand(t, "config", "check", path)
		if err != nil || out != path+": ok\n" {
			t.Fatalf("got %q, %v", out, err)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		if _, _, err := runCommand(t, "config", "check", path); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("Usage", func(t *testing.T) {
		_, _, err := runCommand(t, "config", "check")
		if err == nil || !strings.Contains(err.Error(), "takes one configuration file") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("TLSFilesLoad", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "tls.yaml")
		cert := filepath.Join(dir, "missing.pem")
		writeFile(t, path, "tls:\n  cert: "+cert+"\n  key: "+cert+"\n")
		_, _, err := runCommand(t, "config", "check", path)
		if err == nil || !strings.Contains(err.Error(), "tls.cert, tls.key") || !strings.Contains(err.Error(), cert) {
			t.Fatalf("got %v", err)
		}
	})
	// Flags other than the file do not change what is checked.
	t.Run("FlagsIgnored", func(t *testing.T) {
		out, _, err := runCommand(t, "--log-level", "debug", "config", "check", "../../configs/feedmq.yaml")
		if err != nil || !strings.HasSuffix(out, ": ok\n") {
			t.Fatalf("got %q, %v", out, err)
		}
	})
}

// The exit status is what scripts and ExecStartPre= test.
func TestConfigCheckExitStatus(t *testing.T) {
	out, errOut, code := runMain(t, "config", "check", "../../configs/feedmq.yaml")
	if code != 0 || out != "../../configs/feedmq.yaml: ok\n" || errOut != "" {
		t.Fatalf("good file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	bad := "../../testdata/config/unknown-nested-key.yaml"
	out, errOut, code = runMain(t, "config", "check", bad)
	want := "feedmq: config " + bad + `: line 3: unknown key "limits.max_device"`
	if code != 1 || out != "" || !strings.HasPrefix(errOut, want) {
		t.Fatalf("bad file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	out := mustRun(t, t.TempDir(), "version")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	goLine := "go: " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	// `go test` stamps no VCS revision, so no commit line.
	if len(lines) != 2 || lines[0] != "feedmq dev" || lines[1] != goLine {
		t.Fatalf("got %q", out)
	}

	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	out = mustRun(t, t.TempDir(), "version")
	if want := "feedmq v1.2.3\n" + goLine + "\ncommit: " + commit + "\n"; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestCompletion(t *testing.T) {
	help, _, err := runCommand(t, "--help")
	if err != nil || !strings.Contains(help, "\n  completion ") {
		t.Fatalf("completion is not listed in help (%v):\n%s", err, help)
	}
	for shell, want := range map[string]string{
		"bash": "__start_feedmq",
		"zsh":  "#compdef feedmq",
		"fish": "complete -c feedmq",
	} {
		out, _, err := runCommand(t, "completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s: %v; output (%d bytes) lacks %q", shell, err, len(out), want)
		}
	}
}

func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	dir := t.TempDir()
	if _, _, err := runCommand(t, "man", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"feedmq.1", "feedmq-serve.1", "feedmq-config-check.1",
		"feedmq-channel-create.1", "feedmq-device-reset-password.1", "feedmq-completion-bash.1", "feedmq-version.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(".nh\n.TH ")) || !bytes.Contains(b, []byte(`"Jan 2026" "feedmq dev" "feedmq manual"`)) {
			t.Fatalf("%s: unexpected header:\n%.300s", page, b)
		}
	}
	serve, _ := os.ReadFile(filepath.Join(dir, "feedmq-serve.1"))
	for _, want := range []string{`\fB--mqtt\fP`, `\fB--tls-cert\fP`, "SIGTERM"} {
		if !bytes.Contains(serve, []byte(want)) {
			t.Errorf("feedmq-serve.1 lacks %q", want)
		}
	}
	// The generator itself is hidden and has no page.
	if _, err := os.Stat(filepath.Join(dir, "feedmq-man.1")); !os.IsNotExist(err) {
		t.Errorf("feedmq-man.1: %v", err)
	}
	if help, _, _ := runCommand(t, "--help"); strings.Contains(help, "\n  man ") {
		t.Error("man is listed in help")
	}
	// Same date, same pages.
	again := t.TempDir()
	if _, _, err := runCommand(t, "man", "--dir", again); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "feedmq.1"))
	b, _ := os.ReadFile(filepath.Join(again, "feedmq.1"))
	if !bytes.Equal(a, b) {
		t.Error("man pages differ between runs")
	}
	if _, _, err := runCommand(t, "man"); err == nil || !strings.Contains(err.Error(), "--dir") {
		t.Errorf("man without --dir: %v", err)
	}
}
