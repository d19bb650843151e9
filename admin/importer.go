package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// importBatchBytes bounds the estimated JSON size of one batch, so that a
// batch of long values stays a modest admin socket request.
const importBatchBytes = 512 << 10

// Importer sends entries from elsewhere (a CSV export, another server's
// pages) to a channel through a Service in batches of at most
// MaxImportBatch, each all or nothing. It checks the order rules before
// sending, so that a refusal names the row; the CLI and the web console
// import through it alike.
type Importer struct {
	s     Service
	ch    *channels.Channel
	sum   channels.ImportSummary
	prevT time.Time // created_at of the last entry taken (or the channel's newest)
	prevW string    // what prevT belongs to, for messages
	prevI uint64    // entry_id of the last entry taken, keeping IDs

	batch []channels.Entry
	where []string // per batch entry: where it came from ("line 5")
	lines []int    // per batch entry: its line, 0 for none
	bytes int
}

// NewImporter reads channel id and decides whether IDs are kept: only
// when the source has them (sourceIDs) and the channel never had an
// entry (or was cleared).
func NewImporter(ctx context.Context, s Service, id uint64, sourceIDs bool) (*Importer, error) {
	ch, err := s.Channel(ctx, id)
	if err != nil {
		return nil, err
	}
	im := &Importer{s: s, ch: ch, sum: channels.ImportSummary{Channel: id, IDsKept: sourceIDs && ch.LastEntryID == 0}}
	if ch.LastEntryID > 0 {
		last, err := s.Entries(ctx, id, channels.EntryFilter{Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(last) == 1 {
			im.prevT = last[0].CreatedAt
			im.prevW = fmt.Sprintf("channel %d's newest entry (%d, %s)", id, last[0].ID, importTime(last[0].CreatedAt))
		}
	}
	return im, nil
}

// Summary is what was stored so far.
func (im *Importer) Summary() *channels.ImportSummary {
	s := im.sum
	return &s
}

// Add takes one entry from where (line is its line, or 0) and sends the
// batch when it is full. Entries must come oldest first, none older than
// the channel's newest; kept IDs must rise.
func (im *Importer) Add(ctx context.Context, e channels.Entry, where string, line int) error {
	if !im.prevT.IsZero() && e.CreatedAt.Before(im.prevT) {
		hint := ""
		if im.sum.Entries == 0 && len(im.batch) == 1 {
			hint = " (the source seems to be newest first: sort it oldest first)"
		}
		return im.refused(channels.Errorf(channels.EINVALID, "%s: created_at %s is older than %s; entries must be oldest first and not older than the channel's newest entry%s",
			where, importTime(e.CreatedAt), im.prevW, hint))
	}
	if im.sum.IDsKept {
		if e.ID <= im.prevI {
			return im.refused(channels.Errorf(channels.EINVALID, "%s: entry_id %d is not above the one before it (%d); IDs must rise", where, e.ID, im.prevI))
		}
		im.prevI = e.ID
	} else {
		e.ID = 0
	}
	e.ChannelID = im.ch.ID
	if err := channels.CheckEntry(im.ch, &e, channels.Limits{}); err != nil {
		return im.refused(channels.Errorf(channels.EINVALID, "%s: %s", where, channels.ErrorMessage(err)))
	}
	im.prevT, im.prevW = e.CreatedAt, where+" ("+importTime(e.CreatedAt)+")"
	size := 150
	for i := 0; i < channels.NumValues; i++ {
		if v, ok := e.Value(i); ok {
			size += 6*len(v) + 16 // json may spell a byte as \u003c
		}
	}
	if len(im.batch) > 0 && (len(im.batch) >= MaxImportBatch || im.bytes+size > importBatchBytes) {
		if err := im.Flush(ctx); err != nil {
			return err
		}
	}
	im.batch, im.where, im.lines = append(im.batch, e), append(im.where, where), append(im.lines, line)
	im.bytes += size
	return nil
}

// Flush sends the batch.
func (im *Importer) Flush(ctx context.Context) error {
	if len(im.batch) == 0 {
		return nil
	}
	_, err := im.s.ImportEntries(ctx, im.ch.ID, im.batch, im.sum.IDsKept)
	if err != nil {
		return im.refused(fmt.Errorf("the batch from %s to %s was refused: %w", im.where[0], im.where[len(im.where)-1], err))
	}
	if im.sum.Entries == 0 {
		im.sum.FirstID, im.sum.FirstAt = im.batch[0].ID, im.batch[0].CreatedAt
	}
	last := &im.batch[len(im.batch)-1]
	im.sum.LastID, im.sum.LastAt = last.ID, last.CreatedAt
	im.sum.Entries += len(im.batch)
	im.sum.LastLine = im.lines[len(im.lines)-1]
	im.batch, im.where, im.lines, im.bytes = im.batch[:0], im.where[:0], im.lines[:0], 0
	return nil
}

// refused adds to err what is stored so far. The channels error code of
// err, if any, is kept.
func (im *Importer) refused(err error) error {
	var stored string
	switch {
	case im.sum.Entries == 0:
		stored = "nothing was stored"
	case im.sum.LastLine > 0:
		stored = fmt.Sprintf("%d entries before it were stored (entries %d to %d, through line %d)",
			im.sum.Entries, im.sum.FirstID, im.sum.LastID, im.sum.LastLine)
	default:
		stored = fmt.Sprintf("%d entries before it were stored (entries %d to %d, up to %s)",
			im.sum.Entries, im.sum.FirstID, im.sum.LastID, importTime(im.sum.LastAt))
	}
	return &channels.ImportError{Err: err, Stored: stored, Summary: im.Summary()}
}

// ImportCSV streams a CSV export in ThingSpeak's layout (see
// channels.CSVImport) into channel id through s. A refused row or a
// failed read ends it with a *channels.ImportError that names the line and says
// what was stored before it (whole batches).
func ImportCSV(ctx context.Context, s Service, id uint64, in io.Reader) (*channels.ImportSummary, error) {
	ch, err := s.Channel(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := channels.NewCSVImport(in, ch, channels.Limits{})
	if err != nil {
		return nil, err
	}
	im, err := NewImporter(ctx, s, id, r.HasIDs)
	if err != nil {
		return nil, err
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			var ce *channels.Error
			if errors.As(err, &ce) {
				return nil, im.refused(err)
			}
			return nil, im.refused(fmt.Errorf("read the file: %w", err))
		}
		if err := im.Add(ctx, e, fmt.Sprintf("line %d", r.Line()), r.Line()); err != nil {
			return nil, err
		}
	}
	if err := im.Flush(ctx); err != nil {
		return nil, err
	}
	return im.Summary(), nil
}

// ImportCSV streams a CSV export into channel id (see the function
// ImportCSV): the web console's upload.
func (l *Local) ImportCSV(ctx context.Context, id uint64, in io.Reader) (*channels.ImportSummary, error) {
	return ImportCSV(ctx, l, id, in)
}

// importTime is a time in messages, as ThingSpeak's CSV writes it.
func importTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
