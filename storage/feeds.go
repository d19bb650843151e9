package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/feedmq/feedmq/channels"
	bolt "go.etcd.io/bbolt"
)

// ctxCheckEvery is how many entries Entries scans between looks at ctx:
// often enough to stop a runaway scan, rarely enough to cost nothing.
const ctxCheckEvery = 4096

// maxPrealloc bounds the capacity Entries reserves up front when a filter
// may skip entries, because a narrow filter over a long feed would
// otherwise reserve memory for entries it never finds.
const maxPrealloc = 1024

// maxExactPrealloc bounds the capacity reserved for an unfiltered read,
// whose size feedLen may overstate.
const maxExactPrealloc = 1 << 16

// ClearChannel deletes every entry of a channel. The feed bucket is
// recreated rather than emptied so that its sequence, and with it entry
// numbering, restarts at 1.
func (db *DB) ClearChannel(ctx context.Context, id uint64) error {
	// Exclusive: an append numbered by the old sequence must not land in
	// the new feed.
	return db.w.exclusive(ctx, func() error {
		return db.clearChannel(ctx, id)
	})
}

func (db *DB) clearChannel(ctx context.Context, id uint64) error {
	db.w.tail.renumber(id)
	return db.update(ctx, "clear channel", func(tx *bolt.Tx) error {
		feeds, key := tx.Bucket(feedsBucket), itob(id)
		if feeds.Bucket(key) == nil {
			return channelNotFound(id)
		}
		if err := feeds.DeleteBucket(key); err != nil {
			return fmt.Errorf("delete feed of channel %d: %w", id, err)
		}
		if _, err := feeds.CreateBucket(key); err != nil {
			return fmt.Errorf("create feed of channel %d: %w", id, err)
		}
		return nil
	})
}

// Entries returns the newest f.Limit entries of a channel that match f,
// oldest first. With f.AfterID the walk ends at that ID, so catching up
// from a recent entry reads only what came after it.
func (db *DB) Entries(ctx context.Context, channelID uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	var list []channels.Entry
	err := db.read(ctx, "read entries", func(tx *bolt.Tx, s *tailSnap) error {
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		var err error
		list, err = scanFeed(ctx, feed, s.after(channelID, feed), channelID, f)
		return err
	})
	return list, err
}

// scanFeed walks the logged entries newer than the feed (logged), then the
// feed, newest first, because Limit keeps the newest entries and entry
// keys sort by entry_id. created_at is not monotonic (a payload may set
// it), so Start and End cannot end the walk early; AfterID can.
func scanFeed(ctx context.Context, feed *bolt.Bucket, logged []tailRec, channelID uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	list := make([]channels.Entry, 0, prealloc(feedLen(feed)+uint64(len(logged)), afterCount(feed, logged, f.AfterID), &f))
	for i := len(logged) - 1; i >= 0 && logged[i].id > f.AfterID && (f.Limit <= 0 || len(list) < f.Limit); i-- {
		ok, err := matches(logged[i].rec, &f)
		if err != nil {
			return nil, fmt.Errorf("logged entry %d of channel %d: %w", logged[i].id, channelID, err)
		} else if !ok {
			continue
		}
		list = append(list, channels.Entry{ChannelID: channelID, ID: logged[i].id})
		if err := decodeEntry(&list[len(list)-1], logged[i].rec); err != nil {
			return nil, fmt.Errorf("logged entry %d of channel %d: %w", logged[i].id, channelID, err)
		}
	}
	c := feed.Cursor()
	scanned := 0
	for k, v := c.Last(); k != nil && btoi(k) > f.AfterID && (f.Limit <= 0 || len(list) < f.Limit); k, v = c.Prev() {
		if scanned++; scanned%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		ok, err := matches(v, &f)
		if err != nil {
			return nil, fmt.Errorf("entry %d of channel %d: %w", btoi(k), channelID, err)
		} else if !ok {
			continue
		}
		list = append(list, channels.Entry{ChannelID: channelID, ID: btoi(k)})
		if err := decodeEntry(&list[len(list)-1], v); err != nil {
			return nil, fmt.Errorf("entry %d of channel %d: %w", btoi(k), channelID, err)
		}
	}
	slices.Reverse(list)
	return list, nil
}

