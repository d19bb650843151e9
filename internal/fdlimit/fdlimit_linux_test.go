//go:build linux

package fdlimit

import (
	"syscall"
	"testing"
)

func limits(t *testing.T) (soft, hard uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return uint64(lim.Cur), uint64(lim.Max)
}

// Raise(0) takes the soft limit up to the hard one, and what it reports
// is what the kernel has.
func TestRaiseToHard(t *testing.T) {
	soft0, hard0 := limits(t)
	if soft0 > 32 {
		// Start below the hard limit, so that there is something to raise.
		lower := syscall.Rlimit{Cur: soft0 / 2, Max: hard0}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lower); err != nil {
			t.Fatal(err)
		}
	}
	soft, hard, err := Raise(0)
	if err != nil {
		t.Fatal(err)
	}
	ks, kh := limits(t)
	if soft != hard || hard != hard0 || ks != soft || kh != hard {
		t.Fatalf("Raise(0) = %d, %d; kernel %d, %d; hard limit was %d", soft, hard, ks, kh, hard0)
	}
}

// Raise never lowers the limit.
func TestRaiseNeverLowers(t *testing.T) {
	soft0, hard0 := limits(t)
	soft, hard, err := Raise(1)
	if err != nil || soft != soft0 || hard != hard0 {
		t.Fatalf("Raise(1) = %d, %d, %v; limits were %d, %d", soft, hard, err, soft0, hard0)
	}
	if ks, kh := limits(t); ks != soft0 || kh != hard0 {
		t.Fatalf("kernel limits changed to %d, %d from %d, %d", ks, kh, soft0, hard0)
	}
}

// Above the hard limit, an unprivileged process gets an error and the
// hard limit as its soft limit; a privileged one gets what it asked for.
func TestRaiseAboveHard(t *testing.T) {
	_, hard0 := limits(t)
	want := hard0 + 1
	soft, hard, err := Raise(want)
	ks, kh := limits(t)
	switch {
	case err == nil && (soft < want || ks != soft || kh != hard):
		t.Fatalf("Raise(%d) = %d, %d without error; kernel %d, %d", want, soft, hard, ks, kh)
	case err != nil && (soft != hard0 || hard != hard0 || ks != hard0 || kh != hard0):
		t.Fatalf("Raise(%d) = %d, %d, %v; kernel %d, %d; hard limit was %d", want, soft, hard, err, ks, kh, hard0)
	}
}
