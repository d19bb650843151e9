package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/feedmq/feedmq/channels"
)

// Retained messages of free topics live in the retained table, so that
// every server sharing the database sends a new subscriber the same ones.
// Every change locks the single retained_state row, which holds the
// totals the bounds are checked against and the version of the last
// change: the bounds hold across servers, and versions follow commit
// order. A change is announced on RetainedChannel at commit with its
// version and topic, never the payload (a notification holds at most
// 8000 bytes); receivers read the message themselves.

// RetainedChannel is the LISTEN channel retained message changes are
// announced on: "<version> <topic>", or "<version>#<key>" (the topic's
// SHA-256 in hex) when the topic is too long for a notification.
const RetainedChannel = "feedmq_retained"

// maxNoticeTopic is the longest topic a notification carries: PostgreSQL
// refuses payloads of 8000 bytes or more, and the version takes up to 20.
const maxNoticeTopic = 7900

// MaxRetainedTopic is the longest topic a retained message may have, as
// in MQTT.
const MaxRetainedTopic = 65535

func encodeRetainedNotice(c channels.RetainedChange) string {
	v := strconv.FormatInt(c.Version, 10)
	switch {
	case c.Topic != "" && len(c.Topic) <= maxNoticeTopic:
		return v + " " + c.Topic
	case c.Topic != "":
		k := channels.RetainedKey(c.Topic)
		return v + "#" + hex.EncodeToString(k[:])
	case c.Key != [32]byte{}:
		return v + "#" + hex.EncodeToString(c.Key[:])
	}
	return v
}

// decodeRetainedNotice parses a notification from whatever process shares
// the database: a positive version in canonical decimal, then a space and
// a topic, or "#" and a key in lower-case hex, or nothing (Resync).
func decodeRetainedNotice(s string) (channels.RetainedChange, error) {
	bad := func(why string) (channels.RetainedChange, error) {
		return channels.RetainedChange{}, fmt.Errorf("retained notification: %s", why)
	}
	if num, key, ok := strings.Cut(s, "#"); ok && !strings.Contains(num, " ") {
		c, err := decodeRetainedNotice(num)
		if err != nil || !c.Resync {
			return bad("no version")
		}
		b, err := hex.DecodeString(key)
		if err != nil || len(b) != 32 || hex.EncodeToString(b) != key {
			return bad("not a key")
		}
		c.Resync = false
		copy(c.Key[:], b)
		return c, nil
	}
	num, topic, hasTopic := strings.Cut(s, " ")
	if num == "" || len(num) > 19 || num[0] == '0' {
		return bad("no version")
	}
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return bad("no version")
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return bad("version out of range")
	}
	if !hasTopic {
		return channels.RetainedChange{Version: v, Resync: true}, nil
	}
	if err := checkRetainedTopic(topic); err != nil || len(topic) > maxNoticeTopic {
		return bad("not a topic")
	}
	return channels.RetainedChange{Version: v, Topic: topic}, nil
}

// checkRetainedTopic accepts a topic name MQTT allows a message to be
// retained on: 1 to 65535 bytes of UTF-8 without NUL or wildcards.
func checkRetainedTopic(topic string) error {
	switch {
	case topic == "":
		return channels.Errorf(channels.EINVALID, "retained message: empty topic")
	case len(topic) > MaxRetainedTopic:
		return channels.Errorf(channels.EINVALID, "retained message: topic longer than %d bytes", MaxRetainedTopic)
	case strings.ContainsAny(topic, "+#"):
		return channels.Errorf(channels.EINVALID, "retained message: topic with a wildcard")
	}
	return checkMQTTString("topic", topic)
}

// checkMQTTString accepts what MQTT allows in a string (and PostgreSQL in
// text): UTF-8 without NUL.
func checkMQTTString(what, s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return channels.Errorf(channels.EINVALID, "retained message: %s is not valid UTF-8 without NUL", what)
	}
	return nil
}

