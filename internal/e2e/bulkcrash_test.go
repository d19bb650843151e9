package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bulkUntilError posts bulk_update.json requests of size entries, each
// value "prefix-request-i", until a request fails, and records the
// requests answered 202.
func bulkUntilError(addr string, ch uint64, key, prefix string, size int, got *acked, refused *string) {
	client := &http.Client{Timeout: 10 * time.Second}
	for r := 1; ; r++ {
		ups := make([]map[string]any, size)
		for i := range ups {
			ups[i] = map[string]any{"delta_t": min(i, 1), "field1": fmt.Sprintf("%s-%d-%d", prefix, r, i)}
		}
		body, _ := json.Marshal(map[string]any{"write_api_key": key, "updates": ups})
		resp, err := client.Post(fmt.Sprintf("http://%s/channels/%d/bulk_update.json", addr, ch), "application/json", bytes.NewReader(body))
		if err != nil {
			return
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			if *refused == "" {
				*refused = fmt.Sprintf("%d %s", resp.StatusCode, msg)
			}
			return
		}
		got.add(fmt.Sprintf("%s-%d", prefix, r))
	}
}

// TestBulkCrashSafety kills a real `feedmq serve` with SIGKILL while bulk
// writes and MQTT publishes go to one channel, restarts it, and checks
// that every batch is stored whole or not at all, with consecutive IDs in
// its order, that every acknowledged batch and publish is stored, that
// IDs have no gaps or duplicates, and that `feedmq check` finds nothing.
func TestBulkCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills real server processes")
	}
	const rounds, writers, size = 6, 3, 40
	data := t.TempDir()
	var ch struct {
		ID       uint64 `json:"id"`
		WriteKey string `json:"write_api_key"`
	}
	cli(t, data, &ch, "channel", "create", "--name", "bulkcrash", "--json")
	var dev deviceJSON
	cli(t, data, &dev, "device", "create", "--name", "pub", "--channel", strconv.FormatUint(ch.ID, 10), "--json")
	topic := fmt.Sprintf("channels/%d/publish", ch.ID)
	batches := &acked{values: map[string]bool{}}
	singles := &acked{values: map[string]bool{}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	for round := 1; round <= rounds; round++ {
		srv := startServeWith(t, raceBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "warn")
		var wg sync.WaitGroup
		refusals := make([]string, writers)
		for i := 0; i < writers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bulkUntilError(srv.addrs["http"], ch.ID, ch.WriteKey, fmt.Sprintf("r%d-w%d", round, i), size, batches, &refusals[i])
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishUntilError(srv.addr, topic, dev, fmt.Sprintf("r%d-s", round), singles)
		}()
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
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
		for i, r := range refusals {
			if r != "" {
				t.Errorf("round %d: writer %d's bulk write was refused: %s", round, i, r)
			}
		}
	}

	checkConsistent(t, filepath.Join(data, "feedmq.db"))
	out, err := exec.Command(feedmqBinary(t), "--data", data, "check").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok") {
		t.Fatalf("feedmq check: %v\n%s", err, out)
	}
	var entries []entryJSON
	cli(t, data, &entries, "feed", "get", strconv.FormatUint(ch.ID, 10), "--results", "0", "--format", "json")
	sort.Slice(entries, func(i, j int) bool { return entries[i].EntryID < entries[j].EntryID })
	type batchSeen struct {
		n       int
		firstID uint64
		ok      bool // entries in order with consecutive IDs
	}
	seen := map[string]*batchSeen{}
	stored := map[string]int{}
	for i, e := range entries {
		if e.EntryID != uint64(i+1) {
			t.Fatalf("entry IDs are not 1..%d without gaps or duplicates: position %d holds %d", len(entries), i, e.EntryID)
		}
		if e.Field1 == nil {
			t.Fatalf("entry %d has no field1", e.EntryID)
		}
		v := *e.Field1
		stored[v]++
		if strings.Contains(v, "-w") {
			cut := strings.LastIndex(v, "-")
			idx, _ := strconv.Atoi(v[cut+1:])
			b := seen[v[:cut]]
			if b == nil {
				b = &batchSeen{firstID: e.EntryID, ok: true}
				seen[v[:cut]] = b
			}
			if e.EntryID != b.firstID+uint64(idx) {
				b.ok = false
			}
			b.n++
		}
	}
	for v, n := range stored {
		if n != 1 {
			t.Errorf("value %s stored %d times", v, n)
		}
	}
	for name, b := range seen {
		if b.n != size || !b.ok {
			t.Errorf("batch %s: %d of %d entries stored (consecutive in order: %v)", name, b.n, size, b.ok)
		}
	}
	for name := range batches.values {
		if seen[name] == nil {
			t.Errorf("acknowledged batch %s is not stored", name)
		}
	}
	for v := range singles.values {
		if stored[v] != 1 {
			t.Errorf("acknowledged publish %s is not stored", v)
		}
	}
	if len(batches.values) < rounds {
		t.Fatalf("only %d acknowledged batches in %d rounds: the test did not exercise the server", len(batches.values), rounds)
	}
	t.Logf("%d rounds, %d entries, %d batches stored (%d acknowledged), %d publishes acknowledged", rounds, len(entries), len(seen), len(batches.values), len(singles.values))
}
