package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage/dbcopy"
)

var _ dbcopy.Destination = (*DB)(nil)

// The methods below serve "feedmq db copy": they store what another
// database holds under the IDs it has there. A loaded channel, device or
// binding is announced like a created one, so running processes learn of
// it; loaded entries are not (imports are silent).

// maxLoadedID bounds kept entry IDs as the bbolt store does: above it
// appends would overflow, and browsers lose exactness in JSON numbers.
const maxLoadedID = 1<<53 - 1

// raiseSequence moves the ID sequence of table to at least id, so that
// the next ID it hands out is above every loaded one.
func raiseSequence(ctx context.Context, q querier, table string, id uint64) error {
	if id == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `SELECT setval(s, $2) FROM (SELECT pg_get_serial_sequence($1, 'id')::regclass AS s) AS x
		WHERE coalesce(pg_sequence_last_value(s), 0) < $2`, table, clampID(id))
	return err
}

// LoadChannel stores c under c.ID with its CreatedAt and UpdatedAt and an
// empty feed.
func (db *DB) LoadChannel(ctx context.Context, c *channels.Channel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.ID == 0 || c.ID > 1<<63-1 {
		return channels.Errorf(channels.EINVALID, "a loaded channel needs its ID")
	}
	return db.write(ctx, "load channel", func(tx pgx.Tx) ([]channels.Change, error) {
		args := append([]any{int64(c.ID)}, settingArgs(c)...)
		args = append(args, c.CreatedAt, c.UpdatedAt)
		_, err := tx.Exec(ctx, `INSERT INTO channels (id, `+settingsInsert+`, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`, args...)
		if pgCode(err) == uniqueViolation {
			return nil, channels.Errorf(channels.ECONFLICT, "channel %d exists", c.ID)
		} else if err != nil {
			return nil, err
		}
		if err := raiseSequence(ctx, tx, "channels", c.ID); err != nil {
			return nil, err
		}
		return []channels.Change{{Kind: channels.ChangeChannel, ID: c.ID}}, nil
	})
}

// LoadEntries stores es, entries of channelID, under their own IDs, which
// must rise and lie above the channel's last entry_id, all or none; the
// last becomes the channel's last entry_id.
func (db *DB) LoadEntries(ctx context.Context, channelID uint64, es []channels.Entry) error {
	for i := range es {
		e := &es[i]
		switch {
		case e.ChannelID != channelID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch is for channel %d, not %d", i+1, e.ChannelID, channelID)
		case e.Set>>channels.NumValues != 0 || !e.HasValues():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch sets no value or unknown values", i+1)
		case e.ID == 0 || e.ID > maxLoadedID:
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has entry_id %d, outside 1..%d", i+1, e.ID, uint64(maxLoadedID))
		case e.CreatedAt.IsZero():
			return channels.Errorf(channels.EINVALID, "entry %d of the batch has no created_at", i+1)
		}
	}
	if len(es) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// Locked as appends lock it: no append numbers meanwhile.
		var last int64
		err := tx.QueryRow(ctx, "SELECT last_entry_id FROM channels WHERE id = $1 FOR NO KEY UPDATE", clampID(channelID)).Scan(&last)
		if err == pgx.ErrNoRows {
			return channelNotFound(channelID)
		} else if err != nil {
			return err
		}
		seq := uint64(last)
		for i := range es {
			e := &es[i]
			if e.ID <= seq {
				return channels.Errorf(channels.ECONFLICT, "entry %d of the batch has entry_id %d, not above %d", i+1, e.ID, seq)
			}
			seq = e.ID
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"}, entryCopyColumns, pgx.CopyFromRows(entryRows(channelID, es))); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE channels SET last_entry_id = $2 WHERE id = $1", int64(channelID), int64(seq))
		return err
	})
	return wrap("load entries", err)
}

// RaiseLastEntryID sets the channel's last entry_id to id when it is
// lower, so that appends number on after entries retention deleted.
func (db *DB) RaiseLastEntryID(ctx context.Context, channelID, id uint64) error {
	if id > maxLoadedID {
		return channels.Errorf(channels.EINVALID, "entry_id %d is above %d", id, uint64(maxLoadedID))
	}
	tag, err := db.pool.Exec(ctx, "UPDATE channels SET last_entry_id = greatest(last_entry_id, $2) WHERE id = $1", clampID(channelID), int64(id))
	if err != nil {
		return wrap("raise last entry_id", err)
	}
	if tag.RowsAffected() == 0 {
		return channelNotFound(channelID)
	}
	return nil
}

