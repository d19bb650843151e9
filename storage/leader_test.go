package storage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// waitUntil polls cond until it holds, failing the test after a generous
// deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// holdFirstCommit makes the next commit wait, once it has its batch, until
// the returned release is called; held is closed when it waits. Every
// commit's size is recorded in sizes.
func holdFirstCommit(t *testing.T) (held <-chan struct{}, release func(), sizes func() []int) {
	h, r := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []int
	var once sync.Once
	storage.SetCommitHook(t, func(n int) {
		mu.Lock()
		got = append(got, n)
		first := len(got) == 1
		mu.Unlock()
		if first {
			close(h)
			<-r
		}
	})
	return h, func() { once.Do(func() { close(r) }) }, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// result is one append's outcome as its caller saw it.
type result struct {
	id    uint64
	err   error
	calls int // answers received (then calls, or returns)
	// then is the place of its then call among all then calls (from 1),
	// and thenErr the error it got (AppendEntryAsync, AppendEntryThen).
	then    int
	thenErr error
}

// queueBehind starts appends one at a time, each queued (Queued grows)
// before the next starts, so that queue order is known: kinds says which
// are synchronous ('s'), asynchronous ('a'), synchronous with a then
// ('t'), batches of two ('b') or batches of two with a then ('T').
// It returns the outcomes, complete once wait returns.
func queueBehind(t *testing.T, db *storage.DB, ch uint64, kinds string) (res []result, wait func()) {
	t.Helper()
	res = make([]result, len(kinds))
	var wg sync.WaitGroup
	var mu sync.Mutex
	ctx := context.Background()
	base := storage.Queued(db)
	thens := 0
	// answered records the then call of append i, in the order of all.
	answered := func(i int, err error) {
		mu.Lock()
		thens++
		res[i].then, res[i].thenErr = thens, err
		mu.Unlock()
	}
	for i, k := range kinds {
		e := &channels.Entry{ChannelID: ch}
		e.SetValue(0, "q"+strconv.Itoa(i))
		switch k {
		case 's':
			wg.Go(func() {
				err := db.AppendEntry(ctx, e)
				mu.Lock()
				res[i] = result{id: e.ID, err: err, calls: res[i].calls + 1}
				mu.Unlock()
			})
		case 'b':
			e2 := &channels.Entry{ChannelID: ch}
			e2.SetValue(0, "q"+strconv.Itoa(i)+"b")
			wg.Go(func() {
				err := db.AppendEntries(ctx, []*channels.Entry{e, e2})
				mu.Lock()
				res[i] = result{id: e.ID, err: err, calls: res[i].calls + 1}
				if err == nil && e2.ID != e.ID+1 {
					res[i].err = fmt.Errorf("batch numbered %d, %d", e.ID, e2.ID)
				}
				mu.Unlock()
			})
		case 'T':
			e2 := &channels.Entry{ChannelID: ch}
			e2.SetValue(0, "q"+strconv.Itoa(i)+".2")
			wg.Go(func() {
				err := db.AppendEntriesThen(ctx, []*channels.Entry{e, e2}, func(err error) { answered(i, err) })
				mu.Lock()
				if res[i].then == 0 {
					err = fmt.Errorf("returned (%v) before then was called", err)
				} else if err == nil && e2.ID != e.ID+1 {
					err = fmt.Errorf("batch numbered %d, %d", e.ID, e2.ID)
				}
				res[i].id, res[i].err, res[i].calls = e.ID, err, res[i].calls+1
				mu.Unlock()
			})
		case 't':
			wg.Go(func() {
				err := db.AppendEntryThen(ctx, e, func(_ *channels.Entry, err error) { answered(i, err) })
				mu.Lock()
				if res[i].then == 0 {
					err = fmt.Errorf("returned (%v) before then was called", err)
				}
				res[i].id, res[i].err, res[i].calls = e.ID, err, res[i].calls+1
				mu.Unlock()
			})
		case 'a':
			wg.Add(1)
			if err := db.AppendEntryAsync(ctx, e, func(e *channels.Entry, err error) {
				mu.Lock()
				thens++
				res[i] = result{id: e.ID, err: err, calls: res[i].calls + 1, then: thens, thenErr: err}
				mu.Unlock()
				wg.Done()
			}); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, fmt.Sprintf("append %d is queued", i), func() bool { return storage.Queued(db) == base+i+1 })
	}
	return res, func() {
		wg.Wait()
		mu.Lock() // the last writes happen before Done, under mu
		mu.Unlock()
	}
}

// TestLeaderGroup: appends queued behind a running commit are committed
// by one leader, all at once, numbered in queue order whatever their
// kind, and each caller is answered exactly once.
func TestLeaderGroup(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ch := MustCreateChannel(t, db, "c").ID
	held, release, sizes := holdFirstCommit(t)
	first := make(chan error, 1)
	go func() { first <- db.AppendEntry(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}) }()
	<-held
	kinds := "asbsaasbsa"
	res, wait := queueBehind(t, db, ch, kinds)
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wait()
	id := uint64(2)
	entries := 0
	for i, r := range res {
		if r.err != nil || r.calls != 1 || r.id != id {
			t.Errorf("append %d (%c): id %d, %d answers, error %v; want id %d, one answer", i, kinds[i], r.id, r.calls, r.err, id)
		}
		id++
		entries++
		if kinds[i] == 'b' {
			id++
		}
	}
	if got := sizes(); !slices.Equal(got, []int{1, entries}) {
		t.Errorf("commits of %v appends, want [1 %d]", got, entries)
	}
	if got := values(t, db, ch); len(got) != int(id-1) {
		t.Errorf("the feed holds %d entries, want %d", len(got), id-1)
	}
}

