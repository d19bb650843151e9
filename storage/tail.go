package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Reads must see every acknowledged entry, and those sit in the
// write-ahead log until a checkpoint copies them into bbolt. Copying them
// for each read (a bbolt commit and a log start-over on the writer
// goroutine) would let any client that can read make appends wait. So
// the writer also keeps a copy of the logged entries in memory, per
// channel (tail), and readers merge it with what bbolt holds, without
// asking the writer for anything.
//
// The copy of an entry is dropped only after the checkpoint that holds it
// has committed, so an entry is always in bbolt or in tail, or both: a
// reader takes its snapshot of tail first and opens its bbolt transaction
// after, and ignores tail entries that the transaction's feed already has
// (entry IDs at or below the feed's sequence).

// tailRec is one logged entry: its ID and its encoded form (entry.go).
type tailRec struct {
	id  uint64
	rec []byte
}

// tail is the logged entries that may not be in bbolt yet. The writer
// appends and drops; readers take snapshots. A snapshot's slices stay
// valid: records are never changed, a drop only reslices, and appends
// write past the end of every snapshot taken before.
type tail struct {
	mu    sync.Mutex
	feeds map[uint64][]tailRec
	// gen changes before every operation that may renumber a feed
	// (writer.exclusive): a reader whose snapshot and transaction straddle
	// one must start again.
	gen uint64
	// renumbered is, per channel whose feed was cleared or deleted, the
	// first generation that can only see the feed as it was left: keys
	// and spans read under an older one name entries that may be gone
	// or numbered anew. Other channels' reads are not disturbed.
	renumbered map[uint64]uint64
	// chunk is where add copies records (see tailChunk).
	chunk []byte
}

// tailSnap is a reader's view of tail.
type tailSnap struct {
	feeds map[uint64][]tailRec
	gen   uint64
	// live is set on snapshots of tail, whose gen names the feeds the
	// transaction holds; the stand-in of a read done as the writer's
	// operations are has gen 0, which names no particular feeds.
	live bool
}

func newTail() *tail { return &tail{feeds: make(map[uint64][]tailRec)} }

// tailChunk is the size of the buffers add copies records into: one
// allocation for many small commits rather than one each.
const tailChunk = 64 << 10

// add copies the records of one commit (appendWALRecord's format). Only
// the owner of the writer's state calls it.
func (t *tail) add(recs []byte) {
	// Records are only ever appended to the chunk, never changed, so
	// readers may hold the earlier ones while it fills.
	if len(recs) > cap(t.chunk)-len(t.chunk) {
		t.chunk = make([]byte, 0, max(tailChunk, len(recs)))
	}
	start := len(t.chunk)
	t.chunk = append(t.chunk, recs...)
	buf := t.chunk[start:len(t.chunk):len(t.chunk)]
	t.mu.Lock()
	defer t.mu.Unlock()
	for off := 0; off+walRecordHead <= len(buf); {
		n := int(binary.LittleEndian.Uint32(buf[off:]))
		p := buf[off+walRecordHead : off+walRecordHead+n : off+walRecordHead+n]
		off += walRecordHead + n
		if isWALMarker(p) {
			continue
		}
		ch := binary.BigEndian.Uint64(p)
		t.feeds[ch] = append(t.feeds[ch], tailRec{id: binary.BigEndian.Uint64(p[8:]), rec: p[16:]})
	}
}

// drop forgets, per channel, the entries up to the ID in upto: a
// checkpoint has put them in bbolt.
func (t *tail) drop(upto map[uint64]uint64) {
	if len(upto) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch, last := range upto {
		recs := t.feeds[ch]
		i := 0
		for i < len(recs) && recs[i].id <= last {
			i++
		}
		if i == len(recs) {
			delete(t.feeds, ch)
		} else {
			t.feeds[ch] = recs[i:]
		}
	}
}

// reset forgets everything (all of it is in bbolt) and starts a new
// generation, before an operation that may renumber feeds.
func (t *tail) reset() {
	t.mu.Lock()
	clear(t.feeds)
	t.gen++
	t.mu.Unlock()
}

// bump starts a new generation once an operation that renumbered feeds
// has committed: a reader that began during it, between reset and the
// commit, may have read the feeds as they were, under reset's generation.
func (t *tail) bump() {
	t.mu.Lock()
	t.gen++
	t.mu.Unlock()
}

// renumber records that fn of writer.exclusive, between reset and bump,
// renumbers the feed of channel ch.
func (t *tail) renumber(ch uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.renumbered == nil {
		t.renumbered = make(map[uint64]uint64)
	}
	t.renumbered[ch] = t.gen + 1 // the generation bump starts
}

// current reports whether what was read of channel ch under generation
// version still names the feed's entries.
func (t *tail) current(ch, version uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return version >= t.renumbered[ch]
}

func (t *tail) snapshot() tailSnap {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := tailSnap{gen: t.gen, live: true}
	if len(t.feeds) > 0 {
		s.feeds = make(map[uint64][]tailRec, len(t.feeds))
		for ch, recs := range t.feeds {
			s.feeds[ch] = recs
		}
	}
	return s
}

func (t *tail) generation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// after returns the snapshot's entries of channel ch that feed does not
// hold yet, oldest first.
func (s *tailSnap) after(ch uint64, feed *bolt.Bucket) []tailRec {
	recs := s.feeds[ch]
	if len(recs) == 0 || feed == nil {
		return nil
	}
	seq := feed.Sequence()
	i := len(recs)
	for i > 0 && recs[i-1].id > seq {
		i--
	}
	return recs[i:]
}

// lastID is the channel's last entry ID: the feed's sequence, or the
// newest logged entry's.
func (s *tailSnap) lastID(ch uint64, feed *bolt.Bucket) uint64 {
	if recs := s.after(ch, feed); len(recs) > 0 {
		return recs[len(recs)-1].id
	}
	return feed.Sequence()
}

var errTailMoved = errors.New("feeds renumbered during the read")

// readHook, when set (by tests only), runs in each read's transaction
// before the read itself.
var readHook func()

// read runs fn in a read transaction with a snapshot of the logged
// entries that the transaction may not hold, without waiting for the
// writer (compare view, which has the writer copy them into bbolt first).
func (db *DB) read(ctx context.Context, op string, fn func(tx *bolt.Tx, s *tailSnap) error) error {
	for range 3 {
		if err := ctx.Err(); err != nil {
			return err
		}
		s := db.w.tail.snapshot()
		err := db.bolt.View(func(tx *bolt.Tx) error {
			if db.w.tail.generation() != s.gen {
				return errTailMoved
			}
			if h := readHook; h != nil {
				h()
			}
			return fn(tx, &s)
		})
		if !errors.Is(err, errTailMoved) {
			return wrap(op, err)
		}
	}
	// Feeds keep being cleared: read as the writer's operations do.
	return db.view(ctx, op, func(tx *bolt.Tx) error { return fn(tx, &tailSnap{}) })
}
