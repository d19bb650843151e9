package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
)

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

// summaryOf is an admin import summary as the CLI prints it.
func summaryOf(s *channels.ImportSummary) *importSummary {
	return &importSummary{Channel: s.Channel, Entries: s.Entries, IDsKept: s.IDsKept, FirstID: s.FirstID, LastID: s.LastID,
		FirstAt: s.FirstAt, LastAt: s.LastAt, LastLine: s.LastLine}
}

// importCSV streams a CSV export into channel id, by the rules the web
// console's upload follows too (admin.ImportCSV).
func importCSV(ctx context.Context, a admin.Service, id uint64, in io.Reader) (*importSummary, error) {
	sum, err := admin.ImportCSV(ctx, a, id, in)
	if err != nil {
		return nil, err
	}
	return summaryOf(sum), nil
}
