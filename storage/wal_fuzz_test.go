package storage_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/feedmq/feedmq/storage"
)

// walRecord frames payload as a log record of epoch, written here from the
// format in wal.go rather than with its code, so that the two check each
// other.
func walRecord(epoch uint64, payload []byte) []byte {
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], epoch)
	tab := crc32.MakeTable(crc32.Castagnoli)
	crc := crc32.Update(crc32.Checksum(seed[:], tab), tab, payload)
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc)
	return append(b, payload...)
}

// FuzzScanWAL reads logs of any content, as a damaged disk or a torn write
// leaves them: scanning never reads past the end, keeps only whole records
// of the epoch, and what it keeps framed again is the same bytes.
func FuzzScanWAL(f *testing.F) {
	const epoch = 7
	var log []byte
	id := uint64(0)
	for _, e := range codecCases {
		id++
		p := binary.BigEndian.AppendUint64(nil, 1)
		p = binary.BigEndian.AppendUint64(p, id)
		p = storage.EncodeEntry(p, &e)
		log = append(log, walRecord(epoch, p)...)
	}
	f.Add(log, uint64(epoch))
	f.Add(log[:len(log)-3], uint64(epoch))
	f.Add(log, uint64(epoch+1))
	f.Add([]byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, epoch uint64) {
		n, payloads := storage.ScanWAL(b, epoch)
		if n < 0 || n > len(b) {
			t.Fatalf("valid length %d of %d bytes", n, len(b))
		}
		var again []byte
		for _, p := range payloads {
			if len(p) < 16 {
				t.Fatalf("a record of %d bytes, shorter than its channel and entry IDs", len(p))
			}
			again = append(again, walRecord(epoch, p)...)
		}
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("the %d records kept, framed again, differ from the %d bytes they came from", len(payloads), n)
		}
	})
}
