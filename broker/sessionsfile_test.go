package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
	"github.com/feedmq/feedmq/storage"
)

// TestDamagedSessionsFile: a damaged mqtt-sessions.db (a disk error, a
// crash of the file system) stops the broker with an error that names
// the file and says what to do, whatever part of it is damaged: bbolt
// panics on a damaged page when it reads one, which took the whole
// process down with a stack trace instead.
func TestDamagedSessionsFile(t *testing.T) {
	ts := startServer(t, broker.Options{})
	dev := ts.device()
	ts.allow(dev, "readwrite home/#")
	c := pahoOpts(t, ts.addr, dev, nil)
	for _, topic := range []string{"home/a", "home/b", "home/c"} {
		c.publishRetained(t, topic, 1, strings.Repeat("x", 100))
	}
	c.Disconnect(0)
	ts.stop()
	path := filepath.Join(ts.dir, "mqtt-sessions.db")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:100] }},
		{"meta pages", func(b []byte) []byte { return fill(b, 0, 2*page, 0xff) }},
		{"data pages", func(b []byte) []byte { return fill(b, 2*page, len(b), 0x07) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.damage(append([]byte(nil), good...)), 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := storage.Open(filepath.Join(ts.dir, "feedmq.db"), storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			svc, err := admin.NewLocal(context.Background(), db, auth.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", SessionsPath: path, Logger: testLogger(t)}, db, svc.Registry)
			if err == nil {
				err = srv.Open()
				srv.Close()
			}
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("got %v, want an error naming %s as damaged", err, path)
			}
		})
	}
}

func fill(b []byte, from, to int, v byte) []byte {
	for i := from; i < to && i < len(b); i++ {
		b[i] = v
	}
	return b
}
