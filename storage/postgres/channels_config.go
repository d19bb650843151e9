package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/channels"
)

// channelColumns are the columns scanChannel reads, in its order.
const channelColumns = `id, name, description, public, fields, write_key, read_key,
	rate_limit_us, max_entries, max_age_us, latitude, longitude, elevation,
	metadata, tags, url, created_at, updated_at, last_entry_id`

func scanChannel(row pgx.Row) (*channels.Channel, error) {
	var (
		c                  channels.Channel
		id, rate, max, age int64
		last               int64
		fields, tags       []string
		created, updated   time.Time
	)
	err := row.Scan(&id, &c.Name, &c.Description, &c.Public, &fields, &c.WriteKey, &c.ReadKey,
		&rate, &max, &age, &c.Latitude, &c.Longitude, &c.Elevation,
		&c.Metadata, &tags, &c.URL, &created, &updated, &last)
	if err != nil {
		return nil, err
	}
	if len(fields) != channels.NumFields {
		return nil, fmt.Errorf("channel %d has %d field labels", id, len(fields))
	}
	copy(c.Fields[:], fields)
	c.ID, c.LastEntryID, c.MaxEntries = uint64(id), uint64(last), uint64(max)
	c.RateLimit, c.MaxAge = time.Duration(rate)*time.Microsecond, time.Duration(age)*time.Microsecond
	if len(tags) > 0 {
		c.Tags = tags // none stays nil, as the other store reads it
	}
	c.CreatedAt, c.UpdatedAt = created.UTC(), updated.UTC()
	return &c, nil
}

// microsUp is d in whole microseconds, as the columns keep it, rounded up
// so that a limit under a microsecond does not become none (down only
// where up would pass the largest Duration).
func microsUp(d time.Duration) int64 {
	us := d.Microseconds()
	if d%time.Microsecond != 0 && us < math.MaxInt64/1000 {
		us++
	}
	return us
}

// settingArgs are the values of the settings columns, in the order of
// the statements below ($2 on; $1 is the ID).
func settingArgs(c *channels.Channel) []any {
	tags := c.Tags
	if tags == nil {
		tags = []string{}
	}
	return []any{c.Name, c.Description, c.Public, c.Fields[:], c.WriteKey, c.ReadKey,
		microsUp(c.RateLimit), int64(min(c.MaxEntries, 1<<63-1)), microsUp(c.MaxAge),
		c.Latitude, c.Longitude, c.Elevation, c.Metadata, tags, c.URL}
}

const settingsSet = `name = $2, description = $3, public = $4, fields = $5, write_key = $6, read_key = $7,
	rate_limit_us = $8, max_entries = $9, max_age_us = $10, latitude = $11, longitude = $12,
	elevation = $13, metadata = $14, tags = $15, url = $16`

const settingsInsert = `name, description, public, fields, write_key, read_key,
	rate_limit_us, max_entries, max_age_us, latitude, longitude, elevation, metadata, tags, url`

// CreateChannel checks c, assigns c.ID and stores c with an empty feed.
// CreatedAt and UpdatedAt are the database's clock.
func (db *DB) CreateChannel(ctx context.Context, c *channels.Channel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return db.write(ctx, "create channel", func(tx pgx.Tx) ([]channels.Change, error) {
		args := append(settingArgs(c), db.nowArg())
		row := tx.QueryRow(ctx, `INSERT INTO channels (`+settingsInsert+`, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, coalesce($16::timestamptz, now()), coalesce($16::timestamptz, now()))
			RETURNING `+channelColumns, args...)
		got, err := scanChannel(row)
		if err != nil {
			return nil, err
		}
		c.ID, c.LastEntryID, c.CreatedAt, c.UpdatedAt = got.ID, 0, got.CreatedAt, got.UpdatedAt
		return []channels.Change{{Kind: channels.ChangeChannel, ID: c.ID}}, nil
	})
}

// UpdateChannel replaces the settings of channel c.ID; CreatedAt, the
// feed and LastEntryID stay, and c is refreshed to mirror the row.
func (db *DB) UpdateChannel(ctx context.Context, c *channels.Channel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return db.write(ctx, "update channel", func(tx pgx.Tx) ([]channels.Change, error) {
		args := append(append([]any{clampID(c.ID)}, settingArgs(c)...), db.nowArg())
		row := tx.QueryRow(ctx, `UPDATE channels SET `+settingsSet+`, updated_at = coalesce($17::timestamptz, now())
			WHERE id = $1 RETURNING `+channelColumns, args...)
		got, err := scanChannel(row)
		if err == pgx.ErrNoRows {
			return nil, channelNotFound(c.ID)
		} else if err != nil {
			return nil, err
		}
		c.CreatedAt, c.UpdatedAt, c.LastEntryID = got.CreatedAt, got.UpdatedAt, got.LastEntryID
		return []channels.Change{{Kind: channels.ChangeChannel, ID: c.ID}}, nil
	})
}

// DeleteChannel removes the channel and, by the foreign keys, its feed,
// its bindings and every grant to it, in one transaction.
func (db *DB) DeleteChannel(ctx context.Context, id uint64) error {
	return db.write(ctx, "delete channel", func(tx pgx.Tx) ([]channels.Change, error) {
		// The devices that lose a grant change too: others reload them.
		rows, err := tx.Query(ctx, "SELECT device_id FROM grants WHERE channel_id = $1 ORDER BY device_id", clampID(id))
		if err != nil {
			return nil, err
		}
		devices, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, err
		}
		var bound bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM bindings WHERE channel_id = $1)", clampID(id)).Scan(&bound); err != nil {
			return nil, err
		}
		tag, err := tx.Exec(ctx, "DELETE FROM channels WHERE id = $1", clampID(id))
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 0 {
			return nil, channelNotFound(id)
		}
		changes := []channels.Change{{Kind: channels.ChangeChannel, ID: id, Deleted: true}}
		for _, d := range devices {
			changes = append(changes, channels.Change{Kind: channels.ChangeDevice, ID: uint64(d)})
		}
		if bound {
			changes = append(changes, channels.Change{Kind: channels.ChangeBindings})
		}
		return changes, nil
	})
}

// FindChannel returns channel id with LastEntryID filled in.
func (db *DB) FindChannel(ctx context.Context, id uint64) (*channels.Channel, error) {
	c, err := scanChannel(db.q(ctx).QueryRow(ctx, "SELECT "+channelColumns+" FROM channels WHERE id = $1", clampID(id)))
	if err == pgx.ErrNoRows {
		return nil, channelNotFound(id)
	}
	return c, wrap("find channel", err)
}

// ListChannels returns all channels ordered by ID.
func (db *DB) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	rows, err := db.q(ctx).Query(ctx, "SELECT "+channelColumns+" FROM channels ORDER BY id")
	if err != nil {
		return nil, wrap("list channels", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*channels.Channel, error) { return scanChannel(r) })
	return list, wrap("list channels", err)
}
