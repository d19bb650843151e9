package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/internal/storetest"
	"github.com/jackc/pgx/v5"
)

// feedView is a DB seen as a channels.Store for the append contract,
// which reads only a channel's ID and LastEntryID of the channel methods;
// the channel settings live in another file's migration and methods.
type feedView struct{ *DB }

var errNotFeeds = errors.New("not part of the feed store under test")

func (v feedView) FindChannel(ctx context.Context, id uint64) (*channels.Channel, error) {
	var last int64
	err := v.pool.QueryRow(ctx, "SELECT last_entry_id FROM channels WHERE id = $1", clampID(id)).Scan(&last)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, channelNotFound(id)
	} else if err != nil {
		return nil, err
	}
	return &channels.Channel{ID: id, LastEntryID: uint64(last)}, nil
}

func (feedView) CreateChannel(context.Context, *channels.Channel) error { return errNotFeeds }
func (feedView) UpdateChannel(context.Context, *channels.Channel) error { return errNotFeeds }
func (feedView) DeleteChannel(context.Context, uint64) error            { return errNotFeeds }
func (feedView) ListChannels(context.Context) ([]*channels.Channel, error) {
	return nil, errNotFeeds
}

// The PostgreSQL store keeps the append contract through two DBs on one
// database, as two feedmq processes sharing it.
func TestAppendContract(t *testing.T) {
	url := pgtest.New(t)
	a, b := openTest(t, url, Options{}), openTest(t, url, Options{})
	ch := addChannel(t, a, 0, 0, 0)
	storetest.CheckAppendContract(t, []channels.Store{feedView{a}, feedView{b}}, ch, ch+1)
}
