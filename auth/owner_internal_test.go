package auth

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FillHashSlots takes every hash slot until the returned func is called.
func FillHashSlots() func() {
	for range cap(hashSlots) {
		hashSlots <- struct{}{}
	}
	return func() {
		for range cap(hashSlots) {
			<-hashSlots
		}
	}
}

// DecodeOwnerHashForTest decodes s and checks that what decodes is within
// the bounds and encodes back to s.
func DecodeOwnerHashForTest(t *testing.T, s string) {
	p, err := decodeOwnerHash(s)
	if err != nil {
		return
	}
	if p.memory > maxHashMemory || p.time > maxHashTime || p.threads > maxHashThreads ||
		p.memory == 0 || p.time == 0 || p.threads == 0 || len(p.salt) < 8 || len(p.key) < 16 {
		t.Fatalf("decoded %q out of bounds: %+v", s, p)
	}
	if p.String() != s {
		t.Fatalf("decoded %q, encodes back as %q", s, p.String())
	}
}

// At most cap(hashSlots) hashes run at once, however many callers wait.
func TestHashSlotsCapConcurrency(t *testing.T) {
	const callers = 6
	var active, peak atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			_ = withHashSlot(context.Background(), func() {
				n := active.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				active.Add(-1)
			})
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for active.Load() < int32(cap(hashSlots)) {
		if time.Now().After(deadline) {
			t.Fatal("the slots never filled")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p != int32(cap(hashSlots)) {
		t.Fatalf("peak of %d hashes at once, want %d", p, cap(hashSlots))
	}
}
