package httpd_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stallBody opens a connection that declares a body of declared bytes to
// path, sends sent of them and stalls.
func stallBody(t *testing.T, m *mgmt, path string, declared, sent int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(m.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := "POST " + path + " HTTP/1.1\r\nHost: feedmq\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		"Content-Length: " + strconv.Itoa(declared) + "\r\n\r\n"
	if _, err := io.WriteString(c, head+"name="+strings.Repeat("a", sent-5)); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitBodiesReturned waits until the server holds no request body: a
// handler gives its body's budget back only after its answer, so a client
// that goes on at once may find it still held.
func waitBodiesReturned(t *testing.T, m *mgmt) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); m.srv.BodyBytesInFlight() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d body bytes still held 10 s after the last answer", m.srv.BodyBytesInFlight())
		}
	}
}

// waitBodiesHeld waits until the server holds at least n body bytes: a
// stalled client's request reaches its handler some time after the
// client wrote it, and a request sent meanwhile would take the budget
// first (and the stalled one be refused instead).
func waitBodiesHeld(t *testing.T, m *mgmt, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); m.srv.BodyBytesInFlight() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d body bytes held 10 s after a stalled request, want %d", m.srv.BodyBytesInFlight(), n)
		}
	}
}

// waitStatus repeats do until its status is (want) or is not (!want)
// status, for up to 10 s, and returns the last answer.
func waitStatus(t *testing.T, do func() mresp, status int, want bool) mresp {
	t.Helper()
	var r mresp
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r = do(); (r.status == status) == want {
			return r
		}
	}
	t.Fatalf("status %d after 10 s (want %v %d); body %s", r.status, map[bool]string{true: "", false: "not"}[want], status, r.body)
	return r
}

// TestBodyBudget: with http.max_body_bytes_in_flight at 64 KiB, a client
// that declares a 60000-byte management body and stalls holds most of the
// budget: bodies that do not fit in the rest are refused with 503 and
// Retry-After on every route that reads one (JSON writes, /update, the
// management API, console forms), counted as "busy", while small bodies
// and reads go on. Once the client leaves, or a body ends in an error, the
// budget comes back.
func TestBodyBudget(t *testing.T) {
	m := newMgmt(t, mgmtOptions{maxBodies: 64 << 10, console: true})
	ch := m.createChannel("name=budget")
	wkey, rkey := ch.keys()
	id := strconv.FormatUint(ch.ID, 10)
	// 6000 bytes: more than the rest of the budget while the stalled body
	// holds it, within /update's limit.
	big := "api_key=" + wkey + "&status=" + strings.Repeat("s", 6000-len("api_key=&status=")-len(wkey))
	// Refused bodies close the connection at once, and a client still
	// sending would read a reset instead of the 503: these clients wait
	// for "100 Continue" before they send a body, as curl does.
	const expect, cont = "Expect", "100-continue"
	bigWrite := func() mresp { return m.do("POST", "/update.json", big, expect, cont) }
	// Whole bodies, answered and errors alike, give their budget back.
	for i := range 20 {
		if r := bigWrite(); r.status == http.StatusServiceUnavailable {
			t.Fatalf("write %d refused with nothing else in flight: %s", i, r.body)
		}
		if r := m.do("POST", "/channels.json", "{bad json"); r.status != http.StatusBadRequest {
			t.Fatalf("bad JSON: %d %s", r.status, r.body)
		}
	}

	// A request answered a moment ago gives its budget back only after
	// its answer: a stall that found some still held would be refused.
	waitBodiesReturned(t, m)
	stall := stallBody(t, m, "/channels.json", 60000, 1000)
	waitBodiesHeld(t, m, 60000)
	busy := waitStatus(t, bigWrite, http.StatusServiceUnavailable, true)
	busy.refused(t, http.StatusServiceUnavailable, "error_busy", "request bodies")
	if busy.header.Get("Retry-After") == "" {
		t.Errorf("503 headers: %v", busy.header)
	}
	refusals := m.srv.Refusals().Snapshot()["busy"]
	if r := m.do("POST", "/update", big, expect, cont); r.status != http.StatusServiceUnavailable || r.body != "0" || r.header.Get("Retry-After") == "" {
		t.Errorf("/update: %d %q, Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := m.do("POST", "/channels.json", "api_key="+m.key+"&name="+strings.Repeat("n", 6000), expect, cont); r.status != http.StatusServiceUnavailable {
		t.Errorf("management API: %d %s", r.status, r.body)
	}
	r := m.do("POST", "/console/signin", "password="+strings.Repeat("p", 6000), "Origin", m.base, expect, cont)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "Busy") || r.header.Get("Retry-After") == "" {
		t.Errorf("console form: %d, Retry-After %q: %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if n := m.srv.Refusals().Snapshot()["busy"] - refusals; n != 3 {
		t.Errorf("%d refusals counted as busy, want 3", n)
	}
	// A refused client that stalls is not waited for: its connection
	// is closed long before the 30 s read timeout.
	c := stallBody(t, m, "/update", 7000, 6000)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
		t.Errorf("stalled /update: %d, close %v", resp.StatusCode, resp.Close)
	}
	closedSoon(t, c)
	// A small body fits in what is left: the stalled one holds its
	// declared length, not the route's limit.
	var entry struct {
		EntryID uint64 `json:"entry_id"`
	}
	m.do("POST", "/update.json", "api_key="+wkey+"&field1=1").ok(t, &entry)
	if entry.EntryID == 0 {
		t.Error("small write: no entry")
	}
	if r := m.do("GET", "/channels/"+id+"/feeds.json?api_key="+rkey, ""); r.status != 200 {
		t.Errorf("read while the budget is spent: %d", r.status)
	}
	logs := m.logs.String()
	if !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "status=503") {
		t.Errorf("503s not logged at debug:\n%s", logs)
	}
	if strings.Contains(logs, wkey) || strings.Contains(logs, m.key) {
		t.Errorf("a key in the log:\n%s", logs)
	}

	// The stalled client leaves: its budget comes back.
	stall.Close()
	waitStatus(t, bigWrite, http.StatusServiceUnavailable, false)

	// A body over the limit, of unknown length or declared, gives its
	// budget back; then one as large as the whole budget is read (401:
	// no key), which it would not be with any of it still held.
	req, err := http.NewRequest("POST", m.base+"/channels.json", io.MultiReader(strings.NewReader("name="+strings.Repeat("a", 70000))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength != 0 {
		t.Errorf("chunked body over the limit: %d (sent with length %d)", resp.StatusCode, req.ContentLength)
	}
	c = stallBody(t, m, "/channels.json", 70000, 10)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("declared body over the limit: %d, close %v", resp.StatusCode, resp.Close)
	}
	closedSoon(t, c)
	waitBodiesReturned(t, m) // and a leak fails here
	full := "name=" + strings.Repeat("a", 65000)
	if r := m.do("POST", "/channels.json", full); r.status != http.StatusUnauthorized {
		t.Errorf("a body of the whole budget after the errors: %d %s", r.status, r.body)
	}
}

// closedSoon checks that the server closes c within 5 s.
func closedSoon(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("connection still open 5 s after the answer (%d more bytes)", n)
		}
	}
}
