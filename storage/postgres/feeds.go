package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/jackc/pgx/v5"
)

// MaxKeyLimit bounds the Limit of EntryKeys, and so the keys it holds.
const MaxKeyLimit = 1 << 16

// entryCols are the columns an entry is read from, in scanEntry's order.
const entryCols = `entry_id, created_at, field1, field2, field3, field4, field5, field6, field7, field8,
	latitude, longitude, elevation, status`

func channelNotFound(id uint64) error {
	return &channels.Error{Code: channels.ENOTFOUND, Message: fmt.Sprintf("channel %d not found", id), Err: channels.ErrChannelNotFound}
}

// scanEntry reads one row of entryCols into e.
func scanEntry(row pgx.Row, e *channels.Entry) error {
	var (
		id, created int64
		vals        [channels.NumValues]*string
	)
	dst := []any{&id, &created}
	for i := range vals {
		dst = append(dst, &vals[i])
	}
	if err := row.Scan(dst...); err != nil {
		return err
	}
	e.ID, e.CreatedAt, e.Set = uint64(id), time.Unix(created, 0).UTC(), 0
	for i, v := range vals {
		if v != nil {
			e.SetValue(i, *v)
		} else {
			e.Values[i] = ""
		}
	}
	return nil
}

// filterSQL returns the conditions of f after "channel_id = $1", with
// their arguments numbered from $2.
func filterSQL(f channels.EntryFilter, args []any) (string, []any) {
	var b strings.Builder
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !f.Start.IsZero() {
		// Stored times are whole seconds: an entry is before Start when
		// its second is before Start's, rounded up.
		start := f.Start.Unix()
		if f.Start.After(time.Unix(start, 0)) {
			start++
		}
		b.WriteString(" AND created_at >= " + arg(start))
	}
	if !f.End.IsZero() {
		b.WriteString(" AND created_at <= " + arg(f.End.Unix()))
	}
	if f.Field >= 1 && f.Field <= channels.NumFields {
		// A column name cannot be a parameter; Field is a checked number.
		fmt.Fprintf(&b, " AND field%d IS NOT NULL", f.Field)
	}
	if f.AfterID > 0 {
		b.WriteString(" AND entry_id > " + arg(clampID(f.AfterID)))
	}
	return b.String(), args
}

// clampID maps an ID beyond bigint to the largest one, which no entry
// reaches.
func clampID(id uint64) int64 {
	if id > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(id)
}

// channelExists tells ENOTFOUND from an empty answer.
func (db *DB) channelExists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id uint64) error {
	var ok bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1)", clampID(id)).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return channelNotFound(id)
	}
	return nil
}

// Entries returns the newest f.Limit entries of a channel that match f,
// oldest first (by entry_id).
func (db *DB) Entries(ctx context.Context, channelID uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	cond, args := filterSQL(f, []any{clampID(channelID)})
	q := "SELECT " + entryCols + " FROM entries WHERE channel_id = $1" + cond + " ORDER BY entry_id DESC"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	var list []channels.Entry
	// One snapshot for the rows and the channel's existence.
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			list = append(list, channels.Entry{ChannelID: channelID})
			if err := scanEntry(rows, &list[len(list)-1]); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(list) == 0 {
			return db.channelExists(ctx, tx, channelID)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("read entries", err)
	}
	slices.Reverse(list)
	return list, nil
}

// FindEntry returns one entry of a channel.
func (db *DB) FindEntry(ctx context.Context, channelID, entryID uint64) (*channels.Entry, error) {
	e := &channels.Entry{ChannelID: channelID}
	row := db.pool.QueryRow(ctx, "SELECT "+entryCols+" FROM entries WHERE channel_id = $1 AND entry_id = $2",
		clampID(channelID), clampID(entryID))
	err := scanEntry(row, e)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := db.channelExists(ctx, db.pool, channelID); err != nil {
			return nil, wrap("find entry", err)
		}
		return nil, channels.Errorf(channels.ENOTFOUND, "entry %d of channel %d not found", entryID, channelID)
	}
	if err != nil {
		return nil, wrap("find entry", err)
	}
	return e, nil
}

