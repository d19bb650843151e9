package storage

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// An entry is stored in its feed bucket under its 8-byte entry_id as:
//
//	varint   created_at, Unix seconds
//	uvarint  Set mask (bit i = Values[i] present)
//	for each set bit, lowest first: uvarint length, then the value bytes
//
// Channel and entry IDs are not repeated: the bucket and key carry them.
// A typical entry with two short fields takes about 15 bytes, which keeps
// feeds of millions of entries small and fast to scan.

// errCorrupt is returned for a stored entry that does not decode.
var errCorrupt = errors.New("corrupt entry")

// unknownValues masks Set bits that name no value.
const unknownValues = ^uint16(1<<channels.NumValues - 1)

// encodeEntry appends the stored form of e to b.
func encodeEntry(b []byte, e *channels.Entry) []byte {
	b = binary.AppendVarint(b, e.CreatedAt.Unix())
	b = binary.AppendUvarint(b, uint64(e.Set))
	for i := 0; i < channels.NumValues; i++ {
		if v, ok := e.Value(i); ok {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

// decodeHeader returns the created_at and Set mask of a stored entry and
// the offset of its values, so that filters can skip the value copies.
func decodeHeader(b []byte) (created int64, set uint16, n int, err error) {
	created, n1 := binary.Varint(b)
	if n1 <= 0 {
		return 0, 0, 0, errCorrupt
	}
	mask, n2 := binary.Uvarint(b[n1:])
	if n2 <= 0 || mask > 0xffff || uint16(mask)&unknownValues != 0 {
		return 0, 0, 0, errCorrupt
	}
	return created, uint16(mask), n1 + n2, nil
}

// decodeEntry fills the CreatedAt, Values and Set of e from b. b may be
// bbolt memory that dies with the transaction, so the values are copied,
// all in one string to spare an allocation per value.
func decodeEntry(e *channels.Entry, b []byte) error {
	created, set, n, err := decodeHeader(b)
	if err != nil {
		return err
	}
	e.CreatedAt = time.Unix(created, 0).UTC()
	e.Set = set
	e.Values = [channels.NumValues]string{}
	if set == 0 {
		if n != len(b) {
			return errCorrupt
		}
		return nil
	}
	return decodeValues(e, b[n:], string(b[n:]))
}

// decodeValues slices the values of e out of s, a copy of b.
func decodeValues(e *channels.Entry, b []byte, s string) error {
	off := 0
	for i := 0; i < channels.NumValues; i++ {
		if e.Set&(1<<i) == 0 {
			continue
		}
		l, n := binary.Uvarint(b[off:])
		if n <= 0 || l > uint64(len(b)-off-n) {
			return errCorrupt
		}
		off += n
		e.Values[i] = s[off : off+int(l)]
		off += int(l)
	}
	if off != len(b) {
		return errCorrupt
	}
	return nil
}
