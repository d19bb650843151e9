package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/datasync"
	bolt "go.etcd.io/bbolt"
)

// The write-ahead log makes an append durable with one sequential write
// (O_DIRECT|O_DSYNC on Linux, else a write and an fdatasync: see
// datasync.Log), where a bbolt commit rewrites the last leaf page of
// every feed it touches (a hundred devices on a hundred channels: a
// hundred scattered pages per commit). Appended entries are copied into
// bbolt later, many commits' worth in one transaction (a checkpoint).
// Until then the log is what makes them durable; Open copies whatever a
// crash left in it.
//
// There are two log files, path+"-wal" and path+"-wal2". Appends go to
// one (the active log) while a checkpoint copies the other's records into
// bbolt on its own goroutine, so that a checkpoint (tens of milliseconds
// for a megabyte of entries) never holds appends up. A log becomes active
// again only after its records are in bbolt, and then starts over.
//
// Each file is:
//
//	header   8-byte magic, 8-byte epoch (LE), 4-byte CRC-32C of both, padding to 32 bytes
//	records  4-byte payload length (LE), 4-byte CRC-32C of epoch and payload,
//	         payload: 8-byte channel id (BE), 8-byte entry id (BE), entry (see entry.go)
//
// A batch (AppendEntries) is preceded by a marker record of channel 0 that
// gives the count and byte length of the batch's records; a reader takes
// them only when all are there and valid, so a torn batch is lost whole.
//
// Starting over rewrites only the header, with a new epoch: the CRC of
// every record covers the epoch, so records of earlier epochs that remain
// further in the file end the log like a torn write does. Writing over
// the same blocks each time also spares each commit a file-size update.
// Epoch numbers are never reused, and a log is given a new one whenever it
// starts over, so a log holding records not yet in bbolt always has an
// older epoch than a log holding later records. Recovery applies the two
// files oldest first: a feed skips records it already holds, and applying
// a newer record before an older one would make it skip the older. Open
// empties both files before it numbers them again (see recoverWAL).

const (
	walMagic      = "fmqwal01"
	walHeaderSize = 32
	walRecordHead = 8
	// walMaxPayload rejects absurd lengths in a damaged file before they
	// are used to slice it; entries are far smaller (MQTT packets are
	// bounded well below it).
	walMaxPayload = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrUnappliedLog is returned by a read-only Open when the write-ahead log
// holds entries that are not yet in the database file (the last writer
// did not close it). Opening it for writing once copies them in.
var ErrUnappliedLog = errors.New("the write-ahead log holds entries not yet in the database file (feedmq did not stop cleanly); open it once for writing (feedmq serve or any write command) to apply them")

// wal is one open write-ahead log file. Only the owner of the writer's
// state (a commit leader or the writer goroutine) uses it after Open, except that a checkpoint reads the records it was handed.
type wal struct {
	f     *os.File
	path  string
	epoch uint64
	off   int64 // end of the valid records
	// dirty is set while the file may hold records: since the last
	// start-over, something was appended (or a crash left records).
	dirty bool
	// broken is set when starting over may not have reached the disk:
	// what the header says is unknown, so nothing is appended until a
	// start-over succeeds.
	broken bool
	// tail is set after a failed append, until clearTail (see append);
	// tailEnd is where the furthest failed write ended.
	tail    bool
	tailEnd int64
	// out writes records and headers durably (see datasync.Log: whole
	// blocks past the page cache where it can).
	out *datasync.Log
}

// walPaths returns the two log files of the database at dbPath.
func walPaths(dbPath string) [2]string { return [2]string{dbPath + "-wal", dbPath + "-wal2"} }

// openWAL opens or creates one log file and returns the records of its
// current epoch. A new file, or one whose header is torn, has epoch 0 and
// no records: a start-over is only ever torn after every record before
// it was applied, and no record after it was written yet. The caller
// empties and restarts the log before anything is appended to it.
func openWAL(path string) (*wal, []byte, error) {
	f, err := openDataFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open write-ahead log: %w", err)
	}
	l := &wal{f: f, path: path, out: datasync.NewLog(f)}
	b, err := io.ReadAll(f)
	if err != nil {
		l.close() // both descriptors: the Log opened its own
		return nil, nil, fmt.Errorf("read write-ahead log %s: %w", path, err)
	}
	epoch, ok, err := parseWALHeader(b)
	if err != nil {
		l.close()
		return nil, nil, fmt.Errorf("write-ahead log %s: %w", path, err)
	}
	if !ok {
		return l, nil, nil
	}
	l.epoch = epoch
	n := scanWAL(b[walHeaderSize:], epoch, nil)
	return l, b[walHeaderSize : walHeaderSize+n], nil
}

