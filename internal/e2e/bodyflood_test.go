package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowBodyFlood: 3000 connections, without any key, each declare a
// request body near its route's limit (POST /channels.json: 65001 bytes,
// POST /update: 7000), send all of it but the last byte and stall. The
// server reads only so many body bytes at once (http.max_body_bytes_in_flight)
// and refuses the rest with 503 before reading them, so its RSS stays
// within 64 MiB of the baseline during the flood and falls back after the
// attacker leaves; then an ordinary request is answered again.
func TestSlowBodyFlood(t *testing.T) {
	s := floodServe(t, t.TempDir(), "--log-level", "warn")
	addr := s.addrs["http"]

	const (
		attackers = 3000
		workers   = 32
	)
	type target struct {
		path     string
		declared int
	}
	targets := []target{{"/channels.json", 65001}, {"/update", 7000}}
	var (
		att     conns
		refused atomic.Int64 // attackers answered 503 before they finished sending
		failed  atomic.Int64 // dials that failed
	)
	defer att.closeAll()
	lim := floodLimits{peak: 64 << 20, settle: 32 << 20, hold: 3 * time.Second}
	measureFlood(t, s, lim, func() {
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					tg := targets[i%len(targets)]
					c, err := net.Dial("tcp", addr)
					if err != nil {
						failed.Add(1)
						continue
					}
					att.add(c)
					head := "POST " + tg.path + " HTTP/1.1\r\nHost: feedmq\r\n" +
						"Content-Type: application/x-www-form-urlencoded\r\n" +
						"Content-Length: " + strconv.Itoa(tg.declared) + "\r\n\r\n"
					body := "name=" + strings.Repeat("a", tg.declared-1-len("name="))
					// A refused attacker's connection is closed under it:
					// its writes may fail, which is the server's point.
					c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.WriteString(c, head+body); err != nil {
						refused.Add(1)
					}
				}
			}()
		}
		for i := range attackers {
			next <- i
		}
		close(next)
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Errorf("%d of %d dials failed", n, attackers)
		}
	}, func() {
		// Count the attackers answered already (503) before leaving.
		var answered int
		for _, c := range att.cs {
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
					answered++
				}
			}
		}
		t.Logf("%d of %d stalled bodies answered 503 with Retry-After; %d writes cut short", answered, attackers, refused.Load())
		// 8 MiB holds about 120 bodies of each kind: most of the others
		// must have been refused (some answers may be lost to a reset).
		if answered < attackers/4 {
			t.Errorf("only %d of %d stalled bodies answered 503", answered, attackers)
		}
		att.closeAll()
		// With the attacker gone, its budget comes back: a request with
		// a body is read again (401: it carries no key), not refused.
		var status int
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			resp, err := http.Post("http://"+addr+"/channels.json", "application/x-www-form-urlencoded",
				strings.NewReader("name=after"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if status = resp.StatusCode; status != http.StatusServiceUnavailable {
				break
			}
		}
		if status != http.StatusUnauthorized {
			t.Errorf("POST /channels.json after the flood: %d, want 401", status)
		}
	})
}