// TestLeaderThen: AppendEntryThen's and AppendEntriesThen's then is
// called before it returns, with the error it returns, in queue order
// with AppendEntryAsync's, in a group commit and in one that fails.
func TestLeaderThen(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	var failing atomic.Bool
	storage.FailLogSyncs(t, func(op string) bool { return op == "append" && failing.Load() })
	for _, fail := range []bool{false, true} {
		db := MustOpenDB(t)
		ch := MustCreateChannel(t, db, "c").ID
		held, release, _ := holdFirstCommit(t)
		first := make(chan error, 1)
		go func() { first <- db.AppendEntry(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}) }()
		<-held
		kinds := "tatsbaTtt"
		res, wait := queueBehind(t, db, ch, kinds)
		failing.Store(fail)
		release()
		<-first
		wait()
		last := 0
		for i, r := range res {
			if r.calls != 1 || (fail == (r.err == nil)) {
				t.Errorf("fail %v: append %d (%c): %d answers, error %v", fail, i, kinds[i], r.calls, r.err)
			}
			if kinds[i] != 'a' && kinds[i] != 't' && kinds[i] != 'T' {
				continue
			}
			if r.then <= last || r.thenErr != r.err {
				t.Errorf("fail %v: append %d (%c): then call %d after %d, with %v, returned %v", fail, i, kinds[i], r.then, last, r.thenErr, r.err)
			}
			last = r.then
		}
	}
}

