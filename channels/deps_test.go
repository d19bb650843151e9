package channels_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStdlibOnly keeps the domain package free of third-party imports
// (DESIGN §1): no mochi, bbolt, cobra, nor anything else outside the
// standard library.
func TestStdlibOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/feedmq/feedmq/channels" {
			t.Errorf("channels depends on %s; it may import only the standard library", p)
		}
	}
	out, err = exec.Command(gobin, "list", "-f", "{{join .Imports \"\\n\"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "net/http" || p == "log/slog" || p == "os" {
			t.Errorf("channels imports %s; the domain does no I/O and no logging", p)
		}
	}
}
