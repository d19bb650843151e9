package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// runCommandIn is runCommand with stdin.
func runCommandIn(t testing.TB, stdin io.Reader, args ...string) (stdout string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(stdin)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), err
}

// setPassword runs account set-password --password-stdin on dir.
func setPassword(t testing.TB, dir, password string) {
	t.Helper()
	if _, err := runCommandIn(t, strings.NewReader(password+"\n"), "--data", dir, "account", "set-password", "--password-stdin"); err != nil {
		t.Fatalf("set-password: %v", err)
	}
}

// verifyPassword checks password through the admin service of dir (the
// socket when a server runs, else the file).
func verifyPassword(t testing.TB, dir, password string) error {
	t.Helper()
	a, err := admin.Open(context.Background(), dir, admin.Options{LockTimeout: adminLockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	return a.VerifyPassword(context.Background(), password)
}

var userKeyRE = regexp.MustCompile(`^[A-Z0-9]{16}$`)

func TestAccountCommands(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		// set-password may start a database, as a provisioning script
		// would run it before the first serve.
		out, err := runCommandIn(t, strings.NewReader("first password\r\n"), "--data", dir, "account", "set-password", "--password-stdin")
		if err != nil || !strings.Contains(out, "Console password set") {
			t.Fatalf("set-password: %q, %v", out, err)
		}
		if err := verifyPassword(t, dir, "first password"); err != nil {
			t.Fatalf("the password read from stdin (CRLF stripped): %v", err)
		}
		var raw map[string]any
		mustJSON(t, dir, &raw, "account", "show", "--json")
		if got := strings.Join(keys(raw), ","); got != "password_changed_at,password_set,user_api_key" {
			t.Fatalf("account show --json keys: %s", got)
		}
		var shown accountJSON
		mustJSON(t, dir, &shown, "account", "show", "--json")
		if !userKeyRE.MatchString(shown.UserAPIKey) || !shown.PasswordSet || shown.PasswordChangedAt == nil {
			t.Fatalf("account show: %+v", shown)
		}
		var again accountJSON
		if mustJSON(t, dir, &again, "account", "show", "--json"); again.UserAPIKey != shown.UserAPIKey {
			t.Fatalf("the key changed between two shows: %q, %q", shown.UserAPIKey, again.UserAPIKey)
		}
		human := mustRun(t, dir, "account", "show")
		if !regexp.MustCompile(`User API key: +`+shown.UserAPIKey+`\n`).MatchString(human) ||
			!regexp.MustCompile(`Console password: +set on 20`).MatchString(human) {
			t.Fatalf("account show:\n%s", human)
		}

		var next accountJSON
		mustJSON(t, dir, &next, "account", "regenerate-key", "--json")
		if !userKeyRE.MatchString(next.UserAPIKey) || next.UserAPIKey == shown.UserAPIKey || !next.PasswordSet {
			t.Fatalf("regenerate-key: %+v after %+v", next, shown)
		}
		if mustJSON(t, dir, &again, "account", "show", "--json"); again.UserAPIKey != next.UserAPIKey {
			t.Fatalf("show after regenerate: %q, want %q", again.UserAPIKey, next.UserAPIKey)
		}
		if out := mustRun(t, dir, "account", "regenerate-key"); !strings.Contains(out, "User API key:") {
			t.Fatalf("regenerate-key:\n%s", out)
		}

		setPassword(t, dir, "second password")
		if err := verifyPassword(t, dir, "first password"); !errors.Is(err, auth.ErrBadPassword) {
			t.Fatalf("old password after a change: %v", err)
		}
		if err := verifyPassword(t, dir, "second password"); err != nil {
			t.Fatal(err)
		}
	})
}

// Before a password is set, show says so and how to set one.
func TestAccountShowWithoutPassword(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "c")
		out := mustRun(t, dir, "account", "show", "--json")
		if !strings.Contains(out, `"password_set": false`) || !strings.Contains(out, `"password_changed_at": null`) {
			t.Fatalf("account show --json:\n%s", out)
		}
		if out := mustRun(t, dir, "account", "show"); !strings.Contains(out, "not set (feedmq account set-password") {
			t.Fatalf("account show:\n%s", out)
		}
	})
}

// Commands that only read or change an account refuse a data directory
// without a database (most likely a mistyped --data).
func TestAccountNoDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	for _, args := range []string{"account show", "account regenerate-key"} {
		got := mustFail(t, dir, strings.Fields(args)...)
		if !strings.Contains(got, "no feedmq database in "+dir+"; give the --data directory of your instance, or start one with feedmq serve") {
			t.Errorf("%s: %q", args, got)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data directory created: %v", err)
	}
}

