package auth_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
)

// A device's JSON carries "connections" and "last_publish_at" only with
// an activity ([] and null when there is none to show); credentials never
// carry them.
func TestDeviceJSONActivity(t *testing.T) {
	d := &auth.Device{ID: 4, Name: "esp32", ClientID: "c", Username: "u", CreatedAt: time.Unix(0, 0)}
	keysOf := func(v any) map[string]json.RawMessage {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	plain := keysOf(auth.NewDeviceJSON(d, "secret"))
	if _, ok := plain["connections"]; ok {
		t.Fatalf("activity keys without an activity: %v", plain)
	}
	if _, ok := plain["last_publish_at"]; ok {
		t.Fatalf("activity keys without an activity: %v", plain)
	}
	var file bytes.Buffer
	if err := auth.WriteCredentials(&file, "json", &auth.Credentials{Device: d, Password: "secret"}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(file.String(), "connections") || strings.Contains(file.String(), "last_publish_at") {
		t.Fatalf("credentials file carries activity:\n%s", file.String())
	}

	idle := keysOf(auth.NewDeviceJSON(d, "").WithActivity(auth.Activity{}))
	if string(idle["connections"]) != "[]" || string(idle["last_publish_at"]) != "null" {
		t.Fatalf("idle device: connections %s, last_publish_at %s", idle["connections"], idle["last_publish_at"])
	}
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	busy := auth.NewDeviceJSON(d, "").WithActivity(auth.Activity{
		Connections: []auth.Connection{{ClientID: "c", RemoteAddr: "127.0.0.1:5000", Listener: "mqtt", Since: at}},
		LastPublish: &at,
	})
	m := keysOf(busy)
	want := `[{"client_id":"c","remote_addr":"127.0.0.1:5000","listener":"mqtt","connected_at":"2026-05-01T10:00:00Z"}]`
	if string(m["connections"]) != want || string(m["last_publish_at"]) != `"2026-05-01T10:00:00Z"` {
		t.Fatalf("connections %s, last_publish_at %s", m["connections"], m["last_publish_at"])
	}
	// It reads back.
	var back auth.DeviceJSON
	b, _ := json.Marshal(busy)
	if err := json.Unmarshal(b, &back); err != nil || back.Activity == nil || len(back.Connections) != 1 || !back.LastPublish.Equal(at) {
		t.Fatalf("read back %+v %v", back, err)
	}
}
