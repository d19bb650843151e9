package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

// TestDeviceWriteErrors runs `feedmq serve` on ext4 over a device that
// fails writes (a loop device whose file lies on a full tmpfs, its free
// blocks trimmed), frees room once publishes are refused, kills the server
// after more are acknowledged and checks that every acknowledged entry
// comes back twice: from a copy taken through the page cache (a process
// crash) and from the disk itself once the page cache is dropped (a power
// cut). A failed O_DIRECT write there left the head of its first block,
// acknowledged records, reading as zeros. The file system has no journal:
// with one, a metadata write to a trimmed block aborts it and the file
// system turns read-only.
func TestDeviceWriteErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts file systems and runs a real server")
	}
	for _, tool := range []string{"mkfs.ext4", "fstrim"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s here", tool)
		}
	}
	dir := t.TempDir()
	back, data := filepath.Join(dir, "back"), filepath.Join(dir, "data")
	for _, d := range []string{back, data} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", back); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", back).Run() })
	img := filepath.Join(back, "img")
	// Written whole, so that the file system's own blocks are there; the
	// free ones are trimmed below, and writing them needs room in back.
	if err := os.WriteFile(img, make([]byte, 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run("mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "^has_journal", "-E", "nodiscard,lazy_itable_init=0", img); err != nil {
		t.Fatal(err)
	}
	if err := run("mount", "-o", "loop,errors=continue", img, data); err != nil {
		t.Skipf("cannot mount a loop device here: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", data).Run() })
	if err := run("fstrim", data); err != nil {
		t.Skipf("cannot trim the loop device: %v", err)
	}

	var ch struct{ ID uint64 }
	cli(t, data, &ch, "channel", "create", "--name", "dev", "--json")
	const publishers = 4
	devs := make([]deviceJSON, publishers)
	for i := range devs {
		cli(t, data, &devs[i], "device", "create", "--name", fmt.Sprintf("pub%d", i),
			"--channel", strconv.FormatUint(ch.ID, 10), "--json")
	}
	srv := startServeWith(t, plainBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "off", "--log-level", "error")
	topic := fmt.Sprintf("channels/%d/publish", ch.ID)
	got := &acked{values: map[string]bool{}}
	var refused, after atomic.Int64
	var freed, stop atomic.Bool
	var wg sync.WaitGroup
	pad := strings.Repeat("x", 255)
	for i, dev := range devs {
		wg.Go(func() {
			c, err := mqtttest.Dial(srv.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if code, err := c.Connect(mqtttest.Connect{ClientID: dev.ClientID, Username: dev.Username,
				Password: dev.Password, Clean: true, Keepalive: 30, Version: 5}); err != nil || code != 0 {
				t.Errorf("CONNACK %d %v", code, err)
				return
			}
			for n := 1; !stop.Load(); n++ {
				v := fmt.Sprintf("p%d-%d", i, n)
				if err := c.Publish(topic, 1, uint16(n%65535+1), []byte("field1="+v+"&field2="+pad)); err != nil {
					if !stop.Load() {
						t.Errorf("publish: %v", err)
					}
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, code, err := c.ReadPuback()
				if err != nil {
					if !stop.Load() {
						t.Errorf("PUBACK: %v", err)
					}
					return
				}
				switch {
				case code != 0:
					refused.Add(1)
					time.Sleep(time.Millisecond)
				case freed.Load():
					got.add(v)
					after.Add(1)
				default:
					got.add(v)
				}
			}
		})
	}
	// The filler takes all the room the device's free blocks need.
	filler := filepath.Join(back, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, zeros{}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	f.Close()
	deadline := time.Now().Add(60 * time.Second)
	for refused.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if refused.Load() < 20 {
		stop.Store(true)
		wg.Wait()
		t.Skip("the device never failed a write")
	}
	time.Sleep(300 * time.Millisecond)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed.Store(true)
	for after.Load() < 2000 && time.Now().Before(deadline.Add(60*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	// Killed while its publishers still publish.
	stop.Store(true)
	_ = srv.cmd.Process.Signal(syscall.SIGKILL)
	_ = srv.wait()
	wg.Wait()
	if after.Load() == 0 {
		mounts, _ := os.ReadFile("/proc/mounts")
		t.Fatalf("nothing acknowledged after freeing room (%d refused):\n%s\n%s", refused.Load(), tail(srv.logs.String()), mounts)
	}

	// What a restarted process reads (through the page cache)...
	cached := t.TempDir()
	for _, name := range []string{"feedmq.db", "feedmq.db-wal", "feedmq.db-wal2"} {
		b, err := os.ReadFile(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cached, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// ... and what the disk has.
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		t.Fatalf("drop the page cache: %v", err)
	}
	for _, d := range []string{cached, data} {
		var entries []entryJSON
		cli(t, d, &entries, "feed", "get", strconv.FormatUint(ch.ID, 10), "--results", "0", "--format", "json")
		stored := make(map[string]bool, len(entries))
		for _, e := range entries {
			if e.Field1 != nil {
				stored[*e.Field1] = true
			}
		}
		lost := 0
		for v := range got.values {
			if !stored[v] {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%s: %d of %d acknowledged entries lost (%d refused, %d acknowledged after room was freed)",
				map[string]string{cached: "process crash", data: "power cut"}[d], lost, len(got.values), refused.Load(), after.Load())
		}
	}
	t.Logf("%d acknowledged (%d after room was freed), %d refused", len(got.values), after.Load(), refused.Load())
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