// eachWALRecord calls fn with the payload of every valid record in the
// logs of dbPath, without writing anything; missing logs hold none.
func eachWALRecord(dbPath string, fn func(payload []byte)) error {
	for _, path := range walPaths(dbPath) {
		b, err := readDataFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("read write-ahead log: %w", err)
		}
		epoch, ok, err := parseWALHeader(b)
		if err != nil {
			return fmt.Errorf("write-ahead log %s: %w", path, err)
		}
		if ok {
			scanWAL(b[walHeaderSize:], epoch, fn)
		}
	}
	return nil
}

// readDataFile reads a whole file that openDataFile accepts.
func readDataFile(path string) ([]byte, error) {
	f, err := openDataFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// pendingWAL reports whether the logs of dbPath hold records, without
// writing anything.
func pendingWAL(dbPath string) (bool, error) {
	pending := false
	err := eachWALRecord(dbPath, func([]byte) { pending = true })
	return pending, err
}

// removeWAL deletes the log files of dbPath, which must hold nothing that
// is not in the database file.
func removeWAL(dbPath string) error {
	var errs []error
	for _, path := range walPaths(dbPath) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseWALHeader returns the epoch of a log. ok is false for an empty
// file or a header whose CRC fails; a file that is not a log at all is an
// error, so that a stray file is never taken for one and overwritten.
func parseWALHeader(b []byte) (epoch uint64, ok bool, err error) {
	head := b[:min(len(b), len(walMagic))]
	if len(b) < walHeaderSize && (strings.HasPrefix(walMagic, string(head)) || allZero(head)) ||
		len(b) >= walHeaderSize && allZero(b[:walHeaderSize]) {
		// A header that was being written when the power went (a new
		// file is created, then given its header).
		return 0, false, nil
	}
	if len(b) < walHeaderSize || string(b[:8]) != walMagic {
		return 0, false, fmt.Errorf("not a feedmq write-ahead log")
	}
	if crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:20]) {
		return 0, false, nil
	}
	return binary.LittleEndian.Uint64(b[8:16]), true, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// scanWAL returns the length of the valid records of epoch at the start
// of b, calling fn (when not nil) with each record's payload.
func scanWAL(b []byte, epoch uint64, fn func(payload []byte)) int {
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], epoch)
	base := crc32.Checksum(seed[:], castagnoli)
	off := 0
	for len(b)-off >= walRecordHead {
		n := binary.LittleEndian.Uint32(b[off:])
		if n < 16 || n > walMaxPayload || uint64(n) > uint64(len(b)-off-walRecordHead) {
			break
		}
		payload := b[off+walRecordHead : off+walRecordHead+int(n)]
		if crc32.Update(base, castagnoli, payload) != binary.LittleEndian.Uint32(b[off+4:]) {
			break
		}
		next := off + walRecordHead + int(n)
		if isWALMarker(payload) {
			// A batch counts only when all its records are there.
			count, size := binary.BigEndian.Uint64(payload[8:]), binary.BigEndian.Uint64(payload[16:])
			if size > uint64(len(b)-next) {
				break
			}
			batch := b[next : next+int(size)]
			if walRecords(batch, base) != count {
				break
			}
			if fn != nil {
				walRecordsEach(batch, fn)
			}
			off = next + int(size)
			continue
		}
		if fn != nil {
			fn(payload)
		}
		off = next
	}
	return off
}

// A batch marker is a record of channel 0 (no channel has ID 0, so older
// versions skip it as the record of a deleted channel): its payload is 8
// zero bytes, then the count of the records that follow in the batch and
// their length in bytes (BE). walMarkerLen is its payload length.
const walMarkerLen = 24