// Bad input to set-password changes nothing, not even create a database,
// and says what is wrong.
func TestAccountSetPasswordRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	for _, tc := range []struct {
		desc, stdin string
		args        []string
		want        string
	}{
		{"no terminal and no flag", "a good password\n", nil, "standard input is not a terminal, so the password cannot be asked for; use --password-stdin"},
		{"empty stdin", "", []string{"--password-stdin"}, "standard input is empty"},
		{"empty line", "\nsecond line\n", []string{"--password-stdin"}, "password is too short: at least 8 characters"},
		{"seven characters", "1234567\n", []string{"--password-stdin"}, "password is too short"},
		{"seven runes", "ééééééé\n", []string{"--password-stdin"}, "password is too short"},
		{"1025 bytes", strings.Repeat("p", 1025) + "\n", []string{"--password-stdin"}, "password is too long: at most 1024 bytes"},
		{"a megabyte without newline", strings.Repeat("p", 1<<20), []string{"--password-stdin"}, "password is too long"},
		{"invalid UTF-8", "abcdefgh\xff\n", []string{"--password-stdin"}, "password is not valid UTF-8"},
		{"an argument", "", []string{"--password-stdin", "hunter22"}, `unknown command "hunter22"`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			args := append([]string{"--data", dir, "account", "set-password"}, tc.args...)
			_, err := runCommandIn(t, strings.NewReader(tc.stdin), args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data directory created: %v", err)
	}
	// The limits themselves are accepted: 8 runes, 1024 bytes.
	setPassword(t, dir, "éééééééé")
	setPassword(t, dir, strings.Repeat("p", 1024))
	if err := verifyPassword(t, dir, strings.Repeat("p", 1024)); err != nil {
		t.Fatal(err)
	}
}

func TestReadPasswordLine(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"pw\n", "pw", ""},
		{"pw", "pw", ""},
		{"pw\r\n", "pw", ""},
		{"pw\nmore\n", "pw", ""},
		{" pw \n", " pw ", ""},
		{"\n", "", ""},
		{"", "", "empty"},
		{strings.Repeat("x", 1024) + "\r\n", strings.Repeat("x", 1024), ""},
		{strings.Repeat("x", 1025), strings.Repeat("x", 1025), ""}, // CheckOwnerPassword refuses it
		{strings.Repeat("x", 1026), "", "too long"},
	} {
		got, err := readPasswordLine(strings.NewReader(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("readPasswordLine(%.20q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("readPasswordLine(%.20q) = %.20q, %v; want %.20q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzReadPasswordLine(f *testing.F) {
	f.Add([]byte("pw\n"))
	f.Add([]byte("pw\r\nx"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := readPasswordLine(bytes.NewReader(in))
		if err != nil {
			return
		}
		if strings.Contains(got, "\n") || len(got) > auth.OwnerPasswordMaxBytes+1 || !bytes.HasPrefix(in, []byte(got)) {
			t.Fatalf("readPasswordLine(%q) = %q", in, got)
		}
	})
}

func TestSetupURL(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "http://127.0.0.1:8080/console/setup?token=tok"},
		{&net.TCPAddr{IP: net.IPv4(192, 168, 1, 20), Port: 80}, "http://192.168.1.20:80/console/setup?token=tok"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://localhost:8080/console/setup?token=tok"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "http://localhost:8080/console/setup?token=tok"},
		{&net.TCPAddr{Port: 8080}, "http://localhost:8080/console/setup?token=tok"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, "http://[::1]:8080/console/setup?token=tok"},
	} {
		if got := setupURL("http", tc.addr, "tok"); got != tc.want {
			t.Errorf("setupURL(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	// With only --https listening the link is https.
	if got, want := setupURL("https", &net.TCPAddr{IP: net.IPv4zero, Port: 8443}, "tok"), "https://localhost:8443/console/setup?token=tok"; got != want {
		t.Errorf("https setup link = %q, want %q", got, want)
	}
}

// A wrong password reads the same offline and through the socket.
func TestAccountErrorsIdentical(t *testing.T) {
	offline, remote := t.TempDir(), startAdminServer(t).dir
	setPassword(t, offline, "the password")
	setPassword(t, remote, "the password")
	for _, dir := range []string{offline, remote} {
		err := verifyPassword(t, dir, "not the password")
		if channels.ErrorCode(err) != channels.EFORBIDDEN || err.Error() != "wrong console password" {
			t.Errorf("%s: %v", dir, err)
		}
	}
}
