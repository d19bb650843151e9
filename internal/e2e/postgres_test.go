package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/pgtest"
)

// feedmq serve with storage: a PostgreSQL URL, its password in
// storage_password_file. A channel and a sensor made with the CLI offline
// (straight to the database) before serve starts, and a reader made
// through the running server's socket: the sensor publishes with
// mosquitto_pub at QoS 1 and the reader gets the entries in order. A
// device a CLI elsewhere makes meanwhile (straight to the database, which
// notifies serve) gets in too. The REST API reads the feed, also after a
// restart, and numbering goes on. check and backup work through the
// socket and offline. The password is in no output.
func TestServeOnPostgres(t *testing.T) {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dbURL, password := pgtest.NewWithPassword(t)
	data := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "db-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "feedmq.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("storage: %q\nstorage_password_file: %q\n", dbURL, pwFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	pgcli := func(v any, args ...string) {
		t.Helper()
		cli(t, data, v, append([]string{"--config", conf}, args...)...)
	}

	var ch struct {
		ID      uint64 `json:"id"`
		ReadKey string `json:"read_api_key"`
	}
	pgcli(&ch, "channel", "create", "--name", "Greenhouse", "--field", "1=Temperature", "--json")
	var sensor, reader auth.DeviceJSON
	pgcli(&sensor, "device", "create", "--name", "sensor", "--channel", fmt.Sprintf("%d:pub", ch.ID), "--json")
	if _, err := os.Stat(filepath.Join(data, "feedmq.db")); !os.IsNotExist(err) {
		t.Fatalf("the CLI made a bbolt database: %v", err)
	}

	start := func() *server {
		return startServeWith(t, raceBuild, data, "--config", conf, "--mqtt", "127.0.0.1:0", "--ws", "off",
			"--http", "127.0.0.1:0", "--log-level", "debug")
	}
	srv := start()
	// Through the socket: serve knows the device the moment it exists.
	pgcli(&reader, "device", "create", "--name", "reader", "--channel", fmt.Sprintf("%d:sub", ch.ID), "--json")

	creds := func(srv *server, d auth.DeviceJSON) []string {
		_, port, _ := net.SplitHostPort(srv.addr)
		return []string{"-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-i", d.ClientID, "-u", d.Username, "-P", d.Password}
	}
	topic := fmt.Sprintf("channels/%d/publish", ch.ID)
	pub := func(srv *server, payload string) {
		t.Helper()
		if out, err := exec.Command("mosquitto_pub", append(creds(srv, sensor), "-q", "1", "-t", topic, "-m", payload)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s\n%s", err, out, srv.logs.String())
		}
	}
	type entry struct {
		ID     uint64 `json:"entry_id"`
		Field1 string `json:"field1"`
	}
	feed := func(srv *server) []entry {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://%s/channels/%d/feeds.json?api_key=%s&results=100", srv.addrs["http"], ch.ID, ch.ReadKey))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var f struct {
			Feeds []entry `json:"feeds"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &f) != nil {
			t.Fatalf("feed read: %d %s", resp.StatusCode, body)
		}
		return f.Feeds
	}

	sub := exec.Command("mosquitto_sub", append(creds(srv, reader), "-t", fmt.Sprintf("channels/%d/subscribe", ch.ID), "-q", "1")...)
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The subscriber is in once an entry reaches it: publish until one does.
	var got []entry
	deadline := time.Now().Add(20 * time.Second)
	for len(got) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber got nothing\n%s", srv.logs.String())
		}
		pub(srv, "field1=0")
		select {
		case l := <-lines:
			var e entry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("subscriber got %q", l)
			}
			got = append(got, e)
		case <-time.After(200 * time.Millisecond):
		}
	}
	first := len(feed(srv))
	for i := 1; i <= 5; i++ {
		pub(srv, fmt.Sprintf("field1=%d", i))
	}
	es := feed(srv)
	if len(es) != first+5 {
		t.Fatalf("feed after 5 publishes: %+v", es)
	}
	for i, e := range es {
		if e.ID != uint64(i+1) {
			t.Fatalf("feed ids: %+v", es)
		}
	}
	// Every entry reaches the subscriber, in order, from the first one it got.
	for len(got) < len(es)-int(got[0].ID)+1 {
		select {
		case l := <-lines:
			var e entry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("subscriber got %q", l)
			}
			got = append(got, e)
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber got %+v of %+v", got, es)
		}
	}
	for i, e := range got {
		if e.ID != got[0].ID+uint64(i) || e.Field1 != es[e.ID-1].Field1 {
			t.Fatalf("subscriber got %+v, feed %+v", got, es)
		}
	}

	// /healthz reads the store; /metrics has the commits and no file size.
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.addrs["http"] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, metrics := get("/metrics")
	if code != 200 || !strings.Contains(metrics, "\nfeedmq_storage_commit_entries_count ") ||
		strings.Contains(metrics, "feedmq_storage_commit_entries_count 0\n") ||
		strings.Contains(metrics, "\nfeedmq_storage_file_size_bytes ") || strings.Contains(metrics, "collection failed") {
		t.Fatalf("/metrics: %d\n%s", code, metrics)
	}

	// A CLI elsewhere (no socket in its data directory) writes the
	// database directly; the running serve hears of the change and lets
	// the new device in.
	var remote auth.DeviceJSON
	cli(t, t.TempDir(), &remote, "--config", conf, "device", "create", "--name", "remote", "--channel", fmt.Sprintf("%d:pub", ch.ID), "--json")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := exec.Command("mosquitto_pub", append(creds(srv, remote), "-q", "1", "-t", topic, "-m", "field1=remote")...).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a device made by a CLI elsewhere is still refused: %v %s", err, out)
		}
	}
	es = feed(srv)
	if last := es[len(es)-1]; last.Field1 != "remote" || last.ID != uint64(len(es)) {
		t.Fatalf("feed after the remote device's publish: %+v", es)
	}

	var rep struct {
		Channels, Devices int
		Entries           uint64
		Problems          []string
	}
	pgcli(&rep, "check", "--json")
	if rep.Channels != 1 || rep.Devices != 3 || rep.Entries != uint64(len(es)) || len(rep.Problems) != 0 {
		t.Fatalf("check through the socket: %+v", rep)
	}

	// A restart reads the same feed and numbers on.
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srv.logs.String())
	}
	logs := srv.logs.String()
	srv = start()
	if again := feed(srv); len(again) != len(es) || again[len(again)-1] != es[len(es)-1] {
		t.Fatalf("after the restart: %+v, before %+v", again, es)
	}
	pub(srv, "field1=after")
	es = feed(srv)
	if last := es[len(es)-1]; last.ID != uint64(len(es)) || last.Field1 != "after" {
		t.Fatalf("after the restart: %+v", es)
	}
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srv.logs.String())
	}
	logs += srv.logs.String()

	// Offline: check and a backup, a bbolt database check reads.
	pgcli(&rep, "check", "--json")
	if rep.Entries != uint64(len(es)) || len(rep.Problems) != 0 {
		t.Fatalf("check offline: %+v", rep)
	}
	restored := t.TempDir()
	var b struct {
		Entries uint64 `json:"entries"`
	}
	pgcli(&b, "backup", "--output", filepath.Join(restored, "feedmq.db"), "--json")
	cli(t, restored, &rep, "check", "--json")
	if b.Entries != uint64(len(es)) || rep.Entries != b.Entries || rep.Devices != 3 || len(rep.Problems) != 0 {
		t.Fatalf("backup %+v, its check %+v", b, rep)
	}

	if !strings.Contains(logs, "storage=postgres://") || strings.Contains(logs, password) || strings.Contains(logs, "metrics: collection failed") {
		t.Fatalf("serve's logs:\n%s", logs)
	}
}

// The real binary refuses to serve on a database it cannot use, and says
// why on stderr with exit status 1: nothing listening at the URL's port (a
// password in the URL stays out of the message), a schema a newer feedmq
// made.
func TestServeOnPostgresRefusedAtStart(t *testing.T) {
	const secret = "s3cret-Pw"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	newer := pgtest.New(t)
	cli(t, t.TempDir(), nil, "--config", writeConfig(t, fmt.Sprintf("storage: %q\n", newer)), "channel", "list", "--json")
	conn, err := pgx.Connect(context.Background(), newer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(context.Background(), "INSERT INTO schema_migrations (version, name) VALUES (999, 'later')")
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, url, want string }{
		{"unreachable", fmt.Sprintf("postgres://feedmq:%s@127.0.0.1:%d/feeds?sslmode=disable", secret, port), fmt.Sprintf("127.0.0.1:%d/feeds", port)},
		{"newer schema", newer, "upgrade feedmq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(feedmqBinary(t), "serve", "--data", t.TempDir(), "--config", writeConfig(t, fmt.Sprintf("storage: %q\n", tc.url)),
				"--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off")
			var stdout, stderr lockedBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatalf("serve still runs:\n%s", stderr.String())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v\n%s", err, stderr.String())
			}
			msg := stderr.String()
			if !strings.Contains(msg, "feedmq: storage postgres://") || !strings.Contains(msg, tc.want) || strings.Contains(msg+stdout.String(), secret) ||
				strings.Contains(stdout.String(), "listening on") {
				t.Fatalf("stdout %q\nstderr %q", stdout.String(), msg)
			}
		})
	}
}

// writeConfig writes a configuration file and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "feedmq.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
