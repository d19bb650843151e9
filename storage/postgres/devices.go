package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

var (
	_ auth.Store     = (*DB)(nil)
	_ auth.RuleStore = (*DB)(nil)
)

const deviceColumns = "id, name, description, client_id, username, password_hash, created_at, updated_at"

func scanDevice(row pgx.Row) (*auth.Device, error) {
	var (
		d                auth.Device
		id               int64
		created, updated time.Time
	)
	if err := row.Scan(&id, &d.Name, &d.Description, &d.ClientID, &d.Username, &d.PasswordHash, &created, &updated); err != nil {
		return nil, err
	}
	d.ID, d.CreatedAt, d.UpdatedAt = uint64(id), created.UTC(), updated.UTC()
	return &d, nil
}

func deviceNotFound(id uint64) error {
	return &channels.Error{Code: channels.ENOTFOUND, Message: fmt.Sprintf("device %d not found", id), Err: auth.ErrDeviceNotFound}
}

// checkUsername refuses a username another device than self has.
func checkUsername(ctx context.Context, tx pgx.Tx, name string, self uint64) error {
	var taken bool
	err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM devices WHERE username = $1 AND id <> $2)", name, clampID(self)).Scan(&taken)
	if err != nil {
		return err
	}
	if taken {
		return usernameTaken(name)
	}
	return nil
}

func usernameTaken(name string) error {
	return channels.Errorf(channels.ECONFLICT, "username %q is taken", name)
}

// checkGrants refuses a grant list naming a channel twice or a missing
// channel. The channels found are locked (FOR KEY SHARE) until the
// commit, so none is deleted before the grants are stored.
func checkGrants(ctx context.Context, tx pgx.Tx, grants []auth.Grant) error {
	if len(grants) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(grants))
	seen := make(map[uint64]bool, len(grants))
	for _, g := range grants {
		if seen[g.ChannelID] {
			return channels.Errorf(channels.EINVALID, "channel %d is granted twice", g.ChannelID)
		}
		seen[g.ChannelID] = true
		ids = append(ids, clampID(g.ChannelID))
	}
	rows, err := tx.Query(ctx, "SELECT id FROM channels WHERE id = ANY($1) ORDER BY id FOR KEY SHARE", ids)
	if err != nil {
		return err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	for _, g := range grants {
		if !slices.Contains(found, clampID(g.ChannelID)) {
			return channelNotFound(g.ChannelID)
		}
	}
	return nil
}

// putGrantsAndRules replaces the grants and rules of device id.
func putGrantsAndRules(ctx context.Context, tx pgx.Tx, d *auth.Device) error {
	id := clampID(d.ID)
	if _, err := tx.Exec(ctx, "DELETE FROM grants WHERE device_id = $1", id); err != nil {
		return err
	}
	if len(d.Channels) > 0 {
		var chans []int64
		var pub, sub []bool
		for _, g := range d.Channels {
			chans, pub, sub = append(chans, clampID(g.ChannelID)), append(pub, g.Publish), append(sub, g.Subscribe)
		}
		_, err := tx.Exec(ctx, `INSERT INTO grants (device_id, channel_id, position, publish, subscribe)
			SELECT $1, c, p, pb, sb FROM unnest($2::bigint[], $3::boolean[], $4::boolean[]) WITH ORDINALITY AS g(c, pb, sb, p)`,
			id, chans, pub, sub)
		if pgCode(err) == foreignKeyViolation {
			return channels.Errorf(channels.ENOTFOUND, "a granted channel was deleted meanwhile")
		} else if err != nil {
			return err
		}
	}
	return putDeviceRules(ctx, tx, d.ID, d.Rules)
}

func putDeviceRules(ctx context.Context, tx pgx.Tx, device uint64, rules []auth.Rule) error {
	if _, err := tx.Exec(ctx, "DELETE FROM device_rules WHERE device_id = $1", clampID(device)); err != nil {
		return err
	}
	if len(rules) == 0 {
		return nil
	}
	access, patterns := ruleColumns(rules)
	_, err := tx.Exec(ctx, `INSERT INTO device_rules (device_id, position, access, pattern)
		SELECT $1, p, a, t FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS r(a, t, p)`,
		clampID(device), access, patterns)
	return err
}

func ruleColumns(rules []auth.Rule) (access, patterns []string) {
	for _, r := range rules {
		access, patterns = append(access, r.Access.String()), append(patterns, r.Pattern)
	}
	return access, patterns
}