// EntryCount returns the number of entries a channel holds.
func (db *DB) EntryCount(ctx context.Context, channelID uint64) (uint64, error) {
	var n *int64
	err := db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM entries WHERE channel_id = c.id)
		FROM channels c WHERE c.id = $1`, clampID(channelID)).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, channelNotFound(channelID)
	}
	if err != nil {
		return 0, wrap("count entries", err)
	}
	return uint64(*n), nil
}

// ClearChannel deletes every entry of a channel; numbering restarts at 1
// and paged reads begun before are refused. Outside Atomically the
// entries go first in bounded statements (deleteAhead), so the
// transaction below is short. The channel row is updated
// first: that locks it, so an append (which locks it too) lands wholly
// before the clear or after it, never numbered from the old feed.
//
// Other processes hear of it (ChangeCleared) at the commit: whatever they
// know of the feed's IDs is void.
func (db *DB) ClearChannel(ctx context.Context, id uint64) error {
	if _, ok := ctx.Value(txKey{}).(*joined); !ok {
		if err := db.deleteAhead(ctx, id); err != nil {
			return wrap("clear channel", err)
		}
	}
	return db.write(ctx, "clear channel", func(tx pgx.Tx) ([]channels.Change, error) {
		tag, err := tx.Exec(ctx, `UPDATE channels SET last_entry_id = 0, feed_version = feed_version + 1
			WHERE id = $1`, clampID(id))
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 0 {
			return nil, channelNotFound(id)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM entries WHERE channel_id = $1", clampID(id)); err != nil {
			return nil, err
		}
		return []channels.Change{{Kind: channels.ChangeCleared, ID: id}}, nil
	})
}

// clearBatch bounds one statement of deleteAhead.
var clearBatch = 10000

// deleteAhead deletes the entries a channel holds now, in bounded
// statements of their own, before the clear's transaction: that one
// holds the channel's row, which this process's one append writer (and
// every other's) waits on with the appends of all channels queued
// behind, so it must only delete what came meanwhile. Readers see the
// oldest entries go first, as with retention; a clear that fails midway
// leaves the feed without them, and is to be tried again.
func (db *DB) deleteAhead(ctx context.Context, id uint64) error {
	var last int64
	err := db.pool.QueryRow(ctx, "SELECT last_entry_id FROM channels WHERE id = $1", clampID(id)).Scan(&last)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // the clear reports it
	}
	if err != nil {
		return err
	}
	for {
		// Up to the last ID read above: a feed written faster than it is
		// deleted still ends.
		tag, err := db.pool.Exec(ctx, `DELETE FROM entries WHERE channel_id = $1 AND entry_id IN (
			SELECT entry_id FROM entries WHERE channel_id = $1 AND entry_id <= $2 ORDER BY entry_id LIMIT $3)`,
			clampID(id), last, clearBatch)
		if err != nil {
			return err
		}
		if tag.RowsAffected() < int64(clearBatch) {
			return nil
		}
	}
}

// EntryKeys returns the keys of the newest f.Limit entries by created_at
// (then entry_id) that match f, oldest first, and the feed's version.
func (db *DB) EntryKeys(ctx context.Context, channelID uint64, f channels.EntryFilter) (channels.EntryKeys, error) {
	if f.Limit < 1 || f.Limit > MaxKeyLimit {
		return channels.EntryKeys{}, channels.Errorf(channels.EINVALID, "a keyed read takes 1 to %d entries, not %d", MaxKeyLimit, f.Limit)
	}
	cond, args := filterSQL(f, []any{clampID(channelID)})
	args = append(args, f.Limit)
	q := fmt.Sprintf("SELECT created_at, entry_id FROM entries WHERE channel_id = $1%s ORDER BY created_at DESC, entry_id DESC LIMIT $%d", cond, len(args))
	var out channels.EntryKeys
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var version int64
		err := tx.QueryRow(ctx, "SELECT feed_version FROM channels WHERE id = $1", clampID(channelID)).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return channelNotFound(channelID)
		} else if err != nil {
			return err
		}
		out.Version = uint64(version)
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var created, id int64
			if err := rows.Scan(&created, &id); err != nil {
				return err
			}
			out.Keys = append(out.Keys, channels.EntryKey{Created: created, ID: uint64(id)})
		}
		return rows.Err()
	})
	if err != nil {
		return channels.EntryKeys{}, wrap("read entries", err)
	}
	slices.Reverse(out.Keys)
	return out, nil
}

// EntriesByKey appends to page the entries of keys in their order,
// leaving out those deleted since (by retention); ECONFLICT once the feed
// has been cleared, or its channel deleted, since version was read.
func (db *DB) EntriesByKey(ctx context.Context, channelID, version uint64, keys []channels.EntryKey, page []channels.Entry) ([]channels.Entry, error) {
	ids := make([]int64, len(keys))
	for i, k := range keys {
		ids[i] = clampID(k.ID)
	}
	start := len(page)
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		page = page[:start]
		var v int64
		err := tx.QueryRow(ctx, "SELECT feed_version FROM channels WHERE id = $1", clampID(channelID)).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && uint64(v) != version) {
			return channels.Errorf(channels.ECONFLICT, "channel %d was cleared or deleted during the read", channelID)
		} else if err != nil {
			return err
		}
		// WITH ORDINALITY keeps the order of keys.
		rows, err := tx.Query(ctx, `SELECT `+prefixed("e.", entryCols)+` FROM unnest($2::bigint[]) WITH ORDINALITY AS k(id, n)
			JOIN entries e ON e.channel_id = $1 AND e.entry_id = k.id ORDER BY k.n`, clampID(channelID), ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			page = append(page, channels.Entry{ChannelID: channelID})
			if err := scanEntry(rows, &page[len(page)-1]); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return page[:start], wrap("read entries", err)
	}
	return page, nil
}

// prefixed qualifies each column of a comma-separated list.
func prefixed(p, cols string) string {
	f := strings.Split(cols, ",")
	for i, c := range f {
		f[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(f, ", ")
}

// wrap gives a database error op as context; application errors pass
// through untouched so callers can branch on their code.
func wrap(op string, err error) error {
	if err == nil || channels.ErrorCode(err) != channels.EINTERNAL {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
