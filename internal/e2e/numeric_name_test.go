package e2e

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestNumericChannelName reproduces the reported leak with the real
// binary and mosquitto_sub: a private channel named "1", with a field
// labelled like public channel 1's, must never reach an anonymous reader
// of devices/1/sensors/Temperature/value. `channel create --name 1` is
// refused; a database that already holds such a name (written here into
// the file, as an older release could) is served without using it.
func TestNumericChannelName(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto_sub not installed")
	}
	data := t.TempDir()
	type channel struct {
		ID          uint64
		WriteAPIKey string `json:"write_api_key"`
	}
	var public, secret channel
	cli(t, data, &public, "channel", "create", "--name", "outside", "--public", "--field", "1=Temperature", "--json")
	cli(t, data, &secret, "channel", "create", "--name", "secret", "--field", "1=Temperature", "--json")
	if public.ID != 1 {
		t.Fatalf("public channel has ID %d, want 1", public.ID)
	}
	renameInFile(t, filepath.Join(data, "feedmq.db"), secret.ID, "1")

	srv := startServeWith(t, plainBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0")
	sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", port(srv.addr), "-i", "reader",
		"-t", "devices/1/sensors/Temperature/value", "-v", "-W", "8")
	got := new(lockedBuffer)
	sub.Stdout = got
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Wait() }()
	// The subscription is in place once a public entry arrives; then the
	// secret one is written, then a second public one. Entries fan out in
	// order, so the secret one would come before the last.
	update := func(key, value string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.addrs["http"] + "/update?api_key=" + key + "&field1=" + value)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("update %s: %s", value, resp.Status)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got.String(), "warmup") {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub got nothing: %q", got.String())
		}
		update(public.WriteAPIKey, "warmup")
		time.Sleep(200 * time.Millisecond)
	}
	update(secret.WriteAPIKey, "topsecret")
	update(public.WriteAPIKey, "last")
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(got.String(), "last") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	_ = sub.Process.Kill()
	<-done
	if s := got.String(); strings.Contains(s, "topsecret") || !strings.Contains(s, "last") {
		t.Fatalf("mosquitto_sub on devices/1/sensors/Temperature/value got:\n%s", s)
	}

	// Such a name cannot be given any more, through the running server.
	out, err := exec.Command(feedmqBinary(t), "--data", data, "channel", "create", "--name", "1", "--field", "1=Temperature").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "looks like a channel ID") {
		t.Fatalf("channel create --name 1: %v\n%s", err, out)
	}
}

// renameInFile sets the name of channel id in the database file directly,
// bypassing validation.
func renameInFile(t *testing.T, path string, id uint64, name string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("channels"))
		key := binary.BigEndian.AppendUint64(nil, id)
		var rec map[string]any
		if err := json.Unmarshal(b.Get(key), &rec); err != nil {
			return err
		}
		rec["name"] = name
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func port(addr string) string {
	_, p, _ := strings.Cut(addr, "127.0.0.1:")
	return p
}
