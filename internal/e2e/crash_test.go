package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

type deviceJSON struct {
	ClientID string `json:"client_id"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// acked collects the values whose PUBACK arrived.
type acked struct {
	mu     sync.Mutex
	values map[string]bool
}

func (a *acked) add(v string) {
	a.mu.Lock()
	a.values[v] = true
	a.mu.Unlock()
}

// publishUntilError publishes unique QoS 1 values until the connection
// fails, recording each acknowledged one.
func publishUntilError(addr, topic string, dev deviceJSON, prefix string, got *acked) {
	c, err := mqtttest.Dial(addr)
	if err != nil {
		return
	}
	defer c.Close()
	if code, err := c.Connect(mqtttest.Connect{ClientID: dev.ClientID, Username: dev.Username,
		Password: dev.Password, Clean: true, Keepalive: 30}); err != nil || code != 0 {
		return
	}
	for i := 1; ; i++ {
		v := prefix + "-" + strconv.Itoa(i)
		if err := c.Publish(topic, 1, uint16(i%65535+1), []byte("field1="+v)); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, code, err := c.ReadPuback(); err != nil || code != 0 {
			return
		}
		got.add(v)
	}
}

type entryJSON struct {
	EntryID uint64  `json:"entry_id"`
	Field1  *string `json:"field1"`
}

// TestCrashSafety runs QoS 1 publishers against a real `feedmq serve`,
// kills it with SIGKILL at random moments, restarts it, and checks that
// every acknowledged entry is stored exactly once with no duplicate or
// missing entry IDs, and that the database file is consistent. The last
// round stops the server with SIGTERM and expects a clean exit.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills real server processes")
	}
	const rounds, publishers = 10, 4
	data := t.TempDir()
	var ch struct{ ID uint64 }
	cli(t, data, &ch, "channel", "create", "--name", "crash", "--json")
	devs := make([]deviceJSON, publishers)
	for i := range devs {
		cli(t, data, &devs[i], "device", "create", "--name", fmt.Sprintf("pub%d", i),
			"--channel", strconv.FormatUint(ch.ID, 10), "--json")
	}
	topic := fmt.Sprintf("channels/%d/publish", ch.ID)
	got := &acked{values: map[string]bool{}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := 1; round <= rounds; round++ {
		srv := startServe(t, data)
		var wg sync.WaitGroup
		for i, dev := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				publishUntilError(srv.addr, topic, dev, fmt.Sprintf("r%d-p%d", round, i), got)
			}()
		}
		time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond)
		sig := syscall.SIGKILL
		if round == rounds {
			sig = syscall.SIGTERM
		}
		_ = srv.cmd.Process.Signal(sig)
		err := srv.wait()
		wg.Wait()
		if sig == syscall.SIGTERM && err != nil {
			t.Fatalf("SIGTERM: serve exited with %v\n%s", err, srv.logs.String())
		}
	}

	checkConsistent(t, filepath.Join(data, "feedmq.db"))
	var entries []entryJSON
	cli(t, data, &entries, "feed", "get", strconv.FormatUint(ch.ID, 10), "--results", "0", "--format", "json")
	stored := map[string]int{}
	ids := make([]uint64, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.EntryID)
		if e.Field1 != nil {
			stored[*e.Field1]++
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("entry IDs are not 1..%d without gaps or duplicates: position %d holds %d", len(ids), i, id)
		}
	}
	for v, n := range stored {
		if n != 1 {
			t.Errorf("value %s stored %d times", v, n)
		}
	}
	for v := range got.values {
		if stored[v] != 1 {
			t.Errorf("acknowledged value %s is not stored", v)
		}
	}
	if len(got.values) < rounds {
		t.Fatalf("only %d acknowledged publishes in %d rounds: the test did not exercise the server", len(got.values), rounds)
	}
	t.Logf("%d rounds, %d entries stored, %d acknowledged, all present exactly once", rounds, len(entries), len(got.values))
}

// checkConsistent runs bbolt's consistency check on the file.
func checkConsistent(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
}
