package storage_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// A failed log write may cost more than its own bytes: on ext4 over a
// device that fails writes (a loop device on a full tmpfs), a failed
// O_DIRECT write left earlier blocks of the log, written and synced by
// acknowledged appends, reading as zeros, and after the failed write's
// own first block too. The page cache had hidden this from a restarted
// process as long as appends went through it; written past it, every
// entry acknowledged after the damage was lost at the next restart. Once
// the log takes writes again, what it held must be whole on the disk, so
// that a crash then loses nothing acknowledged.
func TestWAL_FailedWriteDamageIsRepaired(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	for _, damage := range []struct {
		name     string
		from, to func(end int64) int64 // the bytes zeroed, given where the valid records end
	}{
		{"EarlierBlock", func(int64) int64 { return 4096 }, func(int64) int64 { return 8192 }},
		{"BeforeTheEnd", func(end int64) int64 { return end - 300 }, func(end int64) int64 { return end }},
	} {
		t.Run(damage.name, func(t *testing.T) {
			var failing atomic.Bool
			db := MustOpenDB(t)
			wal := storage.WALPath(db.Path())
			storage.FailLogSyncs(t, func(op string) bool {
				if op != "append" || !failing.Load() {
					return false
				}
				end, err := storage.WALEnd(wal)
				if err != nil {
					t.Error(err)
					return true
				}
				f, err := os.OpenFile(wal, os.O_WRONLY, 0)
				if err != nil {
					t.Error(err)
					return true
				}
				defer f.Close()
				from, to := damage.from(end), damage.to(end)
				if _, err := f.WriteAt(make([]byte, to-from), from); err != nil {
					t.Error(err)
				}
				if err := f.Sync(); err != nil {
					t.Error(err)
				}
				return true
			})
			c := MustCreateChannel(t, db, "c")
			pad := strings.Repeat("p", 200)
			var want []string
			for i := range 100 {
				v := "a" + strconv.Itoa(i)
				e := &channels.Entry{ChannelID: c.ID}
				e.SetValue(0, v)
				e.SetValue(1, pad)
				if err := db.AppendEntry(context.Background(), e); err != nil {
					t.Fatal(err)
				}
				want = append(want, v)
			}
			// The damaging write is found only once the log is read.
			failing.Store(true)
			e := &channels.Entry{ChannelID: c.ID}
			e.SetValue(0, "refused")
			if err := db.AppendEntry(context.Background(), e); err == nil {
				t.Fatal("the failing append succeeded")
			}
			failing.Store(false)
			for i := range 3 {
				v := "b" + strconv.Itoa(i)
				want = append(want, v)
				MustAppend(t, db, c.ID, v)
			}
			wantValues(t, MustOpenPath(t, crashCopy(t, db)), c.ID, want...)
		})
	}
}
