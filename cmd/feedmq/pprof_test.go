package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestStartPprof(t *testing.T) {
	if _, err := startPprof("256.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Fatal("a bad address was accepted")
	}
	var logs strings.Builder
	stop, err := startPprof("127.0.0.1:0", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_, addr, _ := strings.Cut(logs.String(), "addr=")
	resp, err := http.Get("http://" + strings.TrimSpace(addr) + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