func topicKey(topic string) []byte {
	k := channels.RetainedKey(topic)
	return k[:]
}

// SetRetained stores m as the retained message of its topic, replacing
// the one it has, or with an empty payload deletes it. It returns the
// version of the change, or 0 when there was nothing to delete. A message
// that would take the retained messages past maxMessages or their
// payloads past maxBytes, over every server, is refused with
// channels.ErrRetainedFull (code ELIMIT) and changes nothing.
func (db *DB) SetRetained(ctx context.Context, m *channels.Retained, maxMessages int, maxBytes int64) (int64, error) {
	if err := checkRetainedTopic(m.Topic); err != nil {
		return 0, err
	}
	if m.QoS > 2 {
		return 0, channels.Errorf(channels.EINVALID, "retained message: QoS %d", m.QoS)
	}
	for what, s := range map[string]string{"content type": m.ContentType, "response topic": m.ResponseTopic} {
		if err := checkMQTTString(what, s); err != nil {
			return 0, err
		}
	}
	keys := make([]string, len(m.User))
	vals := make([]string, len(m.User))
	for i, u := range m.User {
		if err := checkMQTTString("a user property", u.Key+u.Val); err != nil {
			return 0, err
		}
		keys[i], vals[i] = u.Key, u.Val
	}
	size := int64(len(m.Payload))
	if size > maxBytes {
		return 0, retainedFull(size, maxMessages, maxBytes)
	}
	var version int64
	err := db.retainedTx(ctx, func(tx pgx.Tx) error {
		var count, bytes, last int64
		err := tx.QueryRow(ctx, "SELECT messages, bytes, version FROM retained_state WHERE id = 1 FOR UPDATE").
			Scan(&count, &bytes, &last)
		if err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		// Read after the lock: this statement sees every change committed
		// before it was granted.
		key := topicKey(m.Topic)
		var old int64
		had := true
		err = tx.QueryRow(ctx, "SELECT octet_length(payload) FROM retained WHERE topic_key = $1", key).Scan(&old)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			had = false
		case err != nil:
			return fmt.Errorf("read: %w", err)
		}
		if size == 0 {
			if !had {
				return nil
			}
			version = last + 1
			_, err := tx.Exec(ctx, `WITH d AS (DELETE FROM retained WHERE topic_key = $1)
				UPDATE retained_state SET messages = messages - 1, bytes = bytes - $2, version = $3 WHERE id = 1`,
				key, old, version)
			if err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			return notifyRetained(ctx, tx, version, m.Topic)
		}
		n := count
		if !had {
			n++
		}
		if n > int64(maxMessages) || bytes-old+size > maxBytes {
			// Expired messages count until a server expires them, which
			// its clock may not have allowed yet: make room first.
			purged, freed, err := purgeExpired(ctx, tx, &last, m.Topic)
			if err != nil {
				return err
			}
			n, bytes = n-purged, bytes-freed
			if n > int64(maxMessages) || bytes-old+size > maxBytes {
				return retainedFull(size, maxMessages, maxBytes)
			}
		}
		version = last + 1
		var format *int16
		if m.PayloadFormatFlag {
			f := int16(m.PayloadFormat)
			format = &f
		}
		var corr []byte
		if len(m.CorrelationData) > 0 {
			corr = m.CorrelationData
		}
		_, err = tx.Exec(ctx, `WITH up AS (
				INSERT INTO retained (topic_key, topic, payload, qos, protocol_version, payload_format, content_type,
					response_topic, correlation_data, user_keys, user_values, expires_at, created_at, updated_at, version)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
					CASE WHEN $12::bigint > 0 THEN now() + $12::bigint * interval '1 second' END, now(), now(), $13)
				ON CONFLICT (topic_key) DO UPDATE SET payload = excluded.payload, qos = excluded.qos,
					protocol_version = excluded.protocol_version, payload_format = excluded.payload_format,
					content_type = excluded.content_type, response_topic = excluded.response_topic,
					correlation_data = excluded.correlation_data, user_keys = excluded.user_keys,
					user_values = excluded.user_values, expires_at = excluded.expires_at,
					updated_at = excluded.updated_at, version = excluded.version
			)
			UPDATE retained_state SET messages = $14, bytes = $15, version = $13 WHERE id = 1`,
			key, m.Topic, m.Payload, int16(m.QoS), int16(m.ProtocolVersion), format, m.ContentType,
			m.ResponseTopic, corr, keys, vals, int64(m.MessageExpiry), version, n, bytes-old+size)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return notifyRetained(ctx, tx, version, m.Topic)
	})
	if err != nil {
		return 0, wrap("retain a message", err)
	}
	return version, nil
}

