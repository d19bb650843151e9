package cluster

import (
	"context"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Store is what the cluster layer reads from the shared database.
type Store interface {
	Gaps
	// LastIDs returns every channel's last entry id.
	LastIDs(ctx context.Context) (map[uint64]uint64, error)
}

// FromStore adapts a channels.Store. A store that implements Gaps itself
// (one range read) is used for gap fill; others are read an entry at a
// time, which the fill bound keeps short.
func FromStore(st channels.Store) Store { return storeAdapter{st} }

type storeAdapter struct{ st channels.Store }

func (a storeAdapter) LastIDs(ctx context.Context) (map[uint64]uint64, error) {
	list, err := a.st.ListChannels(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[uint64]uint64, len(list))
	for _, c := range list {
		m[c.ID] = c.LastEntryID
	}
	return m, nil
}

func (a storeAdapter) FillGap(ctx context.Context, channel, afterID, upTo uint64) ([]channels.Entry, error) {
	if g, ok := a.st.(Gaps); ok {
		return g.FillGap(ctx, channel, afterID, upTo)
	}
	var out []channels.Entry
	for id := afterID + 1; id <= upTo && id > afterID; id++ {
		e, err := a.st.FindEntry(ctx, channel, id)
		switch {
		case channels.ErrorCode(err) == channels.ENOTFOUND:
			continue // pruned, or the channel is gone
		case err != nil:
			return nil, err
		}
		out = append(out, *e)
	}
	return out, nil
}

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