// TestLeaderGroupError: a commit that fails answers every append in its
// group with the error and no ID, once; the IDs it took are given again
// by the next commit.
func TestLeaderGroupError(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ch := MustCreateChannel(t, db, "c").ID
	MustAppend(t, db, ch, "1")
	var failing atomic.Bool
	storage.FailLogSyncs(t, func(op string) bool { return op == "append" && failing.Load() })
	held, release, _ := holdFirstCommit(t)
	first := make(chan error, 1)
	go func() { first <- db.AppendEntry(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}) }()
	<-held
	kinds := "sasbs"
	res, wait := queueBehind(t, db, ch, kinds)
	failing.Store(true) // the first commit, held before its write, fails too
	release()
	if err := <-first; err == nil {
		t.Fatal("the held commit succeeded despite the failing fdatasync")
	}
	wait()
	for i, r := range res {
		if r.err == nil || r.calls != 1 || r.id != 0 {
			t.Errorf("append %d (%c): id %d, %d answers, error %v; want an error, no ID, one answer", i, kinds[i], r.id, r.calls, r.err)
		}
		if r.err != nil && !strings.Contains(r.err.Error(), "injected: input/output error") {
			t.Errorf("append %d: error %v does not carry the commit's failure", i, r.err)
		}
	}
	failing.Store(false)
	if e := MustAppend(t, db, ch, "2"); e.ID != 2 {
		t.Fatalf("after the failed commits the next entry is %d, want 2 (IDs given back)", e.ID)
	}
	wantValues(t, db, ch, "1", "2")
}

// TestLeaderControlWaits: a checkpoint (Sync) and an exclusive operation
// (a clear) asked for while a leader commits wait for that commit, then
// run before the appends queued behind it.
func TestLeaderControlWaits(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ch := MustCreateChannel(t, db, "c").ID
	MustAppend(t, db, ch, "1") // so that Sync has something to copy
	held, release, _ := holdFirstCommit(t)
	first := make(chan error, 1)
	e := &channels.Entry{ChannelID: ch}
	e.SetValue(0, "2")
	go func() { first <- db.AppendEntry(context.Background(), e) }()
	<-held
	synced := make(chan error, 1)
	go func() { synced <- storage.SyncErr(db) }()
	waitUntil(t, "the checkpoint waits for the leader", func() bool { return storage.WriterWaits(db) })
	select {
	case err := <-synced:
		t.Fatalf("the checkpoint ran during a commit: %v", err)
	default:
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if n := storage.Unapplied(db); n != 0 {
		t.Fatalf("%d entries not in the file after the checkpoint that waited for the commit", n)
	}

	// A clear asked for while a leader holds a commit: the entries of
	// that commit are cleared, those queued after the clear are not.
	held, release, _ = holdFirstCommit(t)
	go func() { first <- db.AppendEntry(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}) }()
	<-held
	cleared := make(chan error, 1)
	go func() { cleared <- db.ClearChannel(context.Background(), ch) }()
	waitUntil(t, "the clear waits for the leader", func() bool { return storage.WriterWaits(db) })
	res, wait := queueBehind(t, db, ch, "sa")
	select {
	case err := <-cleared:
		t.Fatalf("the clear ran during a commit: %v", err)
	default:
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-cleared; err != nil {
		t.Fatal(err)
	}
	wait()
	for i, r := range res {
		if r.err != nil || r.calls != 1 {
			t.Fatalf("append %d after the clear: %d answers, error %v", i, r.calls, r.err)
		}
	}
	wantValues(t, db, ch, "q0", "q1")
}

// TestLeaderClose: Close during a leader's commit waits for it, refuses
// new appends, commits everything queued, and the reopened file holds
// every acknowledged entry.
func TestLeaderClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feedmq.db")
	db := MustOpenPath(t, path)
	ch := MustCreateChannel(t, db, "c").ID
	held, release, _ := holdFirstCommit(t)
	first := make(chan error, 1)
	e := &channels.Entry{ChannelID: ch}
	e.SetValue(0, "0")
	go func() { first <- db.AppendEntry(context.Background(), e) }()
	<-held
	res, wait := queueBehind(t, db, ch, "sasab")
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	waitUntil(t, "Close waits for the leader", func() bool { return storage.WriterWaits(db) })
	if err := db.AppendEntry(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("append during Close: %v, want ErrClosed", err)
	}
	if err := db.AppendEntryAsync(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}, func(*channels.Entry, error) {
		t.Error("a refused asynchronous append was answered")
	}); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("asynchronous append during Close: %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned during a commit: %v", err)
	default:
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	wait()
	for i, r := range res {
		if r.err != nil || r.calls != 1 {
			t.Fatalf("append %d queued before Close: %d answers, error %v", i, r.calls, r.err)
		}
	}
	db = MustOpenPath(t, path)
	wantValues(t, db, ch, "0", "q0", "q1", "q2", "q3", "q4", "q4b")
}

