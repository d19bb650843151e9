package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// apiCall is one request to the management API, as curl sends it.
type apiCall struct {
	t    *testing.T
	base string
}

// do sends method path with a form body (or a JSON one when it starts
// with {) and returns the status and the body.
func (a apiCall) do(method, path, body string, header ...string) (int, string) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		ct := "application/x-www-form-urlencoded"
		if body[0] == '{' {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// ok sends a request that must answer 200 and decodes its JSON into v.
func (a apiCall) ok(v any, method, path, body string, header ...string) string {
	a.t.Helper()
	code, out := a.do(method, path, body, header...)
	if code != 200 {
		a.t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			a.t.Fatalf("%s %s: %v in %s", method, path, err, out)
		}
	}
	return out
}

// refused sends a request that must answer status in ThingSpeak's error
// shape, with detail in its details.
func (a apiCall) refused(status int, detail, method, path, body string, header ...string) {
	a.t.Helper()
	code, out := a.do(method, path, body, header...)
	var e struct {
		Status string `json:"status"`
		Error  struct {
			Code    string `json:"error_code"`
			Details string `json:"details"`
		} `json:"error"`
	}
	if code != status || json.Unmarshal([]byte(out), &e) != nil || e.Status != strconv.Itoa(status) || !strings.Contains(e.Error.Details, detail) {
		a.t.Fatalf("%s %s: %d %s; want %d with %q", method, path, code, out, status, detail)
	}
}

