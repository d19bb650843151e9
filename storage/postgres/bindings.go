package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/channels"
)

var _ channels.BindingStore = (*DB)(nil)

const bindingColumns = "id, channel_id, topic, fields, status, latitude, longitude, elevation, created_at_path, created"

func scanBinding(row pgx.Row) (channels.Binding, error) {
	var (
		b       channels.Binding
		id, ch  int64
		fields  []string
		created time.Time
	)
	if err := row.Scan(&id, &ch, &b.Topic, &fields, &b.Status, &b.Latitude, &b.Longitude, &b.Elevation, &b.CreatedAt, &created); err != nil {
		return b, err
	}
	copy(b.Fields[:], fields)
	b.ID, b.ChannelID, b.Created = uint64(id), uint64(ch), created.UTC()
	return b, nil
}

// Bindings returns every binding, in ID order.
func (db *DB) Bindings(ctx context.Context) ([]channels.Binding, error) {
	rows, err := db.q(ctx).Query(ctx, "SELECT "+bindingColumns+" FROM bindings ORDER BY id")
	if err != nil {
		return nil, wrap("list bindings", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (channels.Binding, error) { return scanBinding(r) })
	return list, wrap("list bindings", err)
}

// CreateBinding checks b, assigns b.ID, stamps b.Created (whole seconds,
// the database's clock) and stores b; ENOTFOUND when its channel does
// not exist.
func (db *DB) CreateBinding(ctx context.Context, b *channels.Binding) error {
	if err := b.Validate(); err != nil {
		return err
	}
	return db.write(ctx, "create binding", func(tx pgx.Tx) ([]channels.Change, error) {
		// Checked (and the channel kept) before the INSERT, whose foreign
		// key only backs it up: a failed INSERT would use up an ID.
		var found bool
		err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1 FOR KEY SHARE)", clampID(b.ChannelID)).Scan(&found)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, channelNotFound(b.ChannelID)
		}
		var (
			id      int64
			created time.Time
		)
		err = tx.QueryRow(ctx, `INSERT INTO bindings (channel_id, topic, fields, status, latitude, longitude, elevation, created_at_path, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, date_trunc('second', coalesce($9::timestamptz, now()))) RETURNING id, created`,
			clampID(b.ChannelID), b.Topic, b.Fields[:], b.Status, b.Latitude, b.Longitude, b.Elevation, b.CreatedAt, db.nowArg()).Scan(&id, &created)
		if pgCode(err) == foreignKeyViolation {
			return nil, channelNotFound(b.ChannelID)
		} else if err != nil {
			return nil, err
		}
		b.ID, b.Created = uint64(id), created.UTC()
		return []channels.Change{{Kind: channels.ChangeBindings}}, nil
	})
}

// DeleteBinding removes binding id.
func (db *DB) DeleteBinding(ctx context.Context, id uint64) error {
	return db.write(ctx, "delete binding", func(tx pgx.Tx) ([]channels.Change, error) {
		tag, err := tx.Exec(ctx, "DELETE FROM bindings WHERE id = $1", clampID(id))
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 0 {
			return nil, channels.Errorf(channels.ENOTFOUND, "binding %d not found", id)
		}
		return []channels.Change{{Kind: channels.ChangeBindings}}, nil
	})
}