// TestLeaderModel: many goroutines append (waiting, not waiting, in
// batches) to a few channels while others checkpoint, clear and import,
// at random. At no time do two goroutines use the writer's state (the
// race detector watches the state itself); every append is answered once;
// each caller's entries of a channel are numbered in the order it made
// them; and the feeds hold exactly the entries acknowledged since their
// last clear, numbered without gaps.
func TestLeaderModel(t *testing.T) {
	storage.SetCheckpointDelay(t, 2*time.Millisecond) // checkpoints hand-offs during commits
	var owners, overlaps atomic.Int32
	storage.SetOwnHook(t, func(enter bool) {
		if enter {
			if owners.Add(1) != 1 {
				overlaps.Add(1)
			}
			return
		}
		owners.Add(-1)
	})
	db := MustOpenDB(t)
	ctx := context.Background()
	const nch, appenders, perAppender = 3, 12, 60
	var chs [nch]uint64
	for i := range chs {
		chs[i] = MustCreateChannel(t, db, "c"+strconv.Itoa(i)).ID
	}
	// clears[c] guards channel c: appenders hold it shared while they
	// append and record, a clear exclusively, so the model knows which
	// acknowledged entries a clear removed.
	var clears [nch]sync.RWMutex
	var gens [nch]int // clears per channel, under clears
	var mu sync.Mutex
	acked := map[uint64]map[string]bool{}
	for _, c := range chs {
		acked[c] = map[string]bool{}
	}
	seed := seedFromEnv()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range appenders {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			last := map[uint64]uint64{}
			gen := map[uint64]int{}
			var async sync.WaitGroup
			for i := range perAppender {
				ci := rng.IntN(nch)
				c := chs[ci]
				v := fmt.Sprintf("g%d-%d", g, i)
				clears[ci].RLock()
				if gen[c] != gens[ci] { // numbering restarted
					gen[c], last[c] = gens[ci], 0
				}
				var ids []uint64
				var err error
				switch rng.IntN(3) {
				case 0:
					e := &channels.Entry{ChannelID: c}
					e.SetValue(0, v)
					err = db.AppendEntry(ctx, e)
					ids = []uint64{e.ID}
				case 1:
					es := []*channels.Entry{{ChannelID: c}, {ChannelID: c}}
					es[0].SetValue(0, v)
					es[1].SetValue(0, v+"b")
					err = db.AppendEntries(ctx, es)
					ids = []uint64{es[0].ID, es[1].ID}
					if err == nil {
						mu.Lock()
						acked[c][v+"b"] = true
						mu.Unlock()
					}
				case 2:
					e := &channels.Entry{ChannelID: c}
					e.SetValue(0, v)
					var calls atomic.Int32
					async.Add(1)
					done := make(chan struct{})
					err = db.AppendEntryAsync(ctx, e, func(e *channels.Entry, err error) {
						if calls.Add(1) != 1 {
							t.Errorf("%s answered twice", v)
						}
						if err != nil {
							t.Errorf("%s: %v", v, err)
						}
						close(done)
						async.Done()
					})
					if err == nil {
						<-done // the next append of this caller must come after it anyway
						ids = []uint64{e.ID}
					}
				}
				if err != nil {
					t.Errorf("%s: %v", v, err)
				} else {
					mu.Lock()
					acked[c][v] = true
					mu.Unlock()
					for _, id := range ids {
						if id <= last[c] {
							t.Errorf("%s: ID %d after this caller's %d in channel %d", v, id, last[c], c)
						}
						last[c] = id
					}
				}
				clears[ci].RUnlock()
			}
			async.Wait()
		})
	}
	var ops sync.WaitGroup
	ops.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-stop:
				return
			default:
			}
			switch rng.IntN(3) {
			case 0:
				if err := storage.SyncErr(db); err != nil {
					t.Error(err)
				}
			case 1:
				if err := storage.WaitCheckpoint(db); err != nil {
					t.Error(err)
				}
			case 2:
				ci := rng.IntN(nch)
				clears[ci].Lock()
				if err := db.ClearChannel(ctx, chs[ci]); err != nil {
					t.Error(err)
				}
				mu.Lock()
				clear(acked[chs[ci]])
				mu.Unlock()
				gens[ci]++
				clears[ci].Unlock()
			}
			time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond) // spreads the operations among the appends
		}
	})
	wg.Wait()
	close(stop)
	ops.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d times two goroutines used the writer's state at once", n)
	}
	for _, c := range chs {
		list, err := db.Entries(ctx, c, channels.EntryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for i, e := range list {
			v, _ := e.Value(0)
			got[v] = true
			if i > 0 && e.ID != list[i-1].ID+1 {
				t.Errorf("channel %d: entry %d follows %d", c, e.ID, list[i-1].ID)
			}
		}
		if len(got) != len(list) || len(got) != len(acked[c]) {
			t.Errorf("channel %d holds %d entries (%d distinct), %d acknowledged since its last clear", c, len(list), len(got), len(acked[c]))
		}
		for v := range acked[c] {
			if !got[v] {
				t.Errorf("channel %d lost acknowledged %s", c, v)
			}
		}
	}
}

