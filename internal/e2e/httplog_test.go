package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTPLogFlood: what HTTP clients send ends up in serve's log cut
// short, without API keys or passwords, and at a bounded rate, as for
// MQTT (TestLogFlood). 800 requests at debug level, with 15,000-byte paths
// that start with a channel's write and read keys, malformed queries and
// start times holding the read key, JSON bodies whose field names hold
// the write key, the device password as api_key, in the query and in a
// Basic Authorization header, plus 60,000-byte paths, grow the log by
// less than 1 MiB, and no key or password appears in it.
func TestHTTPLogFlood(t *testing.T) {
	data := t.TempDir()
	s := floodServe(t, data, "--log-level", "debug")
	var ch struct {
		ID       uint64 `json:"id"`
		WriteKey string `json:"write_api_key"`
		ReadKey  string `json:"read_api_key"`
	}
	cli(t, data, &ch, "channel", "create", "--name", "httplogs", "--field", "1=T", "--json")
	var dev deviceJSON
	cli(t, data, &dev, "device", "create", "--name", "d", "--channel", strconv.FormatUint(ch.ID, 10), "--json")
	if ch.WriteKey == "" || ch.ReadKey == "" || dev.Password == "" {
		t.Fatalf("no keys or password: %+v %+v", ch, dev)
	}
	base := "http://" + s.addrs["http"]
	id := strconv.FormatUint(ch.ID, 10)
	keys := ch.WriteKey + "/" + ch.ReadKey + "/"
	pad := func(n int) string { return strings.Repeat("x/", n/2) }
	pw := url.QueryEscape(dev.Password)
	type req struct {
		method, path, body string
	}
	kinds := []req{
		// Paths the API does not serve: 404, path logged.
		{"GET", "/channels/" + id + "/feeds/" + keys + pad(15000) + ".json?api_key=" + ch.ReadKey, ""},
		{"GET", "/" + keys + pad(15000) + "?api_key=" + pw + "&password=" + pw, ""},
		// The dashboard hands what it does not serve to the API.
		{"GET", "/channels/" + ch.ReadKey + pad(15000) + "/events?api_key=" + ch.ReadKey, ""},
		{"GET", "/channel/" + keys + pad(15000), ""},
		// A malformed query (a semicolon), and a start time holding the
		// read key: both errors are logged.
		{"GET", "/channels/" + id + "/feeds.json?api_key=" + ch.ReadKey + ";" + ch.WriteKey + "=" + pad(12000), ""},
		{"GET", "/channels/" + id + "/feeds.json?api_key=" + ch.ReadKey + "&start=" + ch.ReadKey + pad(12000), ""},
		// Wrong keys: the device password as a read and a write key.
		{"GET", "/channels/" + id + "/feeds.json?api_key=" + pw, ""},
		{"GET", "/update?api_key=" + pw + "&field1=1", ""},
		// A field name holding the write key, refused.
		{"POST", "/update.json", `{"api_key":"` + ch.WriteKey + `","` + ch.WriteKey + pad(1000) + `":[1]}`},
		// Past the header limit: refused before any handler.
		{"GET", "/" + keys + pad(60000), ""},
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	before := len(s.logs.String())

	const requests = 800
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	work := make(chan req)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rq := range work {
				var body io.Reader
				if rq.body != "" {
					body = strings.NewReader(rq.body)
				}
				r, err := http.NewRequest(rq.method, base+rq.path, body)
				if err != nil {
					t.Error(err)
					continue
				}
				r.SetBasicAuth(dev.Username, dev.Password)
				r.Header.Set("X-THINGSPEAKAPIKEY", ch.ReadKey+pad(2000))
				if rq.body != "" {
					r.Header.Set("Content-Type", "application/json")
				}
				resp, err := client.Do(r)
				if err != nil {
					continue // the 60,000-byte paths may see the connection closed
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	for i := range requests {
		work <- kinds[i%len(kinds)]
	}
	close(work)
	wg.Wait()
	t.Logf("answers by status: %v", statuses)
	if statuses[http.StatusNotFound] == 0 || statuses[http.StatusBadRequest] == 0 {
		t.Fatalf("the requests did not reach the API: %v", statuses)
	}
	// Refused requests are logged (at debug: the first ones at least),
	// and what the limit dropped is summed up within 10 s.
	if !s.logs.waitFor("http request refused", 10*time.Second) {
		t.Fatalf("no refused request logged:\n%.5000s", s.logs.String()[before:])
	}
	if !s.logs.waitFor("log lines suppressed", 20*time.Second) {
		t.Errorf("no summary of suppressed lines")
	}
	logs := s.logs.String()[before:]
	t.Logf("the flood grew the log by %d bytes", len(logs))
	if len(logs) >= 1<<20 {
		t.Errorf("the flood grew the log by %.1f MiB", mib(int64(len(logs))))
	}
	// The long paths are logged, cut, with the keys masked.
	if want := `path="/channels/` + id + "/feeds/<key>/<key>/x/x/"; !strings.Contains(logs, want) {
		t.Errorf("no line shows %q:\n%.5000s", want, logs)
	}
	for name, secret := range map[string]string{"write key": ch.WriteKey, "read key": ch.ReadKey, "password": dev.Password} {
		if i := strings.Index(logs, secret); i >= 0 {
			t.Errorf("the log shows the %s: ...%s...", name, logs[max(0, i-200):min(len(logs), i+50)])
		}
	}
}
