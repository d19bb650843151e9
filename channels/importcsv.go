package channels

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// MaxImportRow bounds the bytes of one CSV row an import reads, so that a
// file without line breaks cannot make it hold gigabytes in memory. The
// longest valid row (12 values of 255 four-byte characters, every quote
// doubled) is well below it.
const MaxImportRow = 64 << 10

// colEntryID is the pseudo value index of the entry_id column.
const colEntryID = -2

// CSVImport reads a channel export in ThingSpeak's CSV layout: a header
// line naming the columns, then one entry per row. The columns may come
// in any order and any subset, but created_at is required: created_at,
// entry_id, field1..field8 (or 1..8), latitude (lat), longitude (long),
// elevation and status. Unknown or repeated columns are refused, because
// skipping a column would drop its data without a word. A UTF-8 byte
// order mark and CRLF line ends are accepted.
//
// Values are checked as a published payload's are (Limits, enabled
// fields, decimal location); an empty cell leaves its value unset. A row
// that sets no value is refused: it is not an entry this server would
// have stored.
type CSVImport struct {
	cr   *csv.Reader
	in   *boundedReader
	cols []int // per column: a value index, keyCreatedAt or colEntryID
	ch   *Channel
	lim  Limits
	line int
	// HasIDs reports whether the file has an entry_id column.
	HasIDs bool
}

// NewCSVImport reads the header of r and returns a reader of its rows for
// channel ch.
func NewCSVImport(r io.Reader, ch *Channel, lim Limits) (*CSVImport, error) {
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\ufeff")) {
		br.Discard(3)
	}
	in := &boundedReader{r: br}
	c := &CSVImport{cr: csv.NewReader(in), in: in, ch: ch, lim: lim.withDefaults()}
	c.cr.ReuseRecord = true
	header, err := c.read()
	if err == io.EOF {
		return nil, importError(1, "the file is empty; it needs a header line such as created_at,entry_id,field1")
	} else if err != nil {
		return nil, err
	}
	seen := make(map[int]bool)
	hasCreated := false
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(name))
		idx := keyIndex(name)
		if name == "entry_id" {
			idx = colEntryID
			c.HasIDs = true
		}
		switch {
		case idx == -1:
			return nil, importError(1, "column %d, %s, is not one of created_at, entry_id, field1..field8, latitude, longitude, elevation, status", i+1, quoteShort(name))
		case seen[idx]:
			return nil, importError(1, "column %s appears twice", quoteShort(name))
		case idx == keyCreatedAt:
			hasCreated = true
		}
		seen[idx] = true
		c.cols = append(c.cols, idx)
	}
	if !hasCreated {
		return nil, importError(1, "the header has no created_at column; each row needs its time")
	}
	c.cr.FieldsPerRecord = len(header)
	return c, nil
}

// Line returns the line on which the row Next returned last begins.
func (c *CSVImport) Line() int { return c.line }

// Next returns the entry of the next row, with ChannelID set, ID the row's
// entry_id (0 without that column) and CreatedAt its created_at. At the
// end of the file it returns io.EOF. Errors name the line.
func (c *CSVImport) Next() (Entry, error) {
	rec, err := c.read()
	if err != nil {
		return Entry{}, err
	}
	e := Entry{ChannelID: c.ch.ID}
	for i, v := range rec {
		switch idx := c.cols[i]; idx {
		case colEntryID:
			v = strings.TrimSpace(v)
			id, err := strconv.ParseUint(v, 10, 64)
			if err != nil || id == 0 {
				return Entry{}, importError(c.line, "entry_id %s is not a whole number from 1", quoteShort(v))
			}
			e.ID = id
		case keyCreatedAt:
			t, err := ParseImportTime(v)
			if err != nil {
				return Entry{}, importError(c.line, "%s", ErrorMessage(err))
			}
			e.CreatedAt = t
		default:
			if err := setValue(&e, c.ch, idx, v, c.lim); err != nil {
				return Entry{}, importError(c.line, "%s", ErrorMessage(err))
			}
		}
	}
	if !e.HasValues() {
		return Entry{}, importError(c.line, "the row sets no field, location or status")
	}
	return e, nil
}