// TestLeaderWhere: at light load an append that waits is committed on its
// caller's goroutine (no hop to the writer goroutine and back), and one
// that does not wait on the writer goroutine (its caller never pays for
// an fdatasync).
func TestLeaderWhere(t *testing.T) {
	db := MustOpenDB(t)
	ch := MustCreateChannel(t, db, "c").ID
	where := make(chan string, 1)
	storage.SetCommitHook(t, func(int) {
		buf := make([]byte, 64<<10)
		st := string(buf[:runtime.Stack(buf, false)])
		switch {
		case strings.Contains(st, "storage.(*writer).appendWait"):
			where <- "caller"
		case strings.Contains(st, "storage.(*writer).appendAsync"):
			where <- "async caller"
		case strings.Contains(st, "storage.(*writer).run"):
			where <- "writer"
		default:
			where <- st
		}
	})
	MustAppend(t, db, ch, "1")
	if w := <-where; w != "caller" {
		t.Errorf("AppendEntry committed on %s, want the caller's goroutine", w)
	}
	if err := db.AppendEntries(context.Background(), []*channels.Entry{{ChannelID: ch, Set: 1}}); err != nil {
		t.Fatal(err)
	}
	if w := <-where; w != "caller" {
		t.Errorf("AppendEntries committed on %s, want the caller's goroutine", w)
	}
	// An asynchronous append commits on its caller's goroutine when the
	// writer has been idle for a while, and is answered before
	// AppendEntryAsync returns; within that while, on the writer
	// goroutine.
	// A caller that says it has nothing else to do (channels.CallerIdle)
	// commits on its own goroutine however short the writer's idle time.
	done := make(chan error, 1)
	async := func(ctx context.Context, idle time.Duration, want string) {
		t.Helper()
		storage.SetAsyncLeadIdle(t, idle)
		waitWriterIdle(t, db) // the last answer came before its committer let go
		time.Sleep(2 * time.Millisecond)
		if err := db.AppendEntryAsync(ctx, &channels.Entry{ChannelID: ch, Set: 1}, func(_ *channels.Entry, err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		if want == "async caller" && len(done) != 1 {
			t.Error("AppendEntryAsync that led its commit returned before its answer")
		}
		if w := <-where; w != want {
			t.Errorf("AppendEntryAsync (idle caller %v) after %v idle committed on %s, want %s", channels.IsCallerIdle(ctx), idle, w, want)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	bg, idleCaller := context.Background(), channels.CallerIdle(context.Background())
	async(bg, time.Millisecond, "async caller")
	async(bg, time.Hour, "writer")
	async(idleCaller, time.Hour, "async caller")
}

// holdFirstWhere holds the first commit until gate is closed (held is
// closed once it is held) and reports on where where each commit ran, with
// how many appends it carried: "async caller (n)", "caller (n)" or
// "writer (n)".
func holdFirstWhere(t *testing.T) (held <-chan struct{}, gate chan struct{}, where chan string) {
	h, g := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	w := make(chan string, 16)
	storage.SetCommitHook(t, func(n int) {
		if first.CompareAndSwap(false, true) {
			close(h)
			<-g
		}
		buf := make([]byte, 64<<10)
		st := string(buf[:runtime.Stack(buf, false)])
		switch {
		case strings.Contains(st, "storage.(*writer).appendAsync"):
			w <- fmt.Sprintf("async caller (%d)", n)
		case strings.Contains(st, "storage.(*writer).appendWait"):
			w <- fmt.Sprintf("caller (%d)", n)
		default:
			w <- fmt.Sprintf("writer (%d)", n)
		}
	})
	return h, g, w
}

// TestLeaderAsyncNoGather: an asynchronous append that finds the writer
// idle commits on its caller's goroutine only when that commit waits for
// no one else. After a commit that answered many waiting callers, the
// next commit first waits a while for their next appends (gather); an
// asynchronous append leaves that commit, and that wait, to the writer
// goroutine, so that its caller (a reader of QoS 0 publishes) pays for
// its own fdatasync at most.
func TestLeaderAsyncNoGather(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	db := MustOpenDB(t)
	ch := MustCreateChannel(t, db, "c").ID
	held, gate, where := holdFirstWhere(t)
	lead := make(chan error, 1)
	go func() { lead <- db.AppendEntry(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}) }()
	<-held
	_, wait := queueBehind(t, db, ch, "ssssssss")
	close(gate)
	if err := <-lead; err != nil {
		t.Fatal(err)
	}
	wait()
	if w1, w2 := <-where, <-where; w1 != "caller (1)" || w2 != "caller (8)" {
		t.Fatalf("commits %s, %s; want the held one and the eight queued behind it, each on a caller", w1, w2)
	}
	time.Sleep(2 * time.Millisecond) // idle for longer than asyncLeadIdle
	done := make(chan error, 1)
	// From a caller with nothing else to do, too: the wait for the
	// others' appends is still not its to pay.
	idleCaller := channels.CallerIdle(context.Background())
	if err := db.AppendEntryAsync(idleCaller, &channels.Entry{ChannelID: ch, Set: 1}, func(_ *channels.Entry, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if w := <-where; w != "writer (1)" {
		t.Errorf("the asynchronous append after a commit of eight waiting callers committed on %s, want the writer goroutine", w)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLeaderAsyncBound: asynchronous appends queued behind a running
// commit are bounded: once the queue is full the next one waits for room
// until its context ends or the DB closes, and is then refused and never
// answered; the queued ones are all committed, each answered once.
func TestLeaderAsyncBound(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	path := filepath.Join(t.TempDir(), "feedmq.db")
	db := MustOpenPath(t, path)
	ch := MustCreateChannel(t, db, "c").ID
	held, release, _ := holdFirstCommit(t)
	first := make(chan error, 1)
	go func() { first <- db.AppendEntry(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}) }()
	<-held
	var answers atomic.Int64
	var failed atomic.Int64
	then := func(_ *channels.Entry, err error) {
		if err != nil {
			failed.Add(1)
		}
		answers.Add(1)
	}
	n := storage.AsyncQueueLen
	for i := range n {
		e := &channels.Entry{ChannelID: ch}
		e.SetValue(0, strconv.Itoa(i))
		if err := db.AppendEntryAsync(context.Background(), e, then); err != nil {
			t.Fatalf("async append %d of %d: %v", i, n, err)
		}
	}
	refused := func(*channels.Entry, error) { t.Error("a refused asynchronous append was answered") }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := db.AppendEntryAsync(ctx, &channels.Entry{ChannelID: ch, Set: 1}, refused); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("async append to a full queue: %v, want the context's deadline", err)
	}
	blocked := make(chan error, 1)
	go func() {
		blocked <- db.AppendEntryAsync(context.Background(), &channels.Entry{ChannelID: ch, Set: 1}, refused)
	}()
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	if err := <-blocked; !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("async append waiting for room during Close: %v, want ErrClosed", err)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if a, f := answers.Load(), failed.Load(); a != int64(n) || f != 0 {
		t.Fatalf("%d answers (%d failed) for %d queued appends", a, f, n)
	}
	db = MustOpenPath(t, path)
	if got := values(t, db, ch); len(got) != n+1 {
		t.Fatalf("%d entries after reopen, want %d", len(got), n+1)
	}
}

// TestLeaderIdleCallerLight: an asynchronous append marked
// channels.CallerIdle leads its commit on an idle writer only at light
// load, when the last commit carried one append at most. After a commit
// of several (others are appending), the writer goroutine commits it,
// taking whatever the others queued meanwhile.
func TestLeaderIdleCallerLight(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	storage.SetAsyncLeadIdle(t, time.Hour) // the time rule never leads here
	db := MustOpenDB(t)
	ch := MustCreateChannel(t, db, "c").ID
	held, gate, where := holdFirstWhere(t)
	idle := channels.CallerIdle(context.Background())
	answers := make(chan error, 16)
	then := func(_ *channels.Entry, err error) { answers <- err }
	appendAsync := func(ctx context.Context) {
		t.Helper()
		if err := db.AppendEntryAsync(ctx, &channels.Entry{ChannelID: ch, Set: 1}, then); err != nil {
			t.Fatal(err)
		}
	}
	answered := func(n int) {
		t.Helper()
		for range n {
			if err := <-answers; err != nil {
				t.Fatal(err)
			}
		}
	}
	// Light load: the first commit runs on the idle caller (held there
	// while three more appends queue behind it).
	go func() {
		if err := db.AppendEntryAsync(idle, &channels.Entry{ChannelID: ch, Set: 1}, then); err != nil {
			t.Error(err)
		}
	}()
	<-held
	for range 3 {
		appendAsync(context.Background())
	}
	close(gate)
	answered(4)
	if w1, w2 := <-where, <-where; w1 != "async caller (1)" || w2 != "writer (3)" {
		t.Fatalf("commits on %s, then %s; want the idle caller's alone, then the three queued behind it on the writer goroutine", w1, w2)
	}
	// The last commit carried three: the next idle caller's append is
	// left to the writer goroutine.
	waitWriterIdle(t, db)
	appendAsync(idle)
	answered(1)
	if w := <-where; w != "writer (1)" {
		t.Errorf("an idle caller's append after a commit of three committed on %s, want the writer goroutine", w)
	}
	// That commit carried one: light load again (once its committer
	// has given the state up: the answer comes before that).
	waitWriterIdle(t, db)
	appendAsync(idle)
	if len(answers) != 1 {
		t.Error("an idle caller's append that led its commit returned before its answer")
	}
	answered(1)
	if w := <-where; w != "async caller (1)" {
		t.Errorf("an idle caller's append after a commit of one committed on %s, want its caller", w)
	}
}

// waitWriterIdle waits until nobody owns db's writer state.
func waitWriterIdle(t *testing.T, db *storage.DB) {
	t.Helper()
	for storage.Busy(db) {
		time.Sleep(100 * time.Microsecond)
	}
}
