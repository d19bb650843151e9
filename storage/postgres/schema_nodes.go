package postgres

func init() {
	register(migration{Version: 3, Name: "nodes heartbeat", SQL: `
-- One row per feedmq node that serves on this database, beaten every few
-- seconds with the database's clock (nodes' clocks need not agree).
-- clustered: the node runs with NATS (cluster:); a node without it must
-- be alone on the database. status is what the node last reported
-- (ok, fail-closed, ...).
CREATE TABLE nodes (
	node      text PRIMARY KEY,
	clustered boolean NOT NULL,
	status    text NOT NULL,
	started   timestamptz NOT NULL,
	seen      timestamptz NOT NULL
);
`})
}