// read reads one record and notes its line.
func (c *CSVImport) read() ([]string, error) {
	c.in.n = 0
	rec, err := c.cr.Read()
	if err == io.EOF {
		return nil, err
	}
	if err != nil {
		var pe *csv.ParseError
		switch {
		case errors.Is(err, errRowTooLong):
			return nil, importError(c.line+1, "a row is longer than %d bytes", MaxImportRow)
		case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount):
			return nil, importError(pe.StartLine, "the row has a different number of columns than the header")
		case errors.As(err, &pe):
			return nil, importError(pe.Line, "malformed CSV: %v", pe.Err)
		}
		return nil, err
	}
	c.line, _ = c.cr.FieldPos(0)
	return rec, nil
}

var errRowTooLong = errors.New("row too long")

// boundedReader fails once more than MaxImportRow bytes (plus a buffer's
// read-ahead) are read for one row; n restarts at each row.
type boundedReader struct {
	r io.Reader
	n int
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n > MaxImportRow+8192 {
		return 0, errRowTooLong
	}
	n, err := b.r.Read(p)
	b.n += n
	return n, err
}

// ParseImportTime parses a created_at of an export: ThingSpeak's CSV
// form "2021-02-18 21:46:23 UTC" (or with a numeric zone such as
// "2021-02-18 22:46:23 +0100"), its web export's "2023-01-06T16:44:16+00:00",
// and every form a payload's created_at may take (no zone means UTC).
func ParseImportTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, ok := strings.CutSuffix(s, " UTC"); ok {
		s = t
	} else if len(s) > 20 && s[19] == ' ' && (s[20] == '+' || s[20] == '-') {
		s = s[:19] + s[20:]
	}
	return parseCreatedAt(s)
}

func importError(line int, format string, args ...any) error {
	return &Error{Code: EINVALID, Message: fmt.Sprintf("line %d: ", line) + fmt.Sprintf(format, args...), Err: ErrPayload}
}

// CheckEntry checks the values of an entry from elsewhere (an import sent
// over the admin socket, a page of another server) by the rules a
// payload's values follow: valid text within lim, enabled fields, decimal
// location. It does not change e.
func CheckEntry(ch *Channel, e *Entry, lim Limits) error {
	lim = lim.withDefaults()
	if e.Set&^(1<<NumValues-1) != 0 {
		return payloadError("the entry sets unknown values (mask %#x)", e.Set)
	}
	var scratch Entry
	for i := 0; i < NumValues; i++ {
		v, ok := e.Value(i)
		if !ok {
			continue
		}
		if v == "" || (i >= Latitude && i <= Elevation && strings.TrimSpace(v) != v) {
			return payloadError("%s is set but empty or padded", ValueName(i))
		}
		if err := setValue(&scratch, ch, i, v, lim); err != nil {
			return err
		}
	}
	if !e.HasValues() {
		return payloadError("the entry sets no field, location or status")
	}
	return nil
}

// ImportSummary is what an import stored.
type ImportSummary struct {
	Channel uint64
	Entries int
	// IDsKept: the entries kept the source's entry_ids (the channel had
	// never had an entry), else they were numbered on after its last.
	IDsKept         bool
	FirstID, LastID uint64
	FirstAt, LastAt time.Time
	LastLine        int // the last stored row's line in a file, else 0
}

// ImportError is an import's refusal with what was stored before it (in
// whole batches). Its code is Err's.
type ImportError struct {
	Err     error
	Stored  string         // what was stored, as a clause ("nothing was stored")
	Summary *ImportSummary // what was stored
}

func (e *ImportError) Error() string { return e.Err.Error() + "; " + e.Stored }
func (e *ImportError) Unwrap() error { return e.Err }
