package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// Check verifies what the schema's constraints do not already guarantee,
// in one read-only snapshot (REPEATABLE READ), so it may run while nodes
// append: the schema is the version this binary knows; every entry ID
// lies in 1..the channel's last_entry_id; every entry sets a value;
// channel settings, devices with their access rules, the shared rules,
// bindings and the owner account read back and are valid; and no entry,
// grant, device rule or binding belongs to a missing channel or device
// (the foreign keys forbid it, but a restore by hand can drop them). IDs
// may have gaps: retention deletes the oldest entries and imports keep
// the IDs they bring. The error is for a check that could not run; what
// is wrong with the data is in the report.
func (db *DB) Check(ctx context.Context) (*storage.CheckReport, error) {
	rep := &storage.CheckReport{Problems: []string{}}
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// The store's own reads below join this snapshot.
		ctx := context.WithValue(ctx, txKey{}, &joined{tx: tx})
		return checkIn(ctx, db, tx, rep)
	})
	if err != nil {
		return nil, wrap("check", err)
	}
	return rep, nil
}

// checkQueries find rows that break an invariant; each row is a problem,
// printed with its format.
var checkQueries = []struct {
	sql, format string
}{
	{`SELECT e.channel_id, e.entry_id, c.last_entry_id FROM entries e JOIN channels c ON c.id = e.channel_id
		WHERE e.entry_id < 1 OR e.entry_id > c.last_entry_id ORDER BY 1, 2`,
		"feed %d: entry %d is beyond the channel's last entry_id %d"},
	{`SELECT channel_id, entry_id FROM entries
		WHERE num_nonnulls(field1, field2, field3, field4, field5, field6, field7, field8,
			latitude, longitude, elevation, status) = 0 ORDER BY 1, 2`,
		"feed %d: entry %d sets no value"},
	{`SELECT e.channel_id, count(*) FROM entries e WHERE NOT EXISTS (SELECT FROM channels c WHERE c.id = e.channel_id)
		GROUP BY 1 ORDER BY 1`,
		"feed %d: %d entries belong to no channel"},
	{`SELECT g.device_id, g.channel_id FROM grants g WHERE NOT EXISTS (SELECT FROM channels c WHERE c.id = g.channel_id)
		ORDER BY 1, 2`,
		"device %d: grant to missing channel %d"},
	{`SELECT g.device_id, g.channel_id FROM grants g WHERE NOT EXISTS (SELECT FROM devices d WHERE d.id = g.device_id)
		ORDER BY 1, 2`,
		"grants: device %d, which does not exist, is granted channel %d"},
	{`SELECT r.device_id, count(*) FROM device_rules r WHERE NOT EXISTS (SELECT FROM devices d WHERE d.id = r.device_id)
		GROUP BY 1 ORDER BY 1`,
		"access: device %d, which does not exist, has %d rules"},
	{`SELECT b.id, b.channel_id FROM bindings b WHERE NOT EXISTS (SELECT FROM channels c WHERE c.id = b.channel_id)
		ORDER BY 1`,
		"binding %d: channel %d does not exist"},
	{`SELECT id, last_entry_id FROM channels WHERE last_entry_id < 0 ORDER BY 1`,
		"channel %d: last entry_id %d is negative"},
	// The retained messages' totals bound them across servers: they must
	// be the table's.
	{`SELECT s.messages, t.n FROM retained_state s, (SELECT count(*) AS n FROM retained) t WHERE s.messages <> t.n`,
		"retained messages: the totals count %d, the table holds %d"},
	{`SELECT s.bytes, t.n FROM retained_state s, (SELECT coalesce(sum(octet_length(payload)), 0) AS n FROM retained) t
		WHERE s.bytes <> t.n`,
		"retained messages: the totals count %d payload bytes, the table holds %d"},
	{`SELECT s.version, count(*) FROM retained r, retained_state s WHERE r.version > s.version GROUP BY 1`,
		"retained messages: the last change is version %d, %d messages are newer"},
	{`SELECT count(*) FROM retained WHERE topic_key <> sha256(convert_to(topic, 'UTF8')) HAVING count(*) > 0`,
		"retained messages: %d are not keyed by their topic"},
}

// checkLimit bounds the rows one check query returns: the report keeps
// a bounded number of problems anyway.
const checkLimit = 1000

func checkIn(ctx context.Context, db *DB, tx pgx.Tx, rep *storage.CheckReport) error {
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if latest := len(migrations); version != latest {
		rep.Add("schema: version %d, this feedmq knows %d", version, latest)
	}
	var nch, ndev, nent int64
	err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM channels), (SELECT count(*) FROM devices),
		(SELECT count(*) FROM entries)`).Scan(&nch, &ndev, &nent)
	if err != nil {
		return fmt.Errorf("count rows: %w", err)
	}
	rep.Channels, rep.Devices, rep.Entries = int(nch), int(ndev), uint64(nent)

	for _, q := range checkQueries {
		rows, err := tx.Query(ctx, q.sql+fmt.Sprintf(" LIMIT %d", checkLimit))
		if err != nil {
			return err
		}
		var a, b, c int64
		dest := []any{&a, &b, &c}[:len(rows.FieldDescriptions())]
		_, err = pgx.ForEachRow(rows, dest, func() error {
			rep.Add(q.format, []any{a, b, c}[:len(dest)]...)
			return nil
		})
		if err != nil {
			return err
		}
	}

	if chs, err := db.ListChannels(ctx); err != nil {
		rep.Add("channels: do not read back: %v", err)
	} else {
		for _, c := range chs {
			if err := c.Validate(); err != nil {
				rep.Add("channel %d: %s", c.ID, channels.ErrorMessage(err))
			}
		}
	}
	if devs, err := db.ListDevices(ctx); err != nil {
		rep.Add("devices: do not read back: %v", err)
	} else {
		for _, d := range devs {
			if err := auth.CheckRules(d.Rules); err != nil {
				rep.Add("device %d: access rules: %v", d.ID, err)
			}
		}
	}
	if anon, every, err := db.SharedRules(ctx); err != nil {
		rep.Add("access: shared rules do not read back: %v", err)
	} else {
		if err := auth.CheckRules(anon); err != nil {
			rep.Add("access: anonymous rules: %v", err)
		}
		if err := auth.CheckRules(every); err != nil {
			rep.Add("access: everyone rules: %v", err)
		}
	}
	if bs, err := db.Bindings(ctx); err != nil {
		rep.Add("bindings: do not read back: %v", err)
	} else {
		for _, b := range bs {
			if err := b.Validate(); err != nil {
				rep.Add("binding %d: %s", b.ID, channels.ErrorMessage(err))
			}
		}
	}
	if _, err := db.Account(ctx); err != nil {
		rep.Add("account: does not read back: %v", err)
	}
	return nil
}
