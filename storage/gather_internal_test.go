package storage

import (
	"testing"
	"time"
)

// gatherWriter is a writer with only what gather touches: a queue, a
// batch of one append, and the last commit's figures.
func gatherWriter(woken int, last time.Duration) *writer {
	w := &writer{batch: make([]*appendReq, 0, maxBatch), gathered: make(chan struct{}, 1),
		quit: make(chan struct{}), gatherT: time.NewTimer(time.Hour), woken: woken, lastCommit: last}
	w.gatherT.Stop()
	w.batch = append(w.batch, &appendReq{})
	return w
}

// queueReq queues r as an append does.
func (w *writer) queueReq(r *appendReq) {
	w.qmu.Lock()
	w.push(r)
	w.qmu.Unlock()
}

// runGather runs w.gather and fails the test if it has not returned
// within the deadline.
func runGather(t *testing.T, w *writer) {
	t.Helper()
	done := make(chan struct{})
	go func() { w.gather(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("gather did not return")
	}
}

// TestGatherWaitsForWoken: after a commit that answered 6 waiting
// callers, the writer takes their appends into one batch even when they
// arrive one by one, and in queue order.
func TestGatherWaitsForWoken(t *testing.T) {
	old := gatherMax
	gatherMax = time.Hour // only the arrivals end this wait
	t.Cleanup(func() { gatherMax = old })
	w := gatherWriter(6, time.Hour)
	sent := make([]*appendReq, 5)
	go func() {
		for i := range sent {
			sent[i] = &appendReq{}
			w.queueReq(sent[i])
			time.Sleep(time.Millisecond) // one by one, as readers come back
		}
	}()
	runGather(t, w)
	if len(w.batch) != 6 {
		t.Fatalf("batch of %d, want 6", len(w.batch))
	}
	for i, r := range sent {
		if w.batch[i+1] != r {
			t.Fatalf("batch[%d] is not the append queued %d-th", i+1, i+1)
		}
	}
}

// TestGatherNoWait: gather returns at once with the batch as it is when
// the last commit answered fewer than gatherMin waiting callers (light
// load), when the batch already holds as many as were woken, or when no
// commit took any time yet; and it ends its wait at the deadline or when
// the DB closes.
func TestGatherNoWait(t *testing.T) {
	old := gatherMax
	gatherMax = time.Hour
	t.Cleanup(func() { gatherMax = old })
	for _, tt := range []struct {
		name  string
		woken int
		last  time.Duration
		batch int // appends in the batch before gather
	}{
		{"light load", gatherMin - 1, time.Hour, 1},
		{"all there", 5, time.Hour, 5},
		{"no commit yet", 100, 0, 1},
	} {
		w := gatherWriter(tt.woken, tt.last)
		for len(w.batch) < tt.batch {
			w.batch = append(w.batch, &appendReq{})
		}
		w.queueReq(&appendReq{}) // queued after drain: left for the next commit
		runGather(t, w)
		if len(w.batch) != tt.batch {
			t.Errorf("%s: batch of %d, want %d (nothing taken from the queue)", tt.name, len(w.batch), tt.batch)
		}
	}

	gatherMax = time.Millisecond
	w := gatherWriter(100, time.Hour)
	w.queueReq(&appendReq{})
	runGather(t, w) // the deadline ends it
	if len(w.batch) != 2 {
		t.Errorf("deadline: batch of %d, want 2", len(w.batch))
	}

	gatherMax = time.Hour
	w = gatherWriter(100, time.Hour)
	close(w.quit)
	runGather(t, w) // the close ends it
	if len(w.batch) != 1 {
		t.Errorf("closed: batch of %d, want 1", len(w.batch))
	}
}