func isWALMarker(p []byte) bool {
	return len(p) == walMarkerLen && binary.BigEndian.Uint64(p) == 0
}

// appendWALMarker appends a batch marker to b.
func appendWALMarker(b []byte, epoch, count, size uint64) []byte {
	start := len(b)
	b = append(b, make([]byte, walRecordHead)...)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint64(b, count)
	b = binary.BigEndian.AppendUint64(b, size)
	sealWALRecord(b[start:], epoch)
	return b
}

// walRecords counts the valid entry records that fill b exactly (a batch),
// given the epoch's CRC seed; any defect, a marker inside or bytes left
// over give ^0.
func walRecords(b []byte, base uint32) uint64 {
	var count uint64
	for off := 0; off < len(b); count++ {
		if len(b)-off < walRecordHead {
			return ^uint64(0)
		}
		n := binary.LittleEndian.Uint32(b[off:])
		if n < 16 || n > walMaxPayload || uint64(n) > uint64(len(b)-off-walRecordHead) {
			return ^uint64(0)
		}
		payload := b[off+walRecordHead : off+walRecordHead+int(n)]
		if crc32.Update(base, castagnoli, payload) != binary.LittleEndian.Uint32(b[off+4:]) || isWALMarker(payload) {
			return ^uint64(0)
		}
		off += walRecordHead + int(n)
	}
	return count
}

// walRecordsEach calls fn with the payload of each record of a checked batch.
func walRecordsEach(b []byte, fn func(payload []byte)) {
	for off := 0; off < len(b); {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		fn(b[off+walRecordHead : off+walRecordHead+n])
		off += walRecordHead + n
	}
}

// sealWALRecord writes the head of the record that fills rec: the length
// of its payload and the CRC of the epoch and payload. The epoch is put
// in the head's place to be summed, as the CRC's seed: an array of its own
// would escape to the heap (crc32 calls through a function value), an
// allocation per record.
func sealWALRecord(rec []byte, epoch uint64) {
	binary.LittleEndian.PutUint64(rec, epoch)
	payload := rec[walRecordHead:]
	crc := crc32.Update(crc32.Checksum(rec[:walRecordHead], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(rec, uint32(len(payload)))
	binary.LittleEndian.PutUint32(rec[4:], crc)
}

// appendWALRecord appends the record of entry e, numbered id, to b.
func appendWALRecord(b []byte, epoch, id uint64, e *channels.Entry) []byte {
	start := len(b)
	b = append(b, make([]byte, walRecordHead)...)
	b = binary.BigEndian.AppendUint64(b, e.ChannelID)
	b = binary.BigEndian.AppendUint64(b, id)
	b = encodeEntry(b, e)
	sealWALRecord(b[start:], epoch)
	return b
}

// append writes the records b[mark:] after the valid ones, b[:mark], and
// waits for the disk; b[:mark] are all the records the log holds in its
// epoch (the caller keeps them). A log whose start-over failed takes
// nothing until one succeeds (the writer retries it).
//
// A failed append may still reach the disk later (the kernel writes back
// what WriteAt left in its cache), as valid records just past the end, of
// entries that were refused and whose IDs will be given again. So the end
// is marked (tail) and made explicit with clearTail before anything else
// is appended or the log is left for the other. The next append writes
// over the start of the failed one; should it end on a boundary of the
// failed records, those behind it would read as valid, so clearTail
// zeroes all that the failed writes covered.
func (l *wal) append(b []byte, mark int) error {
	if l.broken {
		return errors.New("write-ahead log: it could not start over")
	}
	if l.tail {
		if err := l.clearTail(b[:mark]); err != nil {
			return err
		}
	}
	l.dirty = true
	if err := l.write(b[mark:], l.off, "append"); err != nil {
		l.failed(len(b) - mark)
		return fmt.Errorf("write-ahead log: %w", err)
	}
	l.off += int64(len(b) - mark)
	return nil
}

// failed marks the n bytes written at the end as refused.
func (l *wal) failed(n int) {
	l.tail = true
	l.tailEnd = max(l.tailEnd, l.off+int64(n))
}

// clearTail zeroes what failed appends wrote past the valid records: an
// empty record head there ends the log for any reader, and no refused
// record is left behind to follow a later, shorter append. Then it writes
// the header and the valid records, recs, again: a failed write may cost
// more of the file than its own bytes (on ext4 over a device failing
// writes, earlier blocks of the log read as zeros after it), which the
// page cache hides from readers but not from a crash. Only the first,
// small write is retried while the disk keeps failing.
func (l *wal) clearTail(recs []byte) error {
	end := make([]byte, max(walRecordHead, l.tailEnd-l.off))
	if err := l.out.Write(end, l.off); err != nil {
		return fmt.Errorf("write-ahead log: end after a failed write: %w", err)
	}
	if l.off == walHeaderSize+int64(len(recs)) {
		all := make([]byte, l.off)
		h := walHeader(l.epoch)
		copy(all, h[:])
		copy(all[walHeaderSize:], recs)
		if err := l.out.Write(all, 0); err != nil {
			return fmt.Errorf("write-ahead log: rewrite after a failed write: %w", err)
		}
	}
	l.tail, l.tailEnd = false, 0
	return nil
}

// walHeader returns the header of a log of epoch.
func walHeader(epoch uint64) [walHeaderSize]byte {
	var h [walHeaderSize]byte
	copy(h[:], walMagic)
	binary.LittleEndian.PutUint64(h[8:], epoch)
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], castagnoli))
	return h
}

