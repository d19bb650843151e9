package storage

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

// Feeds are keyed by entry_id, but reads answer in created_at order (the
// newest results by time, oldest first), and a writer may date an entry
// before entries it already has. Such back-dated entries are rare, so a
// read should not pay for them when a feed has none.
//
// An entry is back-dated when its created_at is older than that of some
// entry with a lower ID. Call the highest such ID the feed's disorder
// point D (0 when there is none). Every entry above D is at least as new
// as every entry with a lower ID, so above D the feed is in time order,
// and it is newer than everything at or below D. A read walks the feed
// newest ID first: above D it takes matches as they come and stops at
// its limit, or at the first entry older than its start (nothing below is
// newer); only a read that needs more goes below D, where it keeps the
// newest matches by time in a bounded heap.
//
// D is found by one walk over the feed, then kept per feed (orderCache)
// and carried forward over new entries only. That is sound because
// entries below a feed's highest ID are never added or changed: appends
// and imports number above it, retention deletes from the lowest ID up,
// and whatever renumbers a feed (clear, channel deletion) starts a new
// generation of the log tail and records it for the channel (tail.renumber):
// what was learnt of the feed under an older one is void.

// MaxKeyLimit bounds the Limit of EntryKeys, and so the keys it holds.
const MaxKeyLimit = 1 << 16

// feedOrder is what is known of one feed's order.
type feedOrder struct {
	gen     uint64 // the tail generation it was read under
	first   uint64 // the lowest entry ID looked at (0: from the start)
	through uint64 // the highest entry ID looked at
	point   uint64 // the disorder point D of the IDs up to through
	newest  int64  // the newest created_at up to through
}

// orderScanned counts the entries disorderPoint has walked, for tests.
var orderScanned atomic.Uint64

// orderCache keeps a feedOrder per channel.
type orderCache struct {
	mu sync.Mutex
	m  map[uint64]feedOrder
}

func (c *orderCache) get(ch uint64) (feedOrder, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.m[ch]
	return o, ok
}

// put keeps o unless what is kept already reaches further over the same
// feed (current says whether a generation saw the feed as it is now).
func (c *orderCache) put(ch uint64, o feedOrder, current func(gen uint64) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[ch]; ok && current(old.gen) && old.through >= o.through {
		return
	}
	if c.m == nil {
		c.m = make(map[uint64]feedOrder)
	}
	c.m[ch] = o
}

// disorderPoint returns the disorder point of the feed as tx and s hold
// it. A point from a later snapshot of the same feed is as good: a higher
// D only sends more of the read to the heap. Snapshots see the same feed
// when both generations are at or past the one its clear started (other
// channels' clears do not matter). Retention may have deleted the oldest
// entries of the later snapshot's feed, behind which entries were
// back-dated: a snapshot that still holds entries below the ones looked
// at walks its feed itself.
func (db *DB) disorderPoint(ctx context.Context, channelID uint64, feed *bolt.Bucket, logged []tailRec, s *tailSnap) (uint64, error) {
	last := feed.Sequence()
	if len(logged) > 0 {
		last = logged[len(logged)-1].id
	}
	o := feedOrder{gen: s.gen, newest: math.MinInt64}
	current := func(gen uint64) bool { return db.w.tail.current(channelID, gen) }
	var lowest uint64 // the snapshot's lowest entry ID, 0 with none
	if k, _ := feed.Cursor().First(); k != nil {
		lowest = btoi(k)
	} else if len(logged) > 0 {
		lowest = logged[0].id
	}
	if s.live {
		if c, ok := db.order.get(channelID); ok && current(c.gen) && current(s.gen) && (lowest == 0 || c.first <= lowest) {
			if c.through >= last {
				return c.point, nil
			}
			o = c
		}
	}
	var walked uint64
	defer func() { orderScanned.Add(walked) }()
	visit := func(id uint64, v []byte) error {
		walked++
		if o.through == 0 {
			o.first = id
		}
		created, _, _, err := decodeHeader(v)
		if err != nil {
			return fmt.Errorf("entry %d of channel %d: %w", id, channelID, err)
		}
		if created < o.newest {
			o.point = id
		} else {
			o.newest = created
		}
		o.through = id
		return nil
	}
	c := feed.Cursor()
	k, v := c.First()
	if o.through > 0 {
		k, v = c.Seek(itob(o.through + 1))
	}
	for scanned := 1; k != nil; k, v = c.Next() {
		if scanned++; scanned%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if err := visit(btoi(k), v); err != nil {
			return 0, err
		}
	}
	for _, r := range logged {
		if r.id <= o.through {
			continue
		}
		if err := visit(r.id, r.rec); err != nil {
			return 0, err
		}
	}
	if s.live && current(s.gen) {
		db.order.put(channelID, o, current)
	}
	return o.point, nil
}