// CreateDevice assigns d.ID and stores d with its grants and rules.
// ECONFLICT when the username is taken; ENOTFOUND when a grant names a
// missing channel.
func (db *DB) CreateDevice(ctx context.Context, d *auth.Device) error {
	if d.Username == "" {
		return channels.Errorf(channels.EINVALID, "device username is required")
	}
	if err := d.CheckStorable(); err != nil {
		return err
	}
	return db.write(ctx, "create device", func(tx pgx.Tx) ([]channels.Change, error) {
		if err := checkGrants(ctx, tx, d.Channels); err != nil {
			return nil, err
		}
		// Checked before the INSERT, whose unique index only backs it up:
		// a failed INSERT would use up an ID of the sequence.
		if err := checkUsername(ctx, tx, d.Username, 0); err != nil {
			return nil, err
		}
		var (
			id      int64
			created time.Time
		)
		err := tx.QueryRow(ctx, `INSERT INTO devices (name, description, client_id, username, password_hash, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, coalesce($6::timestamptz, now()), coalesce($6::timestamptz, now())) RETURNING id, created_at`,
			d.Name, d.Description, d.ClientID, d.Username, d.PasswordHash, db.nowArg()).Scan(&id, &created)
		if pgCode(err) == uniqueViolation {
			return nil, usernameTaken(d.Username)
		} else if err != nil {
			return nil, err
		}
		d.ID, d.CreatedAt, d.UpdatedAt = uint64(id), created.UTC(), created.UTC()
		if err := putGrantsAndRules(ctx, tx, d); err != nil {
			return nil, err
		}
		return []channels.Change{{Kind: channels.ChangeDevice, ID: d.ID}}, nil
	})
}

// UpdateDevice replaces device d.ID, keeping its CreatedAt. A new
// username or password revokes its live connections (Change.Revoke).
func (db *DB) UpdateDevice(ctx context.Context, d *auth.Device) error {
	if d.Username == "" {
		return channels.Errorf(channels.EINVALID, "device username is required")
	}
	if err := d.CheckStorable(); err != nil {
		return err
	}
	return db.write(ctx, "update device", func(tx pgx.Tx) ([]channels.Change, error) {
		old, err := scanDevice(tx.QueryRow(ctx, "SELECT "+deviceColumns+" FROM devices WHERE id = $1 FOR UPDATE", clampID(d.ID)))
		if err == pgx.ErrNoRows {
			return nil, deviceNotFound(d.ID)
		} else if err != nil {
			return nil, err
		}
		if err := checkGrants(ctx, tx, d.Channels); err != nil {
			return nil, err
		}
		var updated time.Time
		err = tx.QueryRow(ctx, `UPDATE devices SET name = $2, description = $3, client_id = $4, username = $5,
			password_hash = $6, updated_at = coalesce($7::timestamptz, now()) WHERE id = $1 RETURNING updated_at`,
			clampID(d.ID), d.Name, d.Description, d.ClientID, d.Username, d.PasswordHash, db.nowArg()).Scan(&updated)
		if pgCode(err) == uniqueViolation {
			return nil, usernameTaken(d.Username)
		} else if err != nil {
			return nil, err
		}
		d.CreatedAt, d.UpdatedAt = old.CreatedAt, updated.UTC()
		if err := putGrantsAndRules(ctx, tx, d); err != nil {
			return nil, err
		}
		revoke := old.Username != d.Username || old.PasswordHash != d.PasswordHash || old.ClientID != d.ClientID
		return []channels.Change{{Kind: channels.ChangeDevice, ID: d.ID, Revoke: revoke}}, nil
	})
}

// DeleteDevice removes a device with its grants and rules.
func (db *DB) DeleteDevice(ctx context.Context, id uint64) error {
	return db.write(ctx, "delete device", func(tx pgx.Tx) ([]channels.Change, error) {
		tag, err := tx.Exec(ctx, "DELETE FROM devices WHERE id = $1", clampID(id))
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 0 {
			return nil, deviceNotFound(id)
		}
		return []channels.Change{{Kind: channels.ChangeDevice, ID: id, Deleted: true, Revoke: true}}, nil
	})
}

// FindDevice returns one device.
func (db *DB) FindDevice(ctx context.Context, id uint64) (*auth.Device, error) {
	list, err := db.devices(ctx, clampID(id))
	if err != nil {
		return nil, wrap("find device", err)
	}
	if len(list) == 0 {
		return nil, deviceNotFound(id)
	}
	return list[0], nil
}

// ListDevices returns all devices ordered by ID.
func (db *DB) ListDevices(ctx context.Context) ([]*auth.Device, error) {
	list, err := db.devices(ctx, 0)
	return list, wrap("list devices", err)
}