// retainedTx runs fn in a transaction; a connection lost during COMMIT
// (the change may have happened) gives channels.ErrCommitUnknown, as
// appends do.
func (db *DB) retainedTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return commitError(err)
	}
	return nil
}

// purgeExpired deletes the expired messages (but topic's own, which is
// being replaced), announcing each with a version after *last, which it
// advances; it returns how many messages and bytes it freed. The state
// row is locked, and its totals and version are the caller's to write
// (a refusal rolls the purge back with the rest).
func purgeExpired(ctx context.Context, tx pgx.Tx, last *int64, topic string) (messages, bytes int64, err error) {
	rows, err := tx.Query(ctx, `DELETE FROM retained WHERE expires_at <= now() AND topic_key <> $1
		RETURNING topic, octet_length(payload)`, topicKey(topic))
	if err != nil {
		return 0, 0, fmt.Errorf("purge expired: %w", err)
	}
	var topics []string
	for rows.Next() {
		var t string
		var size int64
		if err := rows.Scan(&t, &size); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("purge expired: %w", err)
		}
		topics = append(topics, t)
		bytes += size
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("purge expired: %w", err)
	}
	for _, t := range topics {
		*last++
		if err := notifyRetained(ctx, tx, *last, t); err != nil {
			return 0, 0, err
		}
	}
	return int64(len(topics)), bytes, nil
}

func retainedFull(size int64, maxMessages int, maxBytes int64) error {
	return &channels.Error{Code: channels.ELIMIT, Err: channels.ErrRetainedFull, Message: fmt.Sprintf(
		"retained message of %d bytes refused: over the bounds of %d messages and %d bytes", size, maxMessages, maxBytes)}
}