// EntryKeys returns the keys of the newest f.Limit entries of a channel by
// created_at (then entry_id) that match f, oldest first: what a read
// answers, as ThingSpeak orders feeds by time. f.AfterID selects by ID,
// not by time. f.Limit must be from 1 to
// MaxKeyLimit. With EntriesByKey it lets a caller hand out the read a page
// at a time, holding only the keys (16 bytes an entry) and one page.
func (db *DB) EntryKeys(ctx context.Context, channelID uint64, f channels.EntryFilter) (channels.EntryKeys, error) {
	if f.Limit < 1 || f.Limit > MaxKeyLimit {
		return channels.EntryKeys{}, channels.Errorf(channels.EINVALID, "a keyed read takes 1 to %d entries, not %d", MaxKeyLimit, f.Limit)
	}
	var out channels.EntryKeys
	err := db.read(ctx, "read entries", func(tx *bolt.Tx, s *tailSnap) error {
		out = channels.EntryKeys{Version: s.gen}
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		logged := s.after(channelID, feed)
		point, err := db.disorderPoint(ctx, channelID, feed, logged, s)
		if err != nil {
			return err
		}
		out.Keys, err = collectKeys(ctx, feed, logged, channelID, point, &f)
		return err
	})
	if err != nil {
		return channels.EntryKeys{}, err
	}
	return out, nil
}

// collectKeys walks the feed newest ID first (logged entries, then
// bbolt) and returns the keys of the read, oldest first; see the top of
// this file.
func collectKeys(ctx context.Context, feed *bolt.Bucket, logged []tailRec, channelID, point uint64, f *channels.EntryFilter) ([]channels.EntryKey, error) {
	var start int64
	hasStart := !f.Start.IsZero()
	if hasStart {
		// Stored times are whole seconds: an entry is before Start
		// when its second is before Start's, rounded up.
		start = f.Start.Unix()
		if f.Start.After(time.Unix(start, 0)) {
			start++
		}
	}
	// Above the point, newest first, then the heap of the rest in the
	// same array: sized once, as a feed in time order fills it to the
	// limit.
	ordered := make([]channels.EntryKey, 0, min(uint64(f.Limit), feedLen(feed)+uint64(len(logged))))
	var h keyHeap
	heaped := false
	done := false
	// visit takes the next entry, newest ID first.
	visit := func(id uint64, v []byte) error {
		created, set, _, err := decodeHeader(v)
		if err != nil {
			return fmt.Errorf("entry %d of channel %d: %w", id, channelID, err)
		}
		if id <= f.AfterID {
			// Every entry further has a lower ID.
			done = true
			return nil
		}
		if id > point && hasStart && created < start {
			// Everything below is older still.
			done = true
			return nil
		}
		if !matchesHeader(created, set, f) {
			return nil
		}
		k := channels.EntryKey{Created: created, ID: id}
		if id > point {
			ordered = append(ordered, k)
			done = len(ordered) >= f.Limit
			return nil
		}
		if !heaped {
			// Nothing above the point comes any more.
			heaped, h.n = true, f.Limit-len(ordered)
			ordered = slices.Grow(ordered, h.n)
			h.keys = ordered[len(ordered):len(ordered)]
		}
		h.offer(k)
		return nil
	}
	for i := len(logged) - 1; i >= 0 && !done; i-- {
		if err := visit(logged[i].id, logged[i].rec); err != nil {
			return nil, err
		}
	}
	c := feed.Cursor()
	scanned := 0
	for k, v := c.Last(); k != nil && !done; k, v = c.Prev() {
		if scanned++; scanned%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if err := visit(btoi(k), v); err != nil {
			return nil, err
		}
	}
	// Oldest first: the heap's keys newest first after ordered's, then
	// all of it reversed.
	all := ordered[:len(ordered)+len(h.keys)]
	slices.SortFunc(h.keys, func(a, b channels.EntryKey) int {
		if a.Less(b) {
			return 1
		}
		if b.Less(a) {
			return -1
		}
		return 0
	})
	slices.Reverse(all)
	return all, nil
}

