package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// openConn opens a plain connection, closed when t ends.
func openConn(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// addChannel inserts a channel row with the settings the feeds use (the
// channel API is not this file's business).
func addChannel(t testing.TB, db *DB, rate time.Duration, maxEntries uint64, maxAge time.Duration) uint64 {
	t.Helper()
	var id int64
	err := db.pool.QueryRow(context.Background(),
		"INSERT INTO channels (rate_limit_us, max_entries, max_age_us) VALUES ($1, $2, $3) RETURNING id",
		rate.Microseconds(), int64(maxEntries), maxAge.Microseconds()).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(id)
}

func entry(ch uint64, field1 string) *channels.Entry {
	e := &channels.Entry{ChannelID: ch}
	e.SetValue(0, field1)
	return e
}

func ids(es []channels.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// Close under load: every append is stored or fails with ErrClosed, none
// hangs, and the channel's last ID counts exactly the stored ones. A
// canceled context queues nothing.
func TestCloseUnderLoad(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db := openTest(t, url, Options{})
	ch := addChannel(t, db, 0, 0, 0)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.AppendEntry(canceled, entry(ch, "x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a canceled context: %v", err)
	}
	var stored atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Go(func() {
			for {
				err := db.AppendEntry(ctx, entry(ch, "x"))
				if errors.Is(err, ErrClosed) {
					return
				} else if err != nil {
					t.Error(err)
					return
				}
				stored.Add(1)
			}
		})
	}
	for deadline := time.Now().Add(30 * time.Second); stored.Load() < 100; {
		if time.Now().After(deadline) {
			t.Fatal("no appends stored")
		}
		time.Sleep(time.Millisecond)
	}
	db.Close()
	wg.Wait()
	db.Close() // again: a no-op
	other := openTest(t, url, Options{})
	var last int64
	if err := other.pool.QueryRow(ctx, "SELECT last_entry_id FROM channels WHERE id = $1", int64(ch)).Scan(&last); err != nil {
		t.Fatal(err)
	}
	if n, _ := other.EntryCount(ctx, ch); last != stored.Load() || n != uint64(last) {
		t.Fatalf("last_entry_id %d, %d entries; %d appends succeeded", last, n, stored.Load())
	}
}

// Two DBs on one database stand for two feedmq processes: appending to
// the same channels concurrently from both, the IDs of each channel are
// exactly 1..n, each returned entry is readable at once from the other
// process, and each ID holds the entry it was returned for.
func TestAppendGaplessAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	dbs := []*DB{openTest(t, url, Options{}), openTest(t, url, Options{})}
	chs := []uint64{addChannel(t, dbs[0], 0, 0, 0), addChannel(t, dbs[0], 0, 0, 0)}
	const workers, per = 8, 60
	type got struct {
		ch, id uint64
		val    string
	}
	var (
		mu   sync.Mutex
		seen []got
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, other := dbs[w%2], dbs[(w+1)%2]
			for i := 0; i < per; i++ {
				ch := chs[(w+i)%2]
				val := fmt.Sprintf("w%d-%d", w, i)
				e := entry(ch, val)
				var err error
				if i%10 == 9 {
					// Batches interleave with single appends.
					es := []*channels.Entry{e, entry(ch, val+"b")}
					err = db.AppendEntries(ctx, es)
					if err == nil && es[1].ID != e.ID+1 {
						err = fmt.Errorf("batch numbered %d, %d", e.ID, es[1].ID)
					}
					if err == nil {
						mu.Lock()
						seen = append(seen, got{ch, es[1].ID, val + "b"})
						mu.Unlock()
					}
				} else {
					err = db.AppendEntry(ctx, e)
				}
				if err != nil {
					t.Error(err)
					return
				}
				// Read-your-write from the other process.
				r, err := other.FindEntry(ctx, ch, e.ID)
				if err != nil {
					t.Errorf("entry %d of channel %d not visible to the other process: %v", e.ID, ch, err)
					return
				}
				if v, _ := r.Field(1); v != val {
					t.Errorf("entry %d of channel %d holds %q, want %q", e.ID, ch, v, val)
				}
				mu.Lock()
				seen = append(seen, got{ch, e.ID, val})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, ch := range chs {
		var want []uint64
		vals := map[uint64]string{}
		for _, g := range seen {
			if g.ch == ch {
				want = append(want, g.id)
				if _, dup := vals[g.id]; dup {
					t.Fatalf("channel %d: id %d returned twice", ch, g.id)
				}
				vals[g.id] = g.val
			}
		}
		slices.Sort(want)
		if !slices.Equal(want, seq(1, uint64(len(want)))) {
			t.Fatalf("channel %d: returned ids are not 1..%d: %v", ch, len(want), want)
		}
		all, err := dbs[1].Entries(ctx, ch, channels.EntryFilter{})
		if err != nil || !slices.Equal(ids(all), want) {
			t.Fatalf("channel %d holds %v (%v), want %v", ch, ids(all), err, want)
		}
		for _, e := range all {
			if v, _ := e.Field(1); v != vals[e.ID] {
				t.Fatalf("channel %d entry %d holds %q, returned for %q", ch, e.ID, v, vals[e.ID])
			}
		}
	}
}

// The rate limit is checked by the database clock across processes: a
// second write inside the interval is refused from either process
// (ErrRateLimited, nothing stored), Options.RateLimit covers channels
// without their own, and a batch counts as one write.
func TestAppendRateLimit(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db1 := openTest(t, url, Options{})
	db2 := openTest(t, url, Options{RateLimit: time.Hour})
	limited := addChannel(t, db1, time.Hour, 0, 0)
	free := addChannel(t, db1, 0, 0, 0)

	if err := db1.AppendEntry(ctx, entry(limited, "1")); err != nil {
		t.Fatal(err)
	}
	for _, db := range []*DB{db1, db2} {
		e := entry(limited, "2")
		err := db.AppendEntry(ctx, e)
		if !errors.Is(err, channels.ErrRateLimited) || channels.ErrorCode(err) != channels.ERATELIMIT || e.ID != 0 {
			t.Fatalf("second write inside the interval: id %d, %v", e.ID, err)
		}
	}
	// Concurrent appends to a limited channel: exactly one is taken.
	other := addChannel(t, db1, time.Hour, 0, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := []*DB{db1, db2}[i%2]
			err := db.AppendEntry(ctx, entry(other, "x"))
			if err != nil && !errors.Is(err, channels.ErrRateLimited) {
				t.Error(err)
			}
			mu.Lock()
			if err == nil {
				taken++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if taken != 1 {
		t.Errorf("%d of 10 concurrent writes to a limited channel taken, want 1", taken)
	}

	// db1 has no default limit, db2 an hour.
	for i := 0; i < 3; i++ {
		if err := db1.AppendEntry(ctx, entry(free, "f")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db2.AppendEntry(ctx, entry(free, "f")); !errors.Is(err, channels.ErrRateLimited) {
		t.Fatalf("the default rate limit was not applied: %v", err)
	}
	batch := addChannel(t, db1, time.Hour, 0, 0)
	es := []*channels.Entry{entry(batch, "a"), entry(batch, "b"), entry(batch, "c")}
	if err := db1.AppendEntries(ctx, es); err != nil || es[2].ID != 3 {
		t.Fatalf("a batch to a limited channel: %v", err)
	}
	for _, c := range []uint64{limited, other, batch} {
		n, _ := db1.EntryCount(ctx, c)
		want := map[uint64]uint64{limited: 1, other: 1, batch: 3}[c]
		if n != want {
			t.Errorf("channel %d holds %d entries, want %d", c, n, want)
		}
	}
	// The refusal says when to retry, within the interval.
	err := db1.AppendEntry(ctx, entry(limited, "3"))
	var ae *channels.Error
	if !errors.As(err, &ae) || ae.Message == "" {
		t.Fatalf("refusal: %v", err)
	}
}

// Async appends call back in queue order with their outcome.
func TestAppendEntryAsync(t *testing.T) {
	ctx := context.Background()
	var committed atomic.Int64
	db := openTest(t, pgtest.New(t), Options{OnCommit: func(n int, d time.Duration) {
		if d <= 0 {
			t.Errorf("commit of %d entries took %v", n, d)
		}
		committed.Add(int64(n))
	}})
	ch := addChannel(t, db, 0, 0, 0)
	done := make(chan uint64, 100)
	for i := 0; i < 100; i++ {
		err := db.AppendEntryAsync(ctx, entry(ch, fmt.Sprint(i)), func(e *channels.Entry, err error) {
			if err != nil {
				t.Error(err)
			}
			done <- e.ID
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(1); i <= 100; i++ {
		if id := <-done; id != i {
			t.Fatalf("callback %d got id %d", i, id)
		}
	}
	miss := make(chan error, 1)
	if err := db.AppendEntryAsync(ctx, entry(999, "x"), func(_ *channels.Entry, err error) { miss <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-miss; !errors.Is(err, channels.ErrChannelNotFound) {
		t.Errorf("async append to a missing channel: %v", err)
	}
	// OnCommit counts stored entries only, and has run before the
	// callbacks of its commit.
	if n := committed.Load(); n != 100 {
		t.Errorf("OnCommit counted %d entries, want 100", n)
	}
	db.Close()
	if err := db.AppendEntry(ctx, entry(ch, "late")); !errors.Is(err, ErrClosed) {
		t.Errorf("append after Close: %v", err)
	}
}

// proxy forwards TCP connections to target until cut closes them: a
// network failure between feedmq and the database.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A connection lost while the append transaction runs leaves its outcome
// unknown: the caller gets ErrCommitUnknown, not a plain failure, and the
// next append works on a new connection. The connection is lost to the
// network, or ended by the server (as an administrator or a failover
// does).
func TestAppendCommitUnknown(t *testing.T) {
	for _, how := range []string{"network", "terminate"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			url := pgtest.New(t)
			u, err := neturl.Parse(url)
			if err != nil {
				t.Fatal(err)
			}
			p := newProxy(t, u.Host)
			u.Host = p.l.Addr().String()
			db := openTest(t, u.String(), Options{})
			ch := addChannel(t, db, 0, 0, 0)
			// A trigger holds the append mid-transaction long enough to
			// cut its connection.
			_, err = db.pool.Exec(ctx, `
				CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
					$$ BEGIN IF NEW.field1 = 'slow' THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$;
				CREATE TRIGGER slow BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION slow()`)
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			e := entry(ch, "slow")
			go func() { errc <- db.AppendEntry(ctx, e) }()
			admin := openConn(t, url)
			deadline := time.Now().Add(20 * time.Second)
			for {
				var pid int32
				err := admin.QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event = 'PgSleep'`).Scan(&pid)
				if err != nil {
					t.Fatal(err)
				}
				if pid != 0 {
					if how == "network" {
						p.cut()
					}
					// The server side too, so that the sleep ends.
					admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the append never reached the trigger")
				}
				time.Sleep(10 * time.Millisecond)
			}
			err = <-errc
			if !errors.Is(err, channels.ErrCommitUnknown) || e.ID != 0 {
				t.Fatalf("append whose connection was cut: id %d, %v", e.ID, err)
			}
			next := entry(ch, "fine")
			if err := db.AppendEntry(ctx, next); err != nil || next.ID != 1 {
				t.Fatalf("append after a lost connection: id %d, %v", next.ID, err)
			}
			// A plain server error is no such doubt: nothing was stored.
			if _, err := db.pool.Exec(ctx, "ALTER TABLE entries ADD CHECK (field1 <> 'refused')"); err != nil {
				t.Fatal(err)
			}
			err = db.AppendEntry(ctx, entry(ch, "refused"))
			if err == nil || errors.Is(err, channels.ErrCommitUnknown) {
				t.Fatalf("append refused by the server: %v", err)
			}
		})
	}
}

// A clear from one process while another appends: every append lands
// wholly before or after it, so the feed left is numbered 1..n without a
// gap or a duplicate, and holds exactly the appends that returned after
// the clear began and were numbered in the new feed.
func TestClearWhileAppending(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	writer, clearer := openTest(t, url, Options{}), openTest(t, url, Options{})
	ch := addChannel(t, writer, 0, 0, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appended atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := writer.AppendEntry(ctx, entry(ch, "x")); err != nil {
					t.Error(err)
					return
				}
				appended.Add(1)
			}
		})
	}
	// more waits for 50 further appends, or fails.
	more := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for at := appended.Load(); appended.Load() < at+50; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) || t.Failed() {
				close(stop)
				wg.Wait()
				t.Fatal("appends stopped")
			}
		}
	}
	for round := 0; round < 5; round++ {
		more()
		if err := clearer.ClearChannel(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	more()
	close(stop)
	wg.Wait()
	all, err := clearer.Entries(ctx, ch, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 || !slices.Equal(ids(all), seq(1, uint64(len(all)))) {
		t.Fatalf("feed after clears is not 1..n: %v", ids(all))
	}
	var last int64
	if err := clearer.pool.QueryRow(ctx, "SELECT last_entry_id FROM channels WHERE id = $1", int64(ch)).Scan(&last); err != nil || last != int64(len(all)) {
		t.Fatalf("last_entry_id %d (%v), feed of %d", last, err, len(all))
	}
}

// Clearing a long feed takes a while; meanwhile appends to other
// channels, queued behind an append to the channel being cleared, must
// go on: one writer commits every channel's appends, so a clear may not
// hold the channel's row for the whole deletion.
func TestClearLongFeedDoesNotStallAppends(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	db, clearer := openTest(t, url, Options{}), openTest(t, url, Options{})
	big, other := addChannel(t, db, 0, 0, 0), addChannel(t, db, 0, 0, 0)
	old := clearBatch
	clearBatch = 2 // several statements
	t.Cleanup(func() { clearBatch = old })
	for _, v := range []string{"a", "slow", "b"} {
		if err := db.AppendEntry(ctx, entry(big, v)); err != nil {
			t.Fatal(err)
		}
	}
	// Deleting the entry "slow" stands for deleting a long feed.
	_, err := db.pool.Exec(ctx, `
		CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN IF OLD.field1 = 'slow' THEN PERFORM pg_sleep(60); END IF; RETURN OLD; END $$;
		CREATE TRIGGER slow_delete BEFORE DELETE ON entries FOR EACH ROW EXECUTE FUNCTION slow_delete()`)
	if err != nil {
		t.Fatal(err)
	}
	cleared := make(chan error, 1)
	go func() { cleared <- clearer.ClearChannel(ctx, big) }()
	admin := openConn(t, url)
	waitFor := func(what, query string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var n int
			if err := admin.QueryRow(ctx, query).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("never saw %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the clear deleting", `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event = 'PgSleep'`)
	appended := make(chan error, 2)
	go func() { appended <- db.AppendEntry(ctx, entry(big, "during")) }()
	go func() { appended <- db.AppendEntry(ctx, entry(other, "x")) }()
	stalled, timeout := 0, time.After(20*time.Second)
	for range 2 {
		select {
		case err := <-appended:
			if err != nil {
				t.Error(err)
			}
		case <-timeout:
			stalled++
		}
	}
	// End the sleep either way.
	admin.Exec(ctx, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event = 'PgSleep'`)
	cerr := <-cleared
	if stalled > 0 {
		for range stalled {
			<-appended
		}
		t.Fatal("appends stalled while a clear was deleting a feed")
	}
	// The cancelled deletion failed the clear; once more, it clears all.
	if cerr == nil {
		t.Fatal("a clear whose deletion was cancelled succeeded")
	}
	if _, err := db.pool.Exec(ctx, "DROP TRIGGER slow_delete ON entries"); err != nil {
		t.Fatal(err)
	}
	if err := clearer.ClearChannel(ctx, big); err != nil {
		t.Fatal(err)
	}
	if n, err := db.EntryCount(ctx, big); err != nil || n != 0 {
		t.Fatalf("after the clear: %d entries, %v", n, err)
	}
	e := entry(big, "new")
	if err := db.AppendEntry(ctx, e); err != nil || e.ID != 1 {
		t.Fatalf("first append after the clear: id %d, %v", e.ID, err)
	}
}
