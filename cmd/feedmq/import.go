package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
)

// importBatchBytes bounds the estimated JSON size of one batch, so that a
// batch of long values still fits one admin socket request (1 MiB).
const importBatchBytes = 512 << 10

func newFeedImportCommand() *cobra.Command {
	var asJSONFlag bool
	cmd := &cobra.Command{
		Use:   "import CHANNEL_ID FILE.csv",
		Short: "Import entries from a ThingSpeak CSV export",
		Long: `Import entries from a CSV file in ThingSpeak's export layout: a header line
with created_at and any of entry_id, field1..field8, latitude, longitude,
elevation and status, in any order; created_at as "2021-02-18 21:46:23 UTC"
or "2023-01-06T16:44:16+00:00". FILE may be - for standard input.

Each entry keeps its created_at. Into a channel that has never had entries
(or was cleared) the entries keep their entry_id, and the channel's last
entry_id becomes the highest; into any other channel they are numbered on
after its last entry. Rows must be oldest first, as ThingSpeak exports
them, and none may be older than the channel's newest entry. Values follow
the rules of a published payload, and every field that has a value must be
enabled on the channel.

The file is read as a stream and stored in batches of up to 2000 entries,
each all or nothing. When a row is refused, the batches before it stay
stored: the error names the row's line and what was stored. Subscribers
are not sent imported entries. Works with and without a running server.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("%s takes a channel ID and a CSV file, e.g. `%s 1 feeds.csv`", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("channel", args[0])
			if err != nil {
				return err
			}
			var in io.Reader = cmd.InOrStdin()
			if args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				sum, err := importCSV(ctx, a, id, in)
				if err != nil {
					return withHint(err, channelListHint)
				}
				return printImport(cmd.OutOrStdout(), asJSONFlag, sum, "")
			})
		},
	}
	cmd.Flags().BoolVar(&asJSONFlag, "json", false, "print JSON instead of a sentence")
	return cmd
}

// importSummary is what an import or migration stored.
type importSummary struct {
	Channel  uint64    `json:"channel"`
	Entries  int       `json:"entries"`
	IDsKept  bool      `json:"ids_kept"`
	FirstID  uint64    `json:"first_id,omitempty"`
	LastID   uint64    `json:"last_id,omitempty"`
	FirstAt  time.Time `json:"-"`
	LastAt   time.Time `json:"-"`
	First    string    `json:"first_created_at,omitempty"`
	Last     string    `json:"last_created_at,omitempty"`
	Pages    int       `json:"pages,omitempty"`
	LastLine int       `json:"-"` // of the last stored row, for messages
}

func printImport(w io.Writer, asJSON bool, s *importSummary, verb string) error {
	if s.Entries > 0 {
		s.First, s.Last = formatJSONTime(s.FirstAt), formatJSONTime(s.LastAt)
	}
	if asJSON {
		return writeJSON(w, s)
	}
	if verb == "" {
		verb = "Imported"
	}
	if s.Entries == 0 {
		_, err := fmt.Fprintf(w, "%s no entries into channel %d: there were none.\n", verb, s.Channel)
		return err
	}
	how := "numbered on after the channel's last entry"
	if s.IDsKept {
		how = "entry IDs kept"
	}
	_, err := fmt.Fprintf(w, "%s %d entries into channel %d (%s): entries %d to %d, %s to %s.\n",
		verb, s.Entries, s.Channel, how, s.FirstID, s.LastID, formatTime(s.FirstAt), formatTime(s.LastAt))
	return err
}

// importer sends entries to a channel in batches, checking the order
// rules first so that a refusal names the row.
type importer struct {
	a     admin.Service
	ch    *channels.Channel
	sum   importSummary
	prevT time.Time // created_at of the last entry taken (or the channel's newest)
	prevW string    // what prevT belongs to, for messages
	prevI uint64    // entry_id of the last entry taken, keeping IDs

	batch []channels.Entry
	where []string // per batch entry: where it came from ("line 5")
	lines []int    // per batch entry: its line, 0 for none
	bytes int
}

// newImporter reads the channel and decides whether IDs are kept: only
// when the source has them and the channel never had an entry.
func newImporter(ctx context.Context, a admin.Service, id uint64, sourceIDs bool) (*importer, error) {
	ch, err := a.Channel(ctx, id)
	if err != nil {
		return nil, err
	}
	im := &importer{a: a, ch: ch, sum: importSummary{Channel: id, IDsKept: sourceIDs && ch.LastEntryID == 0}}
	if ch.LastEntryID > 0 {
		last, err := a.Entries(ctx, id, channels.EntryFilter{Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(last) == 1 {
			im.prevT = last[0].CreatedAt
			im.prevW = fmt.Sprintf("channel %d's newest entry (%d, %s)", id, last[0].ID, formatTime(last[0].CreatedAt))
		}
	}
	return im, nil
}

// add takes one entry from where (line is its line, or 0) and sends the
// batch when it is full.
func (im *importer) add(ctx context.Context, e channels.Entry, where string, line int) error {
	if !im.prevT.IsZero() && e.CreatedAt.Before(im.prevT) {
		hint := ""
		if im.sum.Entries == 0 && len(im.batch) == 1 {
			hint = " (the source seems to be newest first: sort it oldest first)"
		}
		return im.refused(fmt.Errorf("%s: created_at %s is older than %s; entries must be oldest first and not older than the channel's newest entry%s",
			where, formatTime(e.CreatedAt), im.prevW, hint))
	}
	if im.sum.IDsKept {
		if e.ID <= im.prevI {
			return im.refused(fmt.Errorf("%s: entry_id %d is not above the one before it (%d); IDs must rise", where, e.ID, im.prevI))
		}
		im.prevI = e.ID
	} else {
		e.ID = 0
	}
	e.ChannelID = im.ch.ID
	if err := channels.CheckEntry(im.ch, &e, channels.Limits{}); err != nil {
		return im.refused(fmt.Errorf("%s: %s", where, channels.ErrorMessage(err)))
	}
	im.prevT, im.prevW = e.CreatedAt, where+" ("+formatTime(e.CreatedAt)+")"
	size := 150
	for i := 0; i < channels.NumValues; i++ {
		if v, ok := e.Value(i); ok {
			size += 6*len(v) + 16 // json may spell a byte as \u003c
		}
	}
	if len(im.batch) > 0 && (len(im.batch) >= admin.MaxImportBatch || im.bytes+size > importBatchBytes) {
		if err := im.flush(ctx); err != nil {
			return err
		}
	}
	im.batch, im.where, im.lines = append(im.batch, e), append(im.where, where), append(im.lines, line)
	im.bytes += size
	return nil
}

// flush sends the batch.
func (im *importer) flush(ctx context.Context) error {
	if len(im.batch) == 0 {
		return nil
	}
	_, err := im.a.ImportEntries(ctx, im.ch.ID, im.batch, im.sum.IDsKept)
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
func (im *importer) refused(err error) error {
	var stored string
	switch {
	case im.sum.Entries == 0:
		stored = "nothing was stored"
	default:
		stored = fmt.Sprintf("%d entries before it were stored (entries %d to %d, up to %s)",
			im.sum.Entries, im.sum.FirstID, im.sum.LastID, formatTime(im.sum.LastAt))
		if im.sum.LastLine > 0 {
			stored = fmt.Sprintf("%d entries before it were stored (entries %d to %d, through line %d)",
				im.sum.Entries, im.sum.FirstID, im.sum.LastID, im.sum.LastLine)
		}
	}
	return &importError{err: err, stored: stored}
}

// importError is a refusal with what was stored before it.
type importError struct {
	err    error
	stored string
}

func (e *importError) Error() string { return e.err.Error() + "; " + e.stored }
func (e *importError) Unwrap() error { return e.err }

// importCSV streams a CSV export into channel id.
func importCSV(ctx context.Context, a admin.Service, id uint64, in io.Reader) (*importSummary, error) {
	ch, err := a.Channel(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := channels.NewCSVImport(in, ch, channels.Limits{})
	if err != nil {
		return nil, err
	}
	im, err := newImporter(ctx, a, id, r.HasIDs)
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
		if err := im.add(ctx, e, fmt.Sprintf("line %d", r.Line()), r.Line()); err != nil {
			return nil, err
		}
	}
	if err := im.flush(ctx); err != nil {
		return nil, err
	}
	return &im.sum, nil
}
