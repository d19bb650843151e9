package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBulkUpdateReachesMosquittoSub: a bulk write to `feedmq serve` is
// stored as one batch and mosquitto_sub receives every entry of it, in
// entry order (ThingSpeak does not deliver bulk writes to subscribers;
// feedmq does).
func TestBulkUpdateReachesMosquittoSub(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Fatalf("mosquitto_sub is needed (make test-deps installs it): %v", err)
	}
	data := t.TempDir()
	bin := plainBuild.binary(t)
	run := func(v any, args ...string) {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"--data", data}, args...)...).Output()
		if err != nil {
			t.Fatalf("feedmq %s: %v", strings.Join(args, " "), err)
		}
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("feedmq %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var ch struct {
		ID       uint64 `json:"id"`
		WriteKey string `json:"write_api_key"`
	}
	run(&ch, "channel", "create", "--name", "Greenhouse", "--field", "1=Temperature", "--field", "2=Humidity", "--json")
	var dev struct {
		ClientID string `json:"client_id"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	run(&dev, "device", "create", "--name", "sub", "--channel", fmt.Sprint(ch.ID), "--json")
	s := startServeWith(t, plainBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0")

	sub := exec.Command("stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", port(s.addr), "-V", "mqttv311",
		"-i", dev.ClientID, "-u", dev.Username, "-P", dev.Password, "-d", "-t", fmt.Sprintf("channels/%d/subscribe", ch.ID))
	subOut := new(lockedBuffer)
	stdout, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sub.Stderr = subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Process.Kill(); sub.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			subOut.Write([]byte(sc.Text() + "\n"))
		}
	}()
	if !subOut.waitFor("received SUBACK", 10*time.Second) {
		t.Fatalf("mosquitto_sub did not subscribe:\n%s", subOut.String())
	}

	form := url.Values{"write_api_key": {ch.WriteKey}, "time_format": {"relative"}, "updates": {"0,20.5,40|60,20.75,41|60,21,42"}}
	resp, err := http.Post(fmt.Sprintf("http://%s/channels/%d/bulk_update.csv", s.addrs["http"], ch.ID),
		"application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || string(body) != `{"success":true}` {
		t.Fatalf("bulk_update.csv: %d %s", resp.StatusCode, body)
	}
	if !subOut.waitFor(`"entry_id":3,"field1":"21"`, 10*time.Second) {
		t.Fatalf("mosquitto_sub did not receive the batch:\n%s", subOut.String())
	}
	out := subOut.String()
	i1 := strings.Index(out, `"entry_id":1,"field1":"20.5","field2":"40"`)
	i2 := strings.Index(out, `"entry_id":2,"field1":"20.75","field2":"41"`)
	i3 := strings.Index(out, `"entry_id":3,"field1":"21","field2":"42"`)
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("mosquitto_sub got the entries out of order or not all:\n%s", out)
	}
	if strings.Contains(s.logs.String(), ch.WriteKey) {
		t.Errorf("the server logged the write key:\n%s", s.logs.String())
	}
}
