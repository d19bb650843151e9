package main

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeConfig feeds arbitrary bytes to the config decoder and the
// validator: a broken file must give an error, never a panic, and an
// accepted one must validate the same way twice.
func FuzzDecodeConfig(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "..", "configs", "feedmq.yaml")); err == nil {
		f.Add(b)
	}
	cases, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "config", "*.yaml"))
	for _, p := range cases {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("limits: {max_payload: 99999999999999999999}\n"))
	f.Add([]byte("storage: \"postgres://u:p@h:5432/db?sslmode=disable\"\n"))
	f.Add([]byte("storage: \"postgresql://u@h1,h2/db?target_session_attrs=read-write\"\nstorage_password_file: /nonexistent\n"))
	f.Add([]byte("idle_timeout: -1h\nauth_backoff: {after_failures: 3, initial: 2s, max: 1s}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := DefaultConfig()
		if err := decodeConfig(b, &c); err != nil {
			return
		}
		first := c.Validate()
		if second := c.Validate(); (first == nil) != (second == nil) {
			t.Fatalf("Validate is not stable: %v then %v", first, second)
		}
	})
}