// TestManageAPI drives the channel settings and devices API of a running
// `feedmq serve` with the owner's user API key from `feedmq account show
// --json`: every endpoint, what the CLI and MQTT clients then see, wrong
// keys (401, then 429 for the address), bad input (400 naming the field),
// and a log without any key or password.
func TestManageAPI(t *testing.T) {
	data := t.TempDir()
	// A long back-off, so that the address is still refused when the
	// test looks, however slow the machine.
	conf := filepath.Join(data, "feedmq.yaml")
	if err := os.WriteFile(conf, []byte("auth_backoff:\n  after_failures: 5\n  initial: 10m\n  max: 10m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServeWith(t, raceBuild, data, "--config", conf, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "debug")
	var acct struct {
		Key string `json:"user_api_key"`
	}
	cli(t, data, &acct, "account", "show", "--json")
	if len(acct.Key) != 16 {
		t.Fatalf("user API key %q", acct.Key)
	}
	key := acct.Key
	api := apiCall{t: t, base: "http://" + srv.addrs["http"]}

	type apiKey struct {
		Key   string `json:"api_key"`
		Write bool   `json:"write_flag"`
	}
	type channel struct {
		ID          uint64   `json:"id"`
		Name        string   `json:"name"`
		Description string   `json:"description"`
		PublicFlag  bool     `json:"public_flag"`
		LastEntryID *uint64  `json:"last_entry_id"`
		Field1      string   `json:"field1"`
		APIKeys     []apiKey `json:"api_keys"`
	}
	var ch channel
	api.ok(&ch, "POST", "/channels.json", "api_key="+key+"&name=Garden&field1=Soil&description=Beds")
	if ch.ID != 1 || ch.Name != "Garden" || ch.Field1 != "Soil" || len(ch.APIKeys) != 2 || !ch.APIKeys[0].Write || ch.APIKeys[1].Write {
		t.Fatalf("created: %+v", ch)
	}
	writeKey, readKey := ch.APIKeys[0].Key, ch.APIKeys[1].Key
	// The CLI sees the channel created over HTTP: one admin service.
	var listed []struct {
		ID   uint64 `json:"id"`
		Name string `json:"name"`
	}
	cli(t, data, &listed, "channel", "list", "--json")
	if len(listed) != 1 || listed[0].Name != "Garden" {
		t.Fatalf("channel list: %+v", listed)
	}
	api.ok(&ch, "PUT", "/channels/1.json", `{"api_key":"`+key+`","name":"Garden beds","public_flag":true}`)
	if ch.Name != "Garden beds" || ch.Description != "Beds" || !ch.PublicFlag {
		t.Fatalf("updated: %+v", ch)
	}
	if out := api.ok(&ch, "GET", "/channels/1.json", ""); strings.Contains(out, "api_keys") || strings.Contains(out, writeKey) {
		t.Fatalf("public settings show keys: %s", out)
	}
	var page struct {
		Pagination struct {
			Page  int `json:"current_page"`
			Per   int `json:"per_page"`
			Total int `json:"total_entries"`
		} `json:"pagination"`
		Channels []channel `json:"channels"`
	}
	api.ok(&page, "GET", "/channels/public.json", "")
	if page.Pagination.Page != 1 || page.Pagination.Per != 15 || page.Pagination.Total != 1 || len(page.Channels) != 1 {
		t.Fatalf("public.json: %+v", page)
	}
	var all []channel
	api.ok(&all, "GET", "/channels.json", "", "THINGSPEAKAPIKEY", key)
	if len(all) != 1 || len(all[0].APIKeys) != 2 {
		t.Fatalf("channels.json: %+v", all)
	}

	// Two writes, a clear, and numbering restarts at 1.
	for _, v := range []string{"1", "2"} {
		if code, out := api.do("GET", "/update?api_key="+writeKey+"&field1="+v, ""); code != 200 || out != v {
			t.Fatalf("update %s: %d %s", v, code, out)
		}
	}
	if out := api.ok(nil, "DELETE", "/channels/1/feeds.json?api_key="+key, ""); out != "[]" {
		t.Fatalf("clear: %s", out)
	}
	if code, out := api.do("GET", "/update?api_key="+writeKey+"&field1=3", ""); code != 200 || out != "1" {
		t.Fatalf("update after clear: %d %s", code, out)
	}

	// A device authorized on the channel publishes with the credentials
	// the API answered once.
	type device struct {
		ID       uint64 `json:"id"`
		ClientID string `json:"client_id"`
		Username string `json:"username"`
		Password string `json:"password"`
		Channels []struct {
			ID        uint64 `json:"id"`
			Publish   bool   `json:"publish"`
			Subscribe bool   `json:"subscribe"`
		} `json:"channels"`
	}
	var dev device
	api.ok(&dev, "POST", "/mqtt/devices.json", "api_key="+key+"&name=ESP32&description=bed+sensor&channel=1:pubsub")
	if dev.ID != 1 || dev.Password == "" || len(dev.Channels) != 1 || !dev.Channels[0].Publish {
		t.Fatalf("device: %+v", dev)
	}
	if out := api.ok(nil, "GET", "/mqtt/devices/1.json?api_key="+key, ""); strings.Contains(out, "password") {
		t.Fatalf("device shows its password: %s", out)
	}
	if out := api.ok(nil, "GET", "/mqtt/devices.json?api_key="+key, ""); strings.Contains(out, dev.Password) || !strings.Contains(out, dev.ClientID) {
		t.Fatalf("device list: %s", out)
	}
	mqttPort := port(srv.addr)
	if _, err := exec.LookPath("mosquitto_pub"); err == nil {
		pub := func(password, value string) error {
			return exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv311", "-i", dev.ClientID,
				"-u", dev.Username, "-P", password, "-t", "channels/1/publish", "-m", "field1="+value).Run()
		}
		if err := pub(dev.Password, "42"); err != nil {
			t.Fatalf("mosquitto_pub with the API's credentials: %v", err)
		}
		waitHTTP(t, api, "/channels/1/feeds/last.json", `"field1":"42"`)
		// The device list shows what the broker saw, as the CLI's does.
		if out := api.ok(nil, "GET", "/mqtt/devices/1.json?api_key="+key, ""); strings.Contains(out, `"last_publish_at":null`) || !strings.Contains(out, `"last_publish_at":"`) {
			t.Fatalf("device after a publish: %s", out)
		}
		var reset device
		api.ok(&reset, "POST", "/mqtt/devices/1/reset_password.json?api_key="+key, "")
		if reset.Password == "" || reset.Password == dev.Password {
			t.Fatalf("reset: %+v", reset)
		}
		if err := pub(dev.Password, "43"); err == nil {
			t.Fatal("the old password still connects")
		}
		if err := pub(reset.Password, "44"); err != nil {
			t.Fatalf("mosquitto_pub with the new password: %v", err)
		}
		waitHTTP(t, api, "/channels/1/feeds/last.json", `"field1":"44"`)
	} else {
		t.Log("mosquitto_pub not installed: MQTT part skipped")
	}
	// The device update replaces its grants.
	api.ok(nil, "PUT", "/mqtt/devices/1.json?api_key="+key, `{"name":"ESP32 bed","channels":[{"id":1,"subscribe":true}]}`)
	var cliDev []struct {
		Name     string `json:"name"`
		Channels []struct {
			Publish bool `json:"publish"`
		} `json:"channels"`
	}
	cli(t, data, &cliDev, "device", "list", "--json")
	if len(cliDev) != 1 || cliDev[0].Name != "ESP32 bed" || len(cliDev[0].Channels) != 1 || cliDev[0].Channels[0].Publish {
		t.Fatalf("device list after PUT: %+v", cliDev)
	}

	// Bad input: 400 naming the field.
	api.refused(400, "name", "POST", "/channels.json?api_key="+key, "description=no+name")
	api.refused(400, "public_flag", "PUT", "/channels/1.json?api_key="+key, "public_flag=perhaps")
	api.refused(400, "channel", "POST", "/mqtt/devices.json?api_key="+key, "name=x&channel=1:rw")
	api.refused(400, "JSON object", "POST", "/mqtt/devices.json?api_key="+key, `{"name":`)
	api.refused(404, "", "GET", "/channels/99.json?api_key="+key, "")
	api.refused(404, "", "GET", "/mqtt/devices/18446744073709551616.json?api_key="+key, "")
	api.refused(413, "", "POST", "/channels.json?api_key="+key, "name=x&metadata="+strings.Repeat("m", 70<<10))

	// Deletes answer what was deleted.
	if out := api.ok(nil, "DELETE", "/mqtt/devices/1.json?api_key="+key, ""); !strings.Contains(out, dev.ClientID) {
		t.Fatalf("device delete: %s", out)
	}
	if out := api.ok(nil, "DELETE", "/channels/1.json?api_key="+key, ""); !strings.Contains(out, `"name":"Garden beds"`) || strings.Contains(out, writeKey) {
		t.Fatalf("channel delete: %s", out)
	}
	api.refused(404, "", "GET", "/channels/1.json?api_key="+key, "")

	// Wrong keys: 401, the channel's keys are not the user key; after
	// auth_backoff.after_failures (5) the address gets 429, even with the
	// right key.
	api.refused(401, "authentication", "GET", "/channels.json", "")
	wrong := []string{readKey, writeKey, "AAAAAAAAAAAAAAAA", strings.ToLower(key), dev.Password}
	for _, k := range wrong {
		api.refused(401, "authentication", "GET", "/mqtt/devices.json?api_key="+url.QueryEscape(k), "")
	}
	req, _ := http.NewRequest("GET", api.base+"/channels.json?api_key="+key, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the right key from a throttled address: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	api.refused(429, "Retry-After", "DELETE", "/channels/1.json?api_key="+key, "")
	// What needs no key is still served.
	api.ok(nil, "GET", "/channels/public.json", "")

	// Every refusal is counted; no key or password is in the log.
	_, metrics := api.do("GET", "/metrics", "")
	for _, want := range []string{`feedmq_http_refused_total{reason="auth_required"} 6`, `feedmq_http_refused_total{reason="too_many_requests"}`, `feedmq_http_refused_total{reason="bad_request"} 4`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	logs := srv.logs.String()
	for _, secret := range append(wrong, key) {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the key or password %q", secret)
		}
	}
	if !strings.Contains(logs, "user API key refused") {
		t.Error("no log line for the refused keys")
	}
}

// waitHTTP polls path until its answer contains want.
func waitHTTP(t *testing.T, api apiCall, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out := api.do("GET", path, "")
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held %s: %s", path, want, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
