package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADMEAPIExamples runs the README's channel and devices API
// examples as written, with `feedmq` and the API address pointed at a
// test server: the README promises they run.
func TestREADMEAPIExamples(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make test-deps installs it): %v", tool, err)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "These run as written (with `jq`) against `make run`:\n\n```sh\n")
	if !ok {
		t.Fatal("README has no API example block")
	}
	script, _, ok := strings.Cut(rest, "```\n")
	if !ok {
		t.Fatal("README's API example block is not closed")
	}
	// The other example blocks run after the API ones, in the same shell,
	// each with a channel of its own.
	const marker = "These run as written after the API examples' `KEY` and `API` lines:\n\n```sh\n"
	blocks := 0
	for rest := string(readme); ; blocks++ {
		var found bool
		if _, rest, found = strings.Cut(rest, marker); !found {
			break
		}
		block, _, closed := strings.Cut(rest, "```\n")
		if !closed {
			t.Fatal("a README example block is not closed")
		}
		script += block
	}
	if blocks < 2 {
		t.Fatalf("README has %d example blocks after the API ones, want the aggregation and the XML/status ones", blocks)
	}
	const apiLine = "API=http://localhost:8080\n"
	if !strings.Contains(script, apiLine) {
		t.Fatalf("the example block no longer sets %q", apiLine)
	}
	data := t.TempDir()
	s := startServeWith(t, plainBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0")
	script = strings.Replace(script, apiLine, "API=http://"+s.addrs["http"]+"\n", 1)
	prelude := "set -euo pipefail\nfeedmq() { " + plainBuild.binary(t) + ` --data "$FEEDMQ_DATA" "$@"; }` + "\n"
	cmd := exec.Command("bash", "-c", prelude+script)
	cmd.Env = append(os.Environ(), "FEEDMQ_DATA="+data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's API examples failed: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		`"api_keys":[{"api_key":"`, // create answers with the keys
		`"current_page":1`,         // public.json
		`"Raised beds"`,            // the PUT took effect
		"[]",                       // clear
		`"password":"`,             // device create and reset
		"HTTP/1.1 401",             // the wrong key
		`"field1":"19.625"`,        // average=60 and last_average
		"}39.25",                   // last_sum.txt after last_average.json
		"2026-12-06 06:00:00 UTC,44.0,82.0",
		"-1\n1\n",                               // an empty last value, then a write dropping disabled fields
		`<entry-id type="integer">2</entry-id>`, // update.xml
		`"metadata":"room 7"`,
		`"status":"door open"`,
		`{"success":true}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the examples' output lacks %q:\n%s", want, got)
		}
	}
	// After the clear, the next write is entry 1.
	if !strings.Contains(got, "[]1") && !strings.Contains(got, "[]\n1") {
		t.Errorf("the write after the clear was not entry 1:\n%s", got)
	}
}
