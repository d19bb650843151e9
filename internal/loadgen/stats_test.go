package loadgen

import (
	"math"
	"os"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/fdlimit"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	thousand := make([]int, 1000)
	for i := range thousand {
		thousand[i] = i + 1
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99.9, 7 * time.Millisecond},
		{ms(1, 2), 50, 1 * time.Millisecond},
		{ms(1, 2), 51, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.9, 100 * time.Millisecond},
		{ms(thousand...), 99.9, 999 * time.Millisecond},
		{ms(thousand...), 0.01, 1 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("p%v of %d samples: got %v, want %v", tc.p, len(tc.sorted), got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	if Summarize(nil) != nil {
		t.Fatal("summary of no samples")
	}
	s := make([]time.Duration, 0, 1000)
	for i := 1000; i >= 1; i-- { // unsorted
		s = append(s, time.Duration(i)*time.Microsecond*1500)
	}
	l := Summarize(s)
	want := Latency{Samples: 1000, P50: 750, P99: 1485, P999: 1498.5, Max: 1500}
	if *l != want {
		t.Fatalf("got %+v, want %+v", *l, want)
	}
}

func TestParseProc(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n"
	if d, err := parseStatCPU([]byte(stat)); err != nil || d != 3250*time.Millisecond {
		t.Fatalf("cpu: %v %v", d, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
	status := "Name:\tfeedmq\nVmPeak:\t  99999 kB\nVmRSS:\t   25600 kB\nThreads:\t9\n"
	if n, err := parseStatusRSS([]byte(status)); err != nil || n != 25600*1024 {
		t.Fatalf("rss: %d %v", n, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tx\n")); err == nil {
		t.Fatal("status without VmRSS accepted")
	}
	// This process has both.
	if _, err := ProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if n, err := ProcRSS(os.Getpid()); err != nil || n <= 0 {
		t.Fatalf("own RSS: %d %v", n, err)
	}
}

func TestParseFileLimit(t *testing.T) {
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max processes             95000                95000                processes \n" +
		"Max open files            20000                40000                files     \n"
	if n, err := parseFileLimit([]byte(limits)); err != nil || n != 20000 {
		t.Fatalf("got %d, %v", n, err)
	}
	unlimited := "Max open files            unlimited            unlimited            files     \n"
	if n, err := parseFileLimit([]byte(unlimited)); err != nil || n != math.MaxInt64 {
		t.Fatalf("unlimited: got %d, %v", n, err)
	}
	if _, err := parseFileLimit([]byte("Max processes 1 1 processes\n")); err == nil {
		t.Fatal("limits without open files accepted")
	}
	// This process has one.
	soft, _, err := fdlimit.Raise(0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ProcFileLimit(os.Getpid()); err != nil || n != int64(soft) {
		t.Fatalf("own limit: %d, %v; getrlimit says %d", n, err, soft)
	}
}