// matchesHeader is matches on a decoded header.
func matchesHeader(created int64, set uint16, f *channels.EntryFilter) bool {
	t := time.Unix(created, 0)
	if (!f.Start.IsZero() && t.Before(f.Start)) || (!f.End.IsZero() && t.After(f.End)) {
		return false
	}
	return f.Field < 1 || f.Field > channels.NumFields || set&(1<<(f.Field-1)) != 0
}

// keyHeap keeps the n newest keys offered: a min-heap on time order, its
// oldest key at the root.
type keyHeap struct {
	keys []channels.EntryKey
	n    int
}

func (h *keyHeap) offer(k channels.EntryKey) {
	if h.n <= 0 {
		return
	}
	if len(h.keys) < h.n {
		h.keys = append(h.keys, k)
		for i := len(h.keys) - 1; i > 0; {
			p := (i - 1) / 2
			if !h.keys[i].Less(h.keys[p]) {
				break
			}
			h.keys[i], h.keys[p] = h.keys[p], h.keys[i]
			i = p
		}
		return
	}
	if !h.keys[0].Less(k) {
		return
	}
	h.keys[0] = k
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h.keys) && h.keys[l].Less(h.keys[m]) {
			m = l
		}
		if r := l + 1; r < len(h.keys) && h.keys[r].Less(h.keys[m]) {
			m = r
		}
		if m == i {
			return
		}
		h.keys[i], h.keys[m] = h.keys[m], h.keys[i]
		i = m
	}
}

// EntriesByKey appends to page the entries of keys, in their order; keys
// come from EntryKeys under version. An entry deleted since (retention)
// is left out. Once the feed has been cleared or its channel deleted, it
// refuses with ECONFLICT.
func (db *DB) EntriesByKey(ctx context.Context, channelID, version uint64, keys []channels.EntryKey, page []channels.Entry) ([]channels.Entry, error) {
	start := len(page)
	err := db.read(ctx, "read entries", func(tx *bolt.Tx, s *tailSnap) error {
		page = page[:start]
		if !db.w.tail.current(channelID, version) {
			return channels.Errorf(channels.ECONFLICT, "channel %d was cleared or deleted during the read", channelID)
		}
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		seq := feed.Sequence()
		logged := s.after(channelID, feed)
		c := feed.Cursor()
		var at []byte // the cursor's key, nil before the first Seek
		for i, k := range keys {
			if i > 0 && i%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var v []byte
			if k.ID > seq {
				j, ok := slices.BinarySearchFunc(logged, k.ID, func(r tailRec, id uint64) int {
					return cmpUint(r.id, id)
				})
				if !ok {
					continue
				}
				v = logged[j].rec
			} else {
				// Keys mostly run on by one ID: step rather than seek.
				var ck []byte
				if at != nil && btoi(at)+1 == k.ID {
					ck, v = c.Next()
				} else {
					ck, v = c.Seek(itob(k.ID))
				}
				at = ck
				if ck == nil || btoi(ck) != k.ID {
					continue
				}
			}
			page = append(page, channels.Entry{ChannelID: channelID, ID: k.ID})
			if err := decodeEntry(&page[len(page)-1], v); err != nil {
				return fmt.Errorf("entry %d of channel %d: %w", k.ID, channelID, err)
			}
		}
		return nil
	})
	return page, err
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