// matches reports whether a stored entry passes f, looking only at its
// header so that skipped entries cost no copies.
func matches(v []byte, f *channels.EntryFilter) (bool, error) {
	created, set, _, err := decodeHeader(v)
	if err != nil {
		return false, err
	}
	t := time.Unix(created, 0)
	if (!f.Start.IsZero() && t.Before(f.Start)) || (!f.End.IsZero() && t.After(f.End)) {
		return false, nil
	}
	if f.Field >= 1 && f.Field <= channels.NumFields && set&(1<<(f.Field-1)) == 0 {
		return false, nil
	}
	return true, nil
}

// FindEntry returns one entry of a channel.
func (db *DB) FindEntry(ctx context.Context, channelID, entryID uint64) (*channels.Entry, error) {
	e := &channels.Entry{ChannelID: channelID, ID: entryID}
	err := db.read(ctx, "find entry", func(tx *bolt.Tx, s *tailSnap) error {
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		var v []byte
		if entryID > feed.Sequence() {
			for _, r := range s.after(channelID, feed) {
				if r.id == entryID {
					v = r.rec
				}
			}
		} else {
			v = feed.Get(itob(entryID))
		}
		if v == nil {
			return channels.Errorf(channels.ENOTFOUND, "entry %d of channel %d not found", entryID, channelID)
		}
		if err := decodeEntry(e, v); err != nil {
			return fmt.Errorf("entry %d of channel %d: %w", entryID, channelID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// EntryCount returns the number of entries of a channel. It counts the
// feed's keys from bbolt's page headers (work grows with the feed's pages,
// not its entries, and no entry is decoded) rather than trusting
// feedLen, which overcounts where imported IDs left gaps.
func (db *DB) EntryCount(ctx context.Context, channelID uint64) (uint64, error) {
	var n uint64
	err := db.read(ctx, "count entries", func(tx *bolt.Tx, s *tailSnap) error {
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		n = uint64(feed.Stats().KeyN) + uint64(len(s.after(channelID, feed)))
		return nil
	})
	return n, err
}

// feedBucket returns the feed of a channel, or nil when the channel does
// not exist: a feed lives exactly as long as its channel.
func feedBucket(tx *bolt.Tx, channelID uint64) *bolt.Bucket {
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], channelID)
	return tx.Bucket(feedsBucket).Bucket(key[:])
}

// feedLen is the number of entries in a feed, or more. Entries are
// deleted only from the oldest end (by retention, see prune.go) or all at
// once, so the keys of appended entries run without gaps from the first
// key to the sequence; an import that kept the IDs of another server may
// leave gaps, which this counts too.
func feedLen(feed *bolt.Bucket) uint64 {
	k, _ := feed.Cursor().First()
	if len(k) != 8 || btoi(k) > feed.Sequence() {
		return 0
	}
	return feed.Sequence() - btoi(k) + 1
}

// afterCount bounds the number of entries above afterID in a feed whose
// newest entries are logged: every entry when afterID is 0.
func afterCount(feed *bolt.Bucket, logged []tailRec, afterID uint64) uint64 {
	if afterID == 0 {
		return math.MaxUint64
	}
	last := feed.Sequence()
	if len(logged) > 0 {
		last = logged[len(logged)-1].id
	}
	if last <= afterID {
		return 0
	}
	return last - afterID
}

// prealloc is the capacity to reserve for the result of f on a feed of n
// entries, at most after of which have IDs above f.AfterID. Without a
// filter the result size is known exactly.
func prealloc(n, after uint64, f *channels.EntryFilter) int {
	n = min(n, after)
	if f.Limit > 0 && uint64(f.Limit) < n {
		n = uint64(f.Limit)
	}
	if f.Start.IsZero() && f.End.IsZero() && f.Field == 0 {
		// Exact unless imported IDs left gaps, which may be wide.
		return int(min(n, maxExactPrealloc))
	}
	return int(min(n, maxPrealloc))
}

// EntrySpan returns the IDs of the oldest and the newest entry that
// Entries(ctx, channelID, f) would return, or 0, 0 when it would return
// none. Together with EntryPage it lets a caller hand out a large read a
// page at a time: no read transaction stays open while the caller writes
// a page to a slow client, and only one page is in memory.
func (db *DB) EntrySpan(ctx context.Context, channelID uint64, f channels.EntryFilter) (channels.EntrySpan, error) {
	var first, last, version uint64
	err := db.read(ctx, "read entries", func(tx *bolt.Tx, s *tailSnap) error {
		first, last, version = 0, 0, s.gen
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		n := 0
		// visit takes entries newest first; it reports whether the
		// span is complete.
		visit := func(id uint64, v []byte) (bool, error) {
			if id <= f.AfterID {
				return true, nil // everything further is older
			}
			ok, err := matches(v, &f)
			if err != nil {
				return true, fmt.Errorf("entry %d of channel %d: %w", id, channelID, err)
			}
			if ok {
				if last == 0 {
					last = id
				}
				first = id
				n++
			}
			return f.Limit > 0 && n >= f.Limit, nil
		}
		logged := s.after(channelID, feed)
		for i := len(logged) - 1; i >= 0; i-- {
			if done, err := visit(logged[i].id, logged[i].rec); done || err != nil {
				return err
			}
		}
		c := feed.Cursor()
		scanned := 0
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if scanned++; scanned%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if done, err := visit(btoi(k), v); done || err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return channels.EntrySpan{}, err
	}
	return channels.EntrySpan{First: first, Last: last, Version: version}, nil
}

// EntryPage appends to page, oldest first, the entries of span with IDs
// from from that match f (f.Limit does not apply; f.AfterID raises from),
// at most n of them. The
// caller continues after the last ID it got, until a page comes back
// short of n. Once a feed has been cleared or its channel deleted, pages
// of a span read before are refused with ECONFLICT.
func (db *DB) EntryPage(ctx context.Context, channelID uint64, f channels.EntryFilter, span channels.EntrySpan, from uint64, n int, page []channels.Entry) ([]channels.Entry, error) {
	start, to := len(page), span.Last
	if f.AfterID >= from {
		from = f.AfterID + 1
		if from == 0 { // AfterID was the highest ID there is
			return page, nil
		}
	}
	err := db.read(ctx, "read entries", func(tx *bolt.Tx, s *tailSnap) error {
		page = page[:start]
		if !db.w.tail.current(channelID, span.Version) {
			return channels.Errorf(channels.ECONFLICT, "channel %d was cleared or deleted during the read", channelID)
		}
		feed := feedBucket(tx, channelID)
		if feed == nil {
			return channelNotFound(channelID)
		}
		add := func(id uint64, v []byte) error {
			ok, err := matches(v, &f)
			if err != nil {
				return fmt.Errorf("entry %d of channel %d: %w", id, channelID, err)
			} else if !ok {
				return nil
			}
			page = append(page, channels.Entry{ChannelID: channelID, ID: id})
			if err := decodeEntry(&page[len(page)-1], v); err != nil {
				return fmt.Errorf("entry %d of channel %d: %w", id, channelID, err)
			}
			return nil
		}
		c := feed.Cursor()
		scanned := 0
		k, v := c.Seek(itob(from))
		for ; k != nil && len(page)-start < n; k, v = c.Next() {
			id := btoi(k)
			if id > to {
				return nil
			}
			if scanned++; scanned%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := add(id, v); err != nil {
				return err
			}
		}
		if k != nil {
			return nil // the page is full
		}
		// The logged entries come after everything in the feed.
		for _, r := range s.after(channelID, feed) {
			if len(page)-start >= n || r.id > to {
				break
			}
			if r.id < from {
				continue
			}
			if err := add(r.id, r.rec); err != nil {
				return err
			}
		}
		return nil
	})
	return page, err
}