// restart empties the log by writing a header of a new epoch. The caller
// must have every record in the database file (committed) first.
func (l *wal) restart(epoch uint64) error {
	h := walHeader(epoch)
	l.epoch, l.off, l.broken = epoch, walHeaderSize, true
	if err := l.write(h[:], 0, "restart"); err != nil {
		return fmt.Errorf("restart write-ahead log: %w", err)
	}
	l.broken, l.dirty, l.tail, l.tailEnd = false, false, false, 0
	return nil
}

// empty removes every record from the file, whatever its epoch: Open does
// it before it gives a log a new epoch, since an epoch read from a torn or
// older header might be one some of the file's records were written in.
func (l *wal) empty() error {
	if err := l.out.Truncate(walHeaderSize); err != nil {
		return fmt.Errorf("empty write-ahead log: %w", err)
	}
	return nil
}

func (l *wal) close() error { return errors.Join(l.out.Close(), l.f.Close()) }

// logFault, when set (by tests only), is asked after the write of an
// append ("append") or a start-over ("restart"); an error fails that
// write as a failing disk would, with the bytes written.
var logFault atomic.Pointer[func(op string) error]

// write writes b at off durably. Past the end of b, up to the next 4 KiB
// boundary, the file may read as zeros afterwards: an empty record head,
// which ends the log there for any reader.
func (l *wal) write(b []byte, off int64, op string) error {
	if err := l.out.Write(b, off); err != nil {
		return err
	}
	if fault := logFault.Load(); fault != nil {
		return (*fault)(op)
	}
	return nil
}

// applyWAL copies logged records into their feeds. A record already in
// its feed (its ID not above the feed's sequence) or whose channel was
// deleted is skipped, so applying the same records twice is harmless: a
// crash between a checkpoint's commit and the log's start-over leaves
// exactly that. Keys and values point into b, which must outlive tx.
func applyWAL(tx *bolt.Tx, b []byte, epoch uint64) (applied int, err error) {
	feeds := tx.Bucket(feedsBucket)
	var (
		lastCh uint64
		feed   *bolt.Bucket
	)
	scanWAL(b, epoch, func(p []byte) {
		if err != nil {
			return
		}
		ch, id := binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
		if feed == nil || ch != lastCh {
			lastCh, feed = ch, feeds.Bucket(p[:8])
			if feed != nil {
				// Keys only ever grow: full pages, not bbolt's
				// half-full split meant for random inserts.
				feed.FillPercent = 1
			}
		}
		if feed == nil || id <= feed.Sequence() {
			return
		}
		if err = feed.Put(p[8:16], p[16:]); err != nil {
			err = fmt.Errorf("apply entry %d of channel %d: %w", id, ch, err)
			return
		}
		if err = feed.SetSequence(id); err != nil {
			return
		}
		applied++
	})
	return applied, err
}
