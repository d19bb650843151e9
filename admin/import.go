package admin

import (
	"context"

	"github.com/feedmq/feedmq/channels"
)

// MaxImportBatch is the most entries one ImportEntries call takes: one
// transaction that holds appends up while it commits, and one admin
// socket request, so it stays small. Callers send a file in batches.
const MaxImportBatch = 2000

// ImportResult says what one ImportEntries call stored.
type ImportResult struct {
	Entries int    `json:"entries"`
	FirstID uint64 `json:"first_id"`
	LastID  uint64 `json:"last_id"`
}

// ImportEntries checks each entry's values by the payload rules (valid
// text of at most 255 characters, enabled fields, decimal location) and
// stores the batch in one transaction: all or nothing. Each entry keeps
// its created_at; with keepIDs its entry_id too, which must rise above
// the channel's last one, else the entries are numbered on from it.
// Entries must come in time order, none older than the channel's newest.
// Subscribers are not told of imported entries: they are history.
func (l *Local) ImportEntries(ctx context.Context, channelID uint64, es []channels.Entry, keepIDs bool) (*ImportResult, error) {
	if len(es) == 0 {
		return &ImportResult{}, nil
	}
	if len(es) > MaxImportBatch {
		return nil, channels.Errorf(channels.ELIMIT, "an import batch holds at most %d entries, not %d", MaxImportBatch, len(es))
	}
	ch, err := l.Channels.FindChannel(ctx, channelID)
	if err != nil {
		return nil, err
	}
	for i := range es {
		es[i].ChannelID = channelID
		if err := channels.CheckEntry(ch, &es[i], channels.Limits{}); err != nil {
			return nil, channels.Errorf(channels.EINVALID, "entry %d of the batch: %s", i+1, channels.ErrorMessage(err))
		}
	}
	if err := l.db.ImportEntries(ctx, channelID, es, keepIDs); err != nil {
		return nil, err
	}
	return &ImportResult{Entries: len(es), FirstID: es[0].ID, LastID: es[len(es)-1].ID}, nil
}
