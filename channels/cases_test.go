package channels_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// TestPayloadCases replays ../testdata/payloads/<case>: topic and payload
// in, entry.json or error out. See the README there.
func TestPayloadCases(t *testing.T) {
	dirs, err := filepath.Glob("../testdata/payloads/*/topic")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases in ../testdata/payloads: %v", err)
	}
	ch := testChannel()
	ch.WriteKey = "ABCDEFGHIJKLMNOP"
	for _, f := range dirs {
		dir := filepath.Dir(f)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			topic := string(mustRead(t, filepath.Join(dir, "topic")))
			payload := mustRead(t, filepath.Join(dir, "payload"))
			tp, err := channels.ParseTopic(topic)
			if err != nil {
				t.Fatalf("ParseTopic(%q): %v", topic, err)
			}
			if tp.Action != channels.Publish || tp.ChannelID != ch.ID || (tp.Key != "" && tp.Key != ch.WriteKey) {
				t.Fatalf("topic %q is not a publish to channel %d: %+v", topic, ch.ID, tp)
			}
			e, err := channels.ParsePayload(ch, tp.Field, payload, channels.DefaultLimits())
			if want, readErr := os.ReadFile(filepath.Join(dir, "error")); readErr == nil {
				msg := strings.TrimSpace(string(want))
				if err == nil || !strings.Contains(err.Error(), msg) {
					t.Fatalf("ParsePayload: error %v, want one containing %q", err, msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePayload: %v", err)
			}
			e.ID = 1
			if e.CreatedAt.IsZero() {
				e.CreatedAt = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
			}
			want := bytes.TrimSpace(mustRead(t, filepath.Join(dir, "entry.json")))
			if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
				t.Errorf("entry JSON\n got %s\nwant %s", got, want)
			}
		})
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