func notifyRetained(ctx context.Context, tx pgx.Tx, version int64, topic string) error {
	c := channels.RetainedChange{Version: version, Topic: topic}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", RetainedChannel, encodeRetainedNotice(c)); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// ExpireRetained deletes the retained message of topic when its expiry
// has passed by the database's clock (a server's own clock may run
// ahead); any server may call it for the same message.
func (db *DB) ExpireRetained(ctx context.Context, topic string) error {
	if err := checkRetainedTopic(topic); err != nil {
		return err
	}
	err := db.retainedTx(ctx, func(tx pgx.Tx) error {
		var last int64
		if err := tx.QueryRow(ctx, "SELECT version FROM retained_state WHERE id = 1 FOR UPDATE").Scan(&last); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		var size int64
		err := tx.QueryRow(ctx, "DELETE FROM retained WHERE topic_key = $1 AND expires_at <= now() RETURNING octet_length(payload)",
			topicKey(topic)).Scan(&size)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if _, err := tx.Exec(ctx, "UPDATE retained_state SET messages = messages - 1, bytes = bytes - $1, version = $2 WHERE id = 1",
			size, last+1); err != nil {
			return fmt.Errorf("update totals: %w", err)
		}
		return notifyRetained(ctx, tx, last+1, topic)
	})
	return wrap("expire a retained message", err)
}

const retainedColumns = `r.topic, r.payload, r.qos, r.protocol_version, r.payload_format, r.content_type, r.response_topic,
	r.correlation_data, r.user_keys, r.user_values, r.expires_at, r.updated_at, r.version`

// A message past its expiry is left out of reads: a server deletes it
// when its own clock says so (ExpireRetained).
const retainedLive = `(r.expires_at IS NULL OR r.expires_at > now())`

// scanRetained reads one row of retainedColumns after the state's version;
// ok is false for the NULL row of an outer join that matched nothing.
func scanRetained(row pgx.Row) (m channels.Retained, asOf int64, ok bool, err error) {
	var (
		topic               *string
		qos, proto          *int16
		format              *int16
		ctype, rtopic       *string
		keys, vals          []string
		expires, updated    *time.Time
		version             *int64
		payload, correlated []byte
	)
	err = row.Scan(&asOf, &topic, &payload, &qos, &proto, &format, &ctype, &rtopic, &correlated, &keys, &vals,
		&expires, &updated, &version)
	if err != nil || topic == nil {
		return m, asOf, false, err
	}
	m = channels.Retained{Topic: *topic, Payload: payload, QoS: byte(*qos), ProtocolVersion: byte(*proto),
		ContentType: *ctype, ResponseTopic: *rtopic, CorrelationData: correlated, Created: *updated, Version: *version}
	if format != nil {
		m.PayloadFormat, m.PayloadFormatFlag = byte(*format), true
	}
	if expires != nil {
		m.Expires = *expires
	}
	for i := range min(len(keys), len(vals)) {
		m.User = append(m.User, channels.UserProperty{Key: keys[i], Val: vals[i]})
	}
	return m, asOf, true, nil
}

// RetainedTopic returns the retained message of topic (nil: none), and
// the version of the last change in the store when it was read: the
// answer is the topic's state as of that version.
func (db *DB) RetainedTopic(ctx context.Context, topic string) (*channels.Retained, int64, error) {
	if err := checkRetainedTopic(topic); err != nil {
		return nil, 0, err
	}
	return db.RetainedByKey(ctx, channels.RetainedKey(topic))
}

// RetainedByKey is RetainedTopic for the topic whose channels.RetainedKey
// is key.
func (db *DB) RetainedByKey(ctx context.Context, key [32]byte) (*channels.Retained, int64, error) {
	m, asOf, ok, err := scanRetained(db.pool.QueryRow(ctx, `SELECT s.version, `+retainedColumns+`
		FROM retained_state s LEFT JOIN retained r ON r.topic_key = $1 AND `+retainedLive+` WHERE s.id = 1`, key[:]))
	if err != nil {
		return nil, 0, wrap("read a retained message", err)
	}
	if !ok {
		return nil, asOf, nil
	}
	return &m, asOf, nil
}

// AllRetained returns every retained message, and the version of the last
// change they include (one snapshot).
func (db *DB) AllRetained(ctx context.Context) ([]channels.Retained, int64, error) {
	rows, err := db.pool.Query(ctx, `SELECT s.version, `+retainedColumns+`
		FROM retained_state s LEFT JOIN retained r ON `+retainedLive+` WHERE s.id = 1`)
	if err != nil {
		return nil, 0, wrap("read retained messages", err)
	}
	defer rows.Close()
	var (
		out  []channels.Retained
		asOf int64
	)
	for rows.Next() {
		m, v, ok, err := scanRetained(rows)
		if err != nil {
			return nil, 0, wrap("read retained messages", err)
		}
		asOf = v
		if ok {
			out = append(out, m)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, wrap("read retained messages", err)
	}
	return out, asOf, nil
}

// RetainedChanges listens on a connection of its own and sends every
// retained message change any process commits, in commit order; a
// receiver that falls behind gets a Resync instead. The channel is closed when ctx
// ends or the connection is lost: the receiver then reloads everything.
func (db *DB) RetainedChanges(ctx context.Context) (<-chan channels.RetainedChange, error) {
	return listenNotices(ctx, db, RetainedChannel, "listen for retained messages", decodeRetainedNotice,
		channels.RetainedChange{Resync: true})
}
