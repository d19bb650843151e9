package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestDiskFull fills a small tmpfs under a running `feedmq serve`:
// publishes that cannot be committed are refused (never acknowledged), the
// server keeps running and says why, it recovers once space is freed, and
// the database checks clean with every acknowledged entry in it.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs and runs a real server")
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", data).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", data).Run() })

	var ch struct{ ID uint64 }
	cli(t, data, &ch, "channel", "create", "--name", "full", "--json")
	var dev deviceJSON
	cli(t, data, &dev, "device", "create", "--name", "d", "--channel", strconv.FormatUint(ch.ID, 10), "--json")
	// A filler takes most of the space, so that deleting it frees room.
	filler := filepath.Join(data, "filler")
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, data)
	topic := fmt.Sprintf("channels/%d/publish", ch.ID)
	payload := []byte("field1=1&status=" + strings.Repeat("s", 255) + "&field2=" + strings.Repeat("x", 255))

	conn := func() *mqtttest.Conn {
		c, err := mqtttest.Dial(srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		if code, err := c.Connect(mqtttest.Connect{ClientID: dev.ClientID, Username: dev.Username,
			Password: dev.Password, Clean: true, Keepalive: 30, Version: 5}); err != nil || code != 0 {
			t.Fatalf("CONNACK %d %v", code, err)
		}
		return c
	}
	c := conn()
	defer c.Close()
	acked, refused := 0, 0
	for id := uint16(1); id < 20000 && refused == 0; id++ {
		if err := c.Publish(topic, 1, id, payload); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, code, err := c.ReadPuback()
		if err != nil {
			t.Fatalf("after %d entries: %v", acked, err)
		}
		if code == 0 {
			acked++
		} else {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("the disk never filled after %d entries", acked)
	}
	if !srv.logs.waitFor("no space left on device", 5*time.Second) {
		t.Fatalf("the log does not say the disk is full (%d acked, %d refused):\n%s", acked, refused, tail(srv.logs.String()))
	}
	// Free space: the same connection goes on.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	ok := false
	for id := uint16(30000); id < 30050 && !ok; id++ {
		if err := c.Publish(topic, 1, id, payload); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, code, err := c.ReadPuback()
		if err != nil {
			t.Fatal(err)
		}
		if code == 0 {
			acked++
			ok = true
		}
	}
	if !ok {
		t.Fatalf("no recovery after freeing space:\n%s", tail(srv.logs.String()))
	}
	c.Close()
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, tail(srv.logs.String()))
	}
	checkConsistent(t, filepath.Join(data, "feedmq.db"))
	var entries []entryJSON
	cli(t, data, &entries, "feed", "get", strconv.FormatUint(ch.ID, 10), "--results", "0", "--format", "json")
	if len(entries) != acked {
		t.Fatalf("%d entries stored, %d acknowledged", len(entries), acked)
	}
	for i, e := range entries {
		if e.EntryID != uint64(i+1) {
			t.Fatalf("entry %d has ID %d", i, e.EntryID)
		}
	}
	t.Logf("%d entries acknowledged, %d refused while the disk was full, recovered after freeing space", acked, refused)
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}
