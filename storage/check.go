package storage

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

// maxProblems bounds a CheckReport, so that a badly damaged file gives a
// readable report rather than millions of lines.
const maxProblems = 100

// CheckReport is the outcome of Check: what the database holds and what is
// wrong with it. An empty Problems means the database is sound.
type CheckReport struct {
	Stats
	Problems []string `json:"problems"`
	// More counts problems found beyond those listed.
	More int `json:"more,omitempty"`
}

func (r *CheckReport) add(format string, args ...any) { r.Add(format, args...) }

// Add records a problem; past the report's bound it only counts it. Other
// stores (PostgreSQL) fill their reports with it.
func (r *CheckReport) Add(format string, args ...any) {
	if len(r.Problems) >= maxProblems {
		r.More++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check verifies the database in one read transaction, so it may run on a
// live database: bbolt's own page consistency check, then feedmq's
// invariants. Every feed belongs to a channel and every channel has a
// feed; entry keys are 8-byte entry IDs no greater than the feed's
// sequence and entries decode; channel and device records decode under
// their own ID; grants name existing channels; the username index
// matches the devices both ways; the owner account decodes; and bindings
// decode, are valid and belong to existing channels. The
// error is for a check that could not run; what is wrong with the data is
// in the report.
func (db *DB) Check(ctx context.Context) (*CheckReport, error) {
	rep := &CheckReport{Problems: []string{}}
	err := db.view(ctx, "check", func(tx *bolt.Tx) (err error) {
		// Walking damaged pages can make bbolt panic: that is a finding.
		defer func() {
			if r := recover(); r != nil {
				rep.add("database is damaged: %v", r)
				err = nil
			}
		}()
		for err := range tx.Check() {
			rep.add("bbolt: %v", err)
		}
		if err := checkSchema(tx); err != nil {
			rep.add("%v", err)
			return nil // the buckets below may be missing
		}
		return checkData(ctx, tx, rep)
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

func checkData(ctx context.Context, tx *bolt.Tx, rep *CheckReport) error {
	chans := tx.Bucket(channelsBucket)
	feeds := tx.Bucket(feedsBucket)
	devices := tx.Bucket(devicesBucket)
	usernames := tx.Bucket(usernamesBucket)

	_ = chans.ForEach(func(k, v []byte) error {
		rep.Channels++
		if len(k) != 8 {
			rep.add("channels: key %x is not an 8-byte ID", k)
			return nil
		}
		var r channelRecord
		if err := json.Unmarshal(v, &r); err != nil {
			rep.add("channel %d: record does not decode: %v", btoi(k), err)
		} else if r.ID != btoi(k) {
			rep.add("channel %d: record has ID %d", btoi(k), r.ID)
		}
		if feeds.Bucket(k) == nil {
			rep.add("channel %d: feed is missing", btoi(k))
		}
		return nil
	})

	var scanned int
	err := feeds.ForEach(func(k, v []byte) error {
		if v != nil {
			rep.add("feeds: key %x is a value, not a feed bucket", k)
			return nil
		}
		if len(k) != 8 {
			rep.add("feeds: feed %x has no 8-byte channel ID", k)
			return nil
		}
		id := btoi(k)
		if chans.Get(k) == nil {
			rep.add("feed %d: belongs to no channel", id)
		}
		feed := feeds.Bucket(k)
		seq := feed.Sequence()
		return feed.ForEach(func(ek, ev []byte) error {
			if scanned++; scanned%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if len(ek) != 8 {
				rep.add("feed %d: entry key %x is not an 8-byte entry ID", id, ek)
				return nil
			}
			rep.Entries++
			eid := btoi(ek)
			if ev == nil {
				rep.add("feed %d: entry %d is a bucket", id, eid)
				return nil
			}
			if eid == 0 || eid > seq {
				rep.add("feed %d: entry %d is beyond the feed's sequence %d", id, eid, seq)
			}
			e := channels.Entry{ChannelID: id, ID: eid}
			if err := decodeEntry(&e, ev); err != nil {
				rep.add("feed %d: entry %d does not decode: %v", id, eid, err)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}

	_ = devices.ForEach(func(k, v []byte) error {
		rep.Devices++
		if len(k) != 8 {
			rep.add("devices: key %x is not an 8-byte ID", k)
			return nil
		}
		id := btoi(k)
		d, err := decodeDevice(id, v)
		if err != nil {
			rep.add("device %d: record does not decode: %v", id, err)
			return nil
		}
		if d.ID != id {
			rep.add("device %d: record has ID %d", id, d.ID)
		}
		seen := make(map[uint64]bool)
		for _, g := range d.Channels {
			if seen[g.ChannelID] {
				rep.add("device %d: channel %d is granted twice", id, g.ChannelID)
			}
			seen[g.ChannelID] = true
			if chans.Get(itob(g.ChannelID)) == nil {
				rep.add("device %d: grant to missing channel %d", id, g.ChannelID)
			}
		}
		if err := auth.CheckRules(d.Rules); err != nil {
			rep.add("device %d: access rules: %v", id, err)
		}
		if u := usernames.Get([]byte(d.Username)); u == nil {
			rep.add("device %d: username %q is not indexed", id, d.Username)
		} else if len(u) != 8 || btoi(u) != id {
			rep.add("device %d: username %q is indexed to another device", id, d.Username)
		}
		return nil
	})

	_ = usernames.ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			rep.add("usernames: %q maps to a malformed device ID %x", k, v)
			return nil
		}
		dv := devices.Get(v)
		if dv == nil {
			rep.add("usernames: %q maps to missing device %d", k, btoi(v))
			return nil
		}
		if d, err := decodeDevice(btoi(v), dv); err == nil && d.Username != string(k) {
			rep.add("usernames: %q maps to device %d, whose username is %q", k, btoi(v), d.Username)
		}
		return nil
	})
	checkAccount(tx, rep)
	checkSharedRules(tx, rep)
	checkBindings(tx, rep)
	return nil
}