// LoadDevice stores d under d.ID with its times, grants and rules.
func (db *DB) LoadDevice(ctx context.Context, d *auth.Device) error {
	if d.Username == "" {
		return channels.Errorf(channels.EINVALID, "device username is required")
	}
	if d.ID == 0 || d.ID > 1<<63-1 {
		return channels.Errorf(channels.EINVALID, "a loaded device needs its ID")
	}
	if err := d.CheckStorable(); err != nil {
		return err
	}
	if err := auth.CheckRules(d.Rules); err != nil {
		return channels.Errorf(channels.EINVALID, "device %d: %v", d.ID, err)
	}
	return db.write(ctx, "load device", func(tx pgx.Tx) ([]channels.Change, error) {
		var taken bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)", int64(d.ID)).Scan(&taken); err != nil {
			return nil, err
		} else if taken {
			return nil, channels.Errorf(channels.ECONFLICT, "device %d exists", d.ID)
		}
		if err := checkGrants(ctx, tx, d.Channels); err != nil {
			return nil, err
		}
		_, err := tx.Exec(ctx, `INSERT INTO devices (id, name, description, client_id, username, password_hash, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			int64(d.ID), d.Name, d.Description, d.ClientID, d.Username, d.PasswordHash, d.CreatedAt, d.UpdatedAt)
		if pgCode(err) == uniqueViolation {
			return nil, usernameTaken(d.Username)
		} else if err != nil {
			return nil, err
		}
		if err := putGrantsAndRules(ctx, tx, d); err != nil {
			return nil, err
		}
		if err := raiseSequence(ctx, tx, "devices", d.ID); err != nil {
			return nil, err
		}
		return []channels.Change{{Kind: channels.ChangeDevice, ID: d.ID}}, nil
	})
}

// LoadBinding stores b under b.ID with its Created time.
func (db *DB) LoadBinding(ctx context.Context, b *channels.Binding) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if b.ID == 0 || b.ID > 1<<63-1 {
		return channels.Errorf(channels.EINVALID, "a loaded binding needs its ID")
	}
	return db.write(ctx, "load binding", func(tx pgx.Tx) ([]channels.Change, error) {
		_, err := tx.Exec(ctx, `INSERT INTO bindings (id, channel_id, topic, fields, status, latitude, longitude, elevation, created_at_path, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			int64(b.ID), clampID(b.ChannelID), b.Topic, b.Fields[:], b.Status, b.Latitude, b.Longitude, b.Elevation, b.CreatedAt, b.Created)
		switch pgCode(err) {
		case "":
		case uniqueViolation:
			return nil, channels.Errorf(channels.ECONFLICT, "binding %d exists", b.ID)
		case foreignKeyViolation:
			return nil, channelNotFound(b.ChannelID)
		}
		if err != nil {
			return nil, err
		}
		if err := raiseSequence(ctx, tx, "bindings", b.ID); err != nil {
			return nil, err
		}
		return []channels.Change{{Kind: channels.ChangeBindings}}, nil
	})
}

// EntriesAfter returns up to n entries of channelID with IDs above
// afterID, lowest first.
func (db *DB) EntriesAfter(ctx context.Context, channelID, afterID uint64, n int) ([]channels.Entry, error) {
	q := db.q(ctx)
	rows, err := q.Query(ctx, "SELECT "+entryCols+` FROM entries WHERE channel_id = $1 AND entry_id > $2
		ORDER BY entry_id LIMIT $3`, clampID(channelID), clampID(afterID), n)
	if err != nil {
		return nil, wrap("read entries", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (channels.Entry, error) {
		e := channels.Entry{ChannelID: channelID}
		err := scanEntry(r, &e)
		return e, err
	})
	if err != nil {
		return nil, wrap("read entries", err)
	}
	if len(out) == 0 {
		if err := db.channelExists(ctx, q, channelID); err != nil {
			return nil, wrap("read entries", err)
		}
	}
	return out, nil
}

// IDCounters returns the highest channel, device and binding IDs handed out.
func (db *DB) IDCounters(ctx context.Context) (dbcopy.Counters, error) {
	var c [3]int64
	err := db.q(ctx).QueryRow(ctx, `SELECT
		coalesce(pg_sequence_last_value(pg_get_serial_sequence('channels', 'id')::regclass), 0),
		coalesce(pg_sequence_last_value(pg_get_serial_sequence('devices', 'id')::regclass), 0),
		coalesce(pg_sequence_last_value(pg_get_serial_sequence('bindings', 'id')::regclass), 0)`).Scan(&c[0], &c[1], &c[2])
	if err != nil {
		return dbcopy.Counters{}, fmt.Errorf("postgres: read ID counters: %w", err)
	}
	return dbcopy.Counters{Channels: uint64(c[0]), Devices: uint64(c[1]), Bindings: uint64(c[2])}, nil
}

// RaiseIDCounters raises the ID sequences to c where they are lower.
func (db *DB) RaiseIDCounters(ctx context.Context, c dbcopy.Counters) error {
	q := db.q(ctx)
	for table, id := range map[string]uint64{"channels": c.Channels, "devices": c.Devices, "bindings": c.Bindings} {
		if err := raiseSequence(ctx, q, table, id); err != nil {
			return fmt.Errorf("postgres: raise the %s ID sequence: %w", table, err)
		}
	}
	return nil
}
