// Package layout holds the test that enforces DESIGN.md section 1: imports
// point inward (cmd -> broker, http, storage -> auth -> channels).
package layout

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/feedmq/feedmq"

// deps returns every package pkg depends on, itself excluded.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	var ds []string
	for _, d := range strings.Fields(string(out)) {
		if d != module+"/"+pkg {
			ds = append(ds, d)
		}
	}
	return ds
}

func isStdlib(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

func TestImportRules(t *testing.T) {
	// Domain packages may use only the standard library (and auth the
	// channels domain and Go's extended crypto, for argon2id), and none
	// of the adapter-only parts of it.
	forbiddenStd := []string{"net/http", "log/slog", "database/sql", "os/exec"}
	domain := map[string][]string{
		"channels": nil,
		"auth": {module + "/channels",
			"golang.org/x/crypto/argon2", "golang.org/x/crypto/blake2b", "golang.org/x/sys/cpu"},
	}
	for pkg, allowed := range domain {
		for _, d := range deps(t, pkg) {
			ok := isStdlib(d) || slices.Contains(allowed, d)
			for _, f := range forbiddenStd {
				if d == f {
					ok = false
				}
			}
			if !ok {
				t.Errorf("%s imports %s; domain packages must stay plain Go", pkg, d)
			}
		}
	}
	// The admin service sits above the domain and storage: nothing below
	// it imports it, and it does not reach into the broker.
	for _, pkg := range []string{"channels", "auth", "storage", "broker"} {
		for _, d := range deps(t, pkg) {
			if d == module+"/admin" {
				t.Errorf("%s imports admin; only fronts (cmd/feedmq) may", pkg)
			}
		}
	}
	for _, d := range deps(t, "admin") {
		if strings.HasPrefix(d, module+"/broker") {
			t.Errorf("admin imports %s; it works on the stores and the registry only", d)
		}
	}
	// Adapters never import each other: the HTTP adapter gets the store,
	// the registry and the broker as interfaces from cmd/feedmq.
	for pkg, banned := range map[string][]string{
		"broker":  {"storage", "http"},
		"storage": {"broker", "http"},
		"http":    {"broker", "storage", "admin"},
	} {
		for _, d := range deps(t, pkg) {
			for _, b := range banned {
				if d == module+"/"+b || strings.HasPrefix(d, module+"/"+b+"/") {
					t.Errorf("%s imports %s; adapters meet only in cmd/feedmq", pkg, d)
				}
			}
		}
	}
}
