package postgres

func init() {
	register(migration{Version: 4, Name: "retained messages of free topics", SQL: `
-- The retained MQTT message of each free topic, shared by every server.
-- The key is the SHA-256 of the topic: a topic may be up to 65535 bytes,
-- far past what a btree index entry holds. An empty payload is never
-- stored (it deletes the topic's message).
CREATE TABLE retained (
	topic_key        bytea PRIMARY KEY CHECK (octet_length(topic_key) = 32),
	topic            text NOT NULL,
	payload          bytea NOT NULL CHECK (octet_length(payload) > 0),
	qos              smallint NOT NULL CHECK (qos BETWEEN 0 AND 2),
	protocol_version smallint NOT NULL,
	-- MQTT 5 properties of the publish; NULL or empty: absent
	payload_format   smallint,
	content_type     text NOT NULL DEFAULT '',
	response_topic   text NOT NULL DEFAULT '',
	correlation_data bytea,
	user_keys        text[] NOT NULL DEFAULT '{}',
	user_values      text[] NOT NULL DEFAULT '{}' CHECK (cardinality(user_values) = cardinality(user_keys)),
	-- the message expiry interval counted from when it was stored
	expires_at       timestamptz,
	-- when the topic first retained a message, and when this one came
	created_at       timestamptz NOT NULL,
	updated_at       timestamptz NOT NULL,
	version          bigint NOT NULL
);
-- Messages that expire, for the purge of expired ones at the bounds.
CREATE INDEX retained_expiring ON retained (expires_at) WHERE expires_at IS NOT NULL;

-- One row: the totals the bounds are checked against, and the version
-- of the last change. Every change locks it, so changes are serialised
-- across servers and their versions follow commit order.
CREATE TABLE retained_state (
	id       smallint PRIMARY KEY CHECK (id = 1),
	messages bigint NOT NULL CHECK (messages >= 0),
	bytes    bigint NOT NULL CHECK (bytes >= 0),
	version  bigint NOT NULL
);
INSERT INTO retained_state VALUES (1, 0, 0, 0);
`})
}