// devices reads device id, or every device for 0, with grants and rules,
// in one snapshot (REPEATABLE READ, unless ctx joins a transaction).
func (db *DB) devices(ctx context.Context, id int64) ([]*auth.Device, error) {
	var list []*auth.Device
	read := func(q querier) error {
		list = list[:0]
		byID := map[int64]*auth.Device{}
		// $1::bigint: compared with the literal 0 first, $1 would be
		// typed integer, and an ID above 2^31 would fail to encode.
		rows, err := q.Query(ctx, "SELECT "+deviceColumns+" FROM devices WHERE $1::bigint = 0 OR id = $1 ORDER BY id", id)
		if err != nil {
			return err
		}
		list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.Device, error) { return scanDevice(r) })
		if err != nil || len(list) == 0 {
			return err
		}
		for _, d := range list {
			byID[int64(d.ID)] = d
		}
		rows, err = q.Query(ctx, `SELECT device_id, channel_id, publish, subscribe FROM grants
			WHERE $1::bigint = 0 OR device_id = $1 ORDER BY device_id, position`, id)
		if err != nil {
			return err
		}
		var dev, ch int64
		var g auth.Grant
		_, err = pgx.ForEachRow(rows, []any{&dev, &ch, &g.Publish, &g.Subscribe}, func() error {
			if d := byID[dev]; d != nil {
				g.ChannelID = uint64(ch)
				d.Channels = append(d.Channels, g)
			}
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = q.Query(ctx, `SELECT device_id, access, pattern FROM device_rules
			WHERE $1::bigint = 0 OR device_id = $1 ORDER BY device_id, position`, id)
		if err != nil {
			return err
		}
		var access, pattern string
		_, err = pgx.ForEachRow(rows, []any{&dev, &access, &pattern}, func() error {
			d := byID[dev]
			if d == nil {
				return nil
			}
			a, err := auth.ParseAccess(access)
			if err != nil {
				return fmt.Errorf("device %d: rule %d: %w", dev, len(d.Rules)+1, err)
			}
			d.Rules = append(d.Rules, auth.Rule{Access: a, Pattern: pattern})
			return nil
		})
		return err
	}
	if _, ok := ctx.Value(txKey{}).(*joined); ok {
		err := read(db.q(ctx))
		return list, err
	}
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return read(tx)
	})
	return list, err
}

// SharedRules returns the anonymous connections' and everyone's rules.
func (db *DB) SharedRules(ctx context.Context) (anonymous, everyone []auth.Rule, err error) {
	rows, err := db.q(ctx).Query(ctx, "SELECT list, access, pattern FROM shared_rules ORDER BY list, position")
	if err != nil {
		return nil, nil, wrap("read access rules", err)
	}
	var list, access, pattern string
	_, err = pgx.ForEachRow(rows, []any{&list, &access, &pattern}, func() error {
		a, err := auth.ParseAccess(access)
		if err != nil {
			return fmt.Errorf("%s access rules: %w", list, err)
		}
		r := auth.Rule{Access: a, Pattern: pattern}
		if list == "anonymous" {
			anonymous = append(anonymous, r)
		} else {
			everyone = append(everyone, r)
		}
		return nil
	})
	if err != nil {
		return nil, nil, wrap("read access rules", err)
	}
	return anonymous, everyone, nil
}

// SetRules applies change in one transaction and returns the changed
// devices. ENOTFOUND when a device is missing: then nothing changes.
func (db *DB) SetRules(ctx context.Context, change auth.RulesChange) ([]*auth.Device, error) {
	if err := change.CheckStorable(); err != nil {
		return nil, err
	}
	var changed []*auth.Device
	err := db.write(ctx, "write access rules", func(tx pgx.Tx) ([]channels.Change, error) {
		changed = changed[:0]
		var notes []channels.Change
		ids := make([]uint64, 0, len(change.Devices))
		for id := range change.Devices {
			ids = append(ids, id)
		}
		slices.Sort(ids) // rows locked in one order: no deadlock between writers
		for _, id := range ids {
			tag, err := tx.Exec(ctx, "UPDATE devices SET updated_at = coalesce($2::timestamptz, now()) WHERE id = $1", clampID(id), db.nowArg())
			if err != nil {
				return nil, err
			}
			if tag.RowsAffected() == 0 {
				return nil, deviceNotFound(id)
			}
			if err := putDeviceRules(ctx, tx, id, change.Devices[id]); err != nil {
				return nil, err
			}
			notes = append(notes, channels.Change{Kind: channels.ChangeDevice, ID: id})
		}
		for list, rules := range map[string]*[]auth.Rule{"anonymous": change.Anonymous, "everyone": change.Everyone} {
			if rules == nil {
				continue
			}
			if _, err := tx.Exec(ctx, "DELETE FROM shared_rules WHERE list = $1", list); err != nil {
				return nil, err
			}
			if len(*rules) > 0 {
				access, patterns := ruleColumns(*rules)
				_, err := tx.Exec(ctx, `INSERT INTO shared_rules (list, position, access, pattern)
					SELECT $1, p, a, t FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS r(a, t, p)`,
					list, access, patterns)
				if err != nil {
					return nil, err
				}
			}
		}
		if change.Anonymous != nil || change.Everyone != nil {
			notes = append(notes, channels.Change{Kind: channels.ChangeRules})
		}
		for _, id := range ids {
			list, err := db.devices(context.WithValue(ctx, txKey{}, &joined{tx: tx}), clampID(id))
			if err != nil {
				return nil, err
			}
			changed = append(changed, list...)
		}
		return notes, nil
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}
