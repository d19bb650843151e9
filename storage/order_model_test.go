package storage_test

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// EntryKeys against the slow way over a random history of two channels:
// single and batch appends in and out of time order (some far in the
// past or future, many sharing a second), checkpoints, imports with and
// without kept IDs (gaps), clears, retention by count and by age, and
// reopens, with reads of random start, end, field and limit after each
// step. The two channels share the order cache, so a step on one must
// not mislead reads of the other.
func TestEntryKeysModel(t *testing.T) {
	storage.SetCheckpointDelay(t, time.Hour)
	storage.SetPruneBatch(t, 7)
	db := MustOpenDB(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seedFromEnv(), 14))
	base := now.Add(-72 * time.Hour)
	chs := []*channels.Channel{MustCreateChannel(t, db, "a"), MustCreateChannel(t, db, "b")}
	clock := map[uint64]time.Time{}
	for _, c := range chs {
		clock[c.ID] = base
	}
	randTime := func() time.Time {
		switch rng.IntN(10) {
		case 0:
			return time.Unix(int64(rng.IntN(1000)), 0) // a device's clock at 1970
		case 1:
			return now.Add(time.Duration(rng.IntN(1000)) * time.Hour) // the future
		}
		return base.Add(time.Duration(rng.IntN(72*3600)) * time.Second)
	}
	newEntry := func(ch uint64, backDated bool) *channels.Entry {
		at := clock[ch].Add(time.Duration(rng.IntN(90)) * time.Second) // 0: same second
		clock[ch] = at
		if backDated {
			at = randTime()
		}
		e := &channels.Entry{ChannelID: ch, CreatedAt: at}
		e.SetValue(0, "v")
		if rng.IntN(2) == 0 {
			e.SetValue(1, "w")
		}
		return e
	}
	check := func(step int, what string) {
		t.Helper()
		for _, c := range chs {
			for range 12 {
				f := channels.EntryFilter{Limit: 1 + rng.IntN(80)}
				if rng.IntN(6) == 0 {
					f.Limit = storage.MaxKeyLimit
				}
				if rng.IntN(2) == 0 {
					f.Start = randTime().Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
				}
				if rng.IntN(3) == 0 {
					f.End = randTime().Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
				}
				if rng.IntN(4) == 0 {
					f.Field = 2
				}
				got, err := db.EntryKeys(ctx, c.ID, f)
				if err != nil {
					t.Fatalf("step %d (%s): channel %d: %v", step, what, c.ID, err)
				}
				if want := wantKeys(t, db, c.ID, f); !slices.Equal(got.Keys, want) {
					t.Fatalf("step %d (%s): channel %d: EntryKeys(%+v) =\n%v\nwant\n%v", step, what, c.ID, f, got.Keys, want)
				}
				es, err := db.EntriesByKey(ctx, c.ID, got.Version, got.Keys, nil)
				if err != nil || len(es) != len(got.Keys) {
					t.Fatalf("step %d (%s): EntriesByKey: %d of %d entries, %v", step, what, len(es), len(got.Keys), err)
				}
			}
		}
	}
	for step := range 400 {
		c := chs[rng.IntN(len(chs))]
		var what string
		switch op := rng.IntN(20); {
		case op < 8:
			what = "append"
			if err := db.AppendEntry(ctx, newEntry(c.ID, rng.IntN(5) == 0)); err != nil {
				t.Fatal(err)
			}
		case op < 11:
			what = "batch"
			es := make([]*channels.Entry, 1+rng.IntN(30))
			for i := range es {
				es[i] = newEntry(c.ID, rng.IntN(8) == 0)
			}
			if err := db.AppendEntries(ctx, es); err != nil {
				t.Fatal(err)
			}
		case op < 13:
			what = "checkpoint"
			storage.Sync(t, db)
		case op < 15:
			what = "import"
			last, err := db.FindChannel(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			keep := last.LastEntryID == 0
			all, err := db.Entries(ctx, c.ID, channels.EntryFilter{Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			at := clock[c.ID]
			if len(all) > 0 && all[0].CreatedAt.After(at) {
				at = all[0].CreatedAt
			}
			es := make([]channels.Entry, 1+rng.IntN(20))
			id := uint64(rng.IntN(50))
			for i := range es {
				at = at.Add(time.Duration(rng.IntN(60)) * time.Second)
				id += 1 + uint64(rng.IntN(5))
				es[i] = channels.Entry{ChannelID: c.ID, CreatedAt: at}
				if keep {
					es[i].ID = id
				}
				es[i].SetValue(0, strconv.Itoa(i))
			}
			clock[c.ID] = at
			if err := db.ImportEntries(ctx, c.ID, es, keep); err != nil {
				what += ": refused: " + err.Error() // the newest entry is back-dated: fine
			}
		case op < 16:
			what = "clear"
			if err := db.ClearChannel(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
			clock[c.ID] = base
		case op < 18:
			what = "prune"
			cur, err := db.FindChannel(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			cur.MaxEntries, cur.MaxAge = 0, 0
			if rng.IntN(2) == 0 {
				cur.MaxEntries = uint64(5 + rng.IntN(100))
			} else {
				cur.MaxAge = now.Sub(base.Add(time.Duration(rng.IntN(72)) * time.Hour))
			}
			if err := db.UpdateChannel(ctx, cur); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Prune(ctx, now); err != nil {
				t.Fatal(err)
			}
			cur.MaxEntries, cur.MaxAge = 0, 0
			if err := db.UpdateChannel(ctx, cur); err != nil {
				t.Fatal(err)
			}
		case op < 19:
			what = "reopen"
			db = MustReopen(t, db)
		default:
			what = "nothing"
		}
		check(step, what)
	}
}

func seedFromEnv() uint64 {
	s, _ := strconv.ParseUint(os.Getenv("SEED"), 10, 64)
	return s + 13
}
