package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// TestSlowFeedReadersFlood: 40 clients ask a real `feedmq serve` for
// feeds.json?results=8000 of a channel of large entries (8 fields of 360
// characters, near the 3000-byte payload limit) and read nothing. The
// server streams answers a page at a time, serves only so many feed reads
// at once and cuts off stalled readers, so its RSS stays within 64 MiB of
// what it was after one ordinary full read, and comes back down once the
// clients leave.
func TestSlowFeedReadersFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test")
	}
	data := t.TempDir()
	var ch struct {
		ID uint64 `json:"id"`
	}
	args := []string{"channel", "create", "--name", "big", "--public", "--json"}
	for n := 1; n <= channels.NumFields; n++ {
		args = append(args, "--field", fmt.Sprintf("%d=f%d", n, n))
	}
	cli(t, data, &ch, args...)
	fill(t, filepath.Join(data, "feedmq.db"), ch.ID, 8000)

	// A short write timeout, so that the test need not wait the default
	// 20s for stalled readers to be cut off.
	cfg := filepath.Join(t.TempDir(), "feedmq.yaml")
	if err := os.WriteFile(cfg, []byte("http:\n  write_timeout: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServeWith(t, plainBuild, data, "--config", cfg, "--mqtt", "127.0.0.1:0", "--ws", "off",
		"--http", "127.0.0.1:0", "--log-level", "warn")
	url := "http://" + s.addrs["http"] + "/channels/" + strconv.FormatUint(ch.ID, 10) + "/feeds.json?results=8000"
	full := func() int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("full read: %d, %d bytes, %v", resp.StatusCode, n, err)
		}
		return int(n)
	}
	// One ordinary read first: the file's pages it maps count in RSS, and
	// any reader brings them in.
	size := full()
	if size < 8000*2880 {
		t.Fatalf("the feed is only %d bytes", size)
	}
	baseSockets := sockets(t, s)

	const attackers = 40
	var att conns
	defer att.closeAll()
	req := "GET " + url[len("http://"+s.addrs["http"]):] + " HTTP/1.1\r\nHost: feedmq\r\n\r\n"
	// RSS is bounded over the first seconds of the flood, while every
	// answer is being built or stuck, and must come back to within 24 MiB
	// once the clients leave.
	lim := floodLimits{peak: 64 << 20, settle: 24 << 20, hold: 3 * time.Second}
	measureFlood(t, s, lim, func() {
		for range attackers {
			c, err := net.Dial("tcp", s.addrs["http"])
			if err != nil {
				t.Error(err)
				return
			}
			att.add(c)
			c.(*net.TCPConn).SetReadBuffer(4096)
			if _, err := io.WriteString(c, req); err != nil {
				t.Error(err)
				return
			}
		}
	}, func() {
		// Stalled readers are cut off once a write has waited
		// write_timeout: the server closes their connections, keeping
		// only those of the readers beyond max_feed_reads, which got 503
		// and may send another request.
		var open int
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if open = sockets(t, s) - baseSockets; open <= attackers-32 || time.Now().After(deadline) {
				break
			}
		}
		t.Logf("%d of %d stalled readers' connections still open after the write timeout", open, attackers)
		if open > attackers-32 {
			t.Errorf("%d stalled readers' connections are still open; only the %d refused ones may be", open, attackers-32)
		}
		att.closeAll()
		// The server still answers in full.
		if n := full(); n != size {
			t.Errorf("full read after the flood: %d bytes, want %d", n, size)
		}
	})
}

// sockets counts the sockets the server process has open.
func sockets(t *testing.T, s *server) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// fill appends n entries of eight 360-character fields to channel ch of
// the stopped database at path.
func fill(t *testing.T, path string, ch uint64, n int) {
	t.Helper()
	db, err := storage.Open(path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	done := make(chan error, n)
	for i := range n {
		e := &channels.Entry{ChannelID: ch, CreatedAt: time.Now().Add(time.Duration(i-n) * time.Second)}
		for f := range channels.NumFields {
			e.SetValue(f, strings.Repeat(strconv.Itoa(f), 350)+fmt.Sprintf("%010d", i))
		}
		if err := db.AppendEntryAsync(ctx, e, func(_ *channels.Entry, err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
