package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
)

func newFeedCommand() *cobra.Command {
	cmd := newGroupCommand("feed", "Read, import and migrate channel feeds")
	cmd.AddCommand(newFeedGetCommand(), newFeedImportCommand(), newFeedMigrateCommand())
	return cmd
}

type feedGetOptions struct {
	results int
	field   int
	format  string
}

func (o *feedGetOptions) check() error {
	if o.results < 0 {
		return fmt.Errorf("invalid --results %d: give a number of entries, or 0 for all", o.results)
	}
	if o.field < 0 || o.field > channels.NumFields {
		return fmt.Errorf("invalid --field %d: field number must be from 1 to %d", o.field, channels.NumFields)
	}
	if o.format != "json" && o.format != "csv" {
		return fmt.Errorf("invalid --format %q: want json or csv", o.format)
	}
	return nil
}

func newFeedGetCommand() *cobra.Command {
	var o feedGetOptions
	cmd := &cobra.Command{
		Use:   "get CHANNEL_ID [--results N] [--field N] [--format json|csv]",
		Short: "Print the newest entries of a channel, oldest first",
		Long: `Print the newest entries of a channel, oldest first. JSON is an array of
entry objects as subscribers receive them; CSV has a created_at, entry_id and
one column per enabled field (or only --field N), plus latitude, longitude,
elevation and status when an entry sets them.`,
		Args:    oneID("channel"),
		PreRunE: func(*cobra.Command, []string) error { return o.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("channel", args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				return withHint(o.run(ctx, cmd.OutOrStdout(), a, id), channelListHint)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.results, "results", 100, "number of newest entries; 0 for all")
	f.IntVar(&o.field, "field", 0, "only entries that set field N (1 to 8)")
	f.StringVar(&o.format, "format", "json", "output format: json or csv")
	return cmd
}

func (o *feedGetOptions) run(ctx context.Context, w io.Writer, a admin.Service, id uint64) error {
	c, err := a.Channel(ctx, id)
	if err != nil {
		return err
	}
	es, err := a.Entries(ctx, id, channels.EntryFilter{Limit: o.results, Field: o.field})
	if err != nil {
		return err
	}
	if o.format == "csv" {
		return writeCSV(w, c, o.field, es)
	}
	return writeEntriesJSON(w, es)
}

// writeEntriesJSON writes a JSON array with one entry per line.
func writeEntriesJSON(w io.Writer, es []channels.Entry) error {
	b := []byte{'['}
	for i := range es {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		b = es[i].AppendJSON(b)
	}
	if len(es) > 0 {
		b = append(b, '\n')
	}
	b = append(b, ']', '\n')
	_, err := w.Write(b)
	return err
}

// writeCSV writes entries in ThingSpeak's CSV layout: created_at as
// "YYYY-MM-DD HH:MM:SS UTC", entry_id, then the value columns, with
// values a spreadsheet would run as formulas quoted (channels.CSVCell).
func writeCSV(w io.Writer, c *channels.Channel, field int, es []channels.Entry) error {
	cols := csvColumns(c, field, es)
	cw := csv.NewWriter(w)
	header := []string{"created_at", "entry_id"}
	for _, i := range cols {
		header = append(header, channels.ValueName(i))
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	for i := range es {
		e := &es[i]
		row := []string{formatTime(e.CreatedAt), strconv.FormatUint(e.ID, 10)}
		for _, col := range cols {
			v, _ := e.Value(col)
			row = append(row, channels.CSVCell(v))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvColumns returns the value indexes to print: the channel's enabled
// fields (or just field), then the location and status values that any
// entry sets.
func csvColumns(c *channels.Channel, field int, es []channels.Entry) []int {
	var cols []int
	for n := 1; n <= channels.NumFields; n++ {
		if (field == 0 && c.FieldEnabled(n)) || n == field {
			cols = append(cols, n-1)
		}
	}
	var set uint16
	for i := range es {
		set |= es[i].Set
	}
	for i := channels.NumFields; i < channels.NumValues; i++ {
		if set&(1<<i) != 0 {
			cols = append(cols, i)
		}
	}
	return cols
}
