package auth

import (
	"strconv"
	"testing"
	"time"
)

func TestThrottleBackoff(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := NewThrottle(Backoff{AfterFailures: 3, Initial: time.Second, Max: 8 * time.Second})
	th.now = func() time.Time { return now }
	a, b := "10.0.0.1:1234", "10.0.0.2:999"
	for i := 1; i <= 2; i++ {
		th.Fail(a)
		if _, blocked := th.Blocked(a); blocked {
			t.Fatalf("blocked after %d failures, threshold 3", i)
		}
	}
	// Back-off doubles from Initial up to Max with each further failure.
	for i, want := range []time.Duration{1, 2, 4, 8, 8} {
		th.Fail("10.0.0.1:5555") // same host, other port
		until, blocked := th.Blocked(a)
		if !blocked || until.Sub(now) != want*time.Second {
			t.Fatalf("failure %d: blocked=%v for %v, want %v", i+3, blocked, until.Sub(now), want*time.Second)
		}
	}
	if _, blocked := th.Blocked(b); blocked {
		t.Fatal("another address is throttled")
	}
	now = now.Add(9 * time.Second)
	if _, blocked := th.Blocked(a); blocked {
		t.Fatal("still blocked after the back-off ran out")
	}
	th.Succeed(a)
	th.Fail(a)
	if _, blocked := th.Blocked(a); blocked {
		t.Fatal("a success did not clear the failures")
	}

	off := NewThrottle(Backoff{AfterFailures: -1})
	for range 100 {
		off.Fail(a)
	}
	if _, blocked := off.Blocked(a); blocked {
		t.Fatal("disabled throttle blocks")
	}
}

func TestThrottleMemoryBounded(t *testing.T) {
	th := NewThrottle(Backoff{})
	for i := 0; i < maxTracked+1000; i++ {
		th.Fail(string(rune(i)) + ":1")
	}
	if len(th.by) > maxTracked {
		t.Fatalf("tracking %d addresses, bound %d", len(th.by), maxTracked)
	}
}

// A table full of fresh failures (a flood from many addresses) must not
// make each further new address scan the whole table under the lock that
// every key check and login takes: one sweep frees room for many.
func TestThrottleSweepLeavesRoom(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := NewThrottle(Backoff{})
	th.now = func() time.Time { return now }
	addr := func(i int) string {
		return "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + ":1"
	}
	for i := range maxTracked {
		th.Fail(addr(i))
		now = now.Add(time.Millisecond) // all within Max: none is stale
	}
	th.Fail(addr(maxTracked))
	if free := maxTracked - len(th.by); free < maxTracked/16 {
		t.Fatalf("after a sweep of a full table, room for %d new addresses: each of the next ones scans %d entries again", free, len(th.by))
	}
	if _, ok := th.by[ThrottleKey(addr(maxTracked))]; !ok {
		t.Fatal("the newest address is not tracked")
	}
	if _, ok := th.by[ThrottleKey(addr(0))]; ok {
		t.Fatal("the oldest address is still tracked")
	}
}

func TestThrottleKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7:5678", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:5678", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:80", "2001:db8:1:2::/64"}, // same /64, same key
		{"[2001:db8:1:3::1]:80", "2001:db8:1:3::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"[::1]:80", "::/64"},
		{"not an address", "not an address"},
	} {
		if got := ThrottleKey(tc.in); got != tc.want {
			t.Errorf("ThrottleKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Failures from two addresses of one /64 add up.
	th := NewThrottle(Backoff{AfterFailures: 2})
	th.Fail("[2001:db8::1]:1")
	th.Fail("[2001:db8::2]:1")
	if _, blocked := th.Blocked("[2001:db8::ffff]:9"); !blocked {
		t.Error("a /64 with two failures from different addresses is not throttled")
	}
}
