package e2e

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var csrfFieldRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestConsoleUploadFlood: 240 connections post CSV files to the console's
// import, half with the owner's session and half without, each declaring
// a 16 MB upload, sending 256 KiB of it and stalling. Those without a
// session are refused before their body is read; of the owner's, only as
// many as the body budget (http.max_body_bytes_in_flight, 8 MiB, of which
// an upload holds 1 MiB) are read at once and the rest get 503. Server
// RSS stays within 64 MiB of the baseline, and once the attacker leaves an
// ordinary upload is imported.
func TestConsoleUploadFlood(t *testing.T) {
	data := t.TempDir()
	if out, err := exec.Command(plainBuild.binary(t), "--data", data, "channel", "create", "--name", "Flood", "--field", "1=Level").CombinedOutput(); err != nil {
		t.Fatalf("channel create: %v\n%s", err, out)
	}
	s := floodServe(t, data, "--log-level", "info")
	addr := s.addrs["http"]
	base := "http://" + addr
	if !s.logs.waitFor("/console/setup?token=", 10*time.Second) {
		t.Fatalf("no setup link in the log:\n%s", s.logs.String())
	}
	link := setupLinkRE.FindString(s.logs.String())
	token, _ := url.ParseQuery(strings.SplitN(link, "?", 2)[1])

	// The owner signs in with a Go client: the session cookie and the
	// channel page's CSRF token.
	jar, _ := cookiejar.New(nil)
	owner := &http.Client{Jar: jar}
	form := url.Values{"token": token["token"], "password": {"a long owner password"}, "confirm": {"a long owner password"}}
	req, _ := http.NewRequest("POST", base+"/console/setup", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := owner.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = owner.Get(base + "/console/channels/1")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := csrfFieldRE.FindStringSubmatch(string(page))
	u, _ := url.Parse(base)
	var cookie string
	for _, c := range jar.Cookies(u) {
		if c.Name == "feedmq_session" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if csrf == nil || cookie == "" {
		t.Fatalf("not signed in: %d %s", resp.StatusCode, page)
	}

	const (
		attackers = 240
		workers   = 32
		declared  = 16_000_000
	)
	// One file's rows share a time, so that the imports running at once
	// never refuse each other's rows as out of order.
	row := "2030-01-01 00:00:00 UTC,1," + strings.Repeat("s", 250) + "\n"
	rows := strings.Repeat(row, (256<<10)/len(row))
	var (
		att                   conns
		refused, denied, held atomic.Int64
		failed                atomic.Int64
		mu                    sync.Mutex
		other                 []string
	)
	defer att.closeAll()
	measureFlood(t, s, floodLimits{peak: 64 << 20, settle: 32 << 20, hold: 3 * time.Second}, func() {
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						failed.Add(1)
						continue
					}
					att.add(c)
					var head strings.Builder
					head.WriteString("POST /console/channels/1/import HTTP/1.1\r\nHost: " + addr + "\r\nOrigin: " + base + "\r\n")
					if i%2 == 0 {
						head.WriteString("Cookie: " + cookie + "\r\n")
					}
					fmt.Fprintf(&head, "Content-Type: multipart/form-data; boundary=BOUNDARY\r\nContent-Length: %d\r\n\r\n", declared)
					fmt.Fprintf(&head, "--BOUNDARY\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n%s\r\n", csrf[1])
					fmt.Fprintf(&head, "--BOUNDARY\r\nContent-Disposition: form-data; name=\"form_id\"\r\n\r\n%s\r\n", rand.Text())
					head.WriteString("--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\ncreated_at,field1,status\n")
					c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					io.WriteString(c, head.String()+rows) // a refused one may be closed before it is all sent
					// A refused upload is answered at once; a held one
					// is read, and stalls.
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					switch {
					case err != nil:
						if ne, ok := err.(net.Error); ok && ne.Timeout() {
							held.Add(1)
						} else {
							failed.Add(1)
						}
					case resp.StatusCode == http.StatusServiceUnavailable:
						refused.Add(1)
					case resp.StatusCode == http.StatusForbidden:
						denied.Add(1)
					default:
						mu.Lock()
						other = append(other, resp.Status)
						mu.Unlock()
					}
				}
			}()
		}
		for i := range attackers {
			next <- i
		}
		close(next)
		wg.Wait()
	}, att.closeAll)
	t.Logf("uploads: %d held, %d refused busy, %d refused without a session, %d failed, other %v",
		held.Load(), refused.Load(), denied.Load(), failed.Load(), other)
	if denied.Load() != attackers/2 {
		t.Errorf("%d uploads without a session refused, want %d", denied.Load(), attackers/2)
	}
	if held.Load() > 8 || refused.Load() == 0 || len(other) > 0 {
		t.Errorf("with the owner's session: %d read at once (budget: 8 at most), %d refused busy, other answers %v", held.Load(), refused.Load(), other)
	}

	// The budget is back: an ordinary upload is imported.
	body := "--BOUNDARY\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + csrf[1] + "\r\n" +
		"--BOUNDARY\r\nContent-Disposition: form-data; name=\"form_id\"\r\n\r\n" + rand.Text() + "\r\n" +
		"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\ncreated_at,field1\n2031-01-01 00:00:00 UTC,7\n\r\n--BOUNDARY--\r\n"
	var status int
	var answer []byte
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		req, _ = http.NewRequest("POST", base+"/console/channels/1/import", strings.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=BOUNDARY")
		req.Header.Set("Origin", base)
		resp, err := owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if status = resp.StatusCode; status != http.StatusServiceUnavailable {
			break
		}
	}
	if status != 200 || !strings.Contains(string(answer), "Imported 1 entry") {
		t.Errorf("upload after the flood: %d %s", status, answer)
	}
}
