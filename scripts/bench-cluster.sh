#!/usr/bin/env bash
# scripts/bench-cluster.sh: feedmq's cluster mode on this machine. One
# PostgreSQL (fsync on), three routed NATS servers, and 1, 2 and 3 feedmq
# nodes on them, against one feedmq on bbolt in the same run: fan-in QoS 1,
# fan-out and idle connections through the nodes (feedmq bench --addr
# with every node), a table with the ratios to bbolt, then the failover
# times: a node killed with SIGKILL and PostgreSQL restarted while devices
# publish through a round-robin balancer (feedmq bench failover). All on
# 127.0.0.1; everything it starts is stopped on exit. Called by
# `make bench-cluster`; not part of `make test`.
#
#   scripts/bench-cluster.sh [FEEDMQ_BINARY [NATS_SERVER_BINARY]]
#                           (default bin/feedmq bin/nats-server)
#
# Environment: BENCH_DURATION (default 5s) and BENCH_MESSAGES (default
# 200000) bound each run; BENCH_ROUNDS (default 1) is how many times each
# set-up runs (the table takes the median); BENCH_CLIENTS (default 100) the
# fan-in devices and fan-out subscribers; BENCH_IDLE_CLIENTS (default 3000)
# the idle connections; BENCH_NODES (default "1 2 3"; empty: bbolt only)
# the node counts; BENCH_FAILOVER=0 skips the failover measurement;
# BENCH_KEEP=1 keeps the temporary directory with every process's log;
# FEEDMQ_PG_BINDIR the PostgreSQL binaries (default: the newest
# /usr/lib/postgresql/*/bin).
set -euo pipefail

cd "$(dirname "$0")/.."
FEEDMQ=${1:-bin/feedmq}
NATS=${2:-bin/nats-server}
DURATION=${BENCH_DURATION:-5s}
MESSAGES=${BENCH_MESSAGES:-200000}
ROUNDS=${BENCH_ROUNDS:-1}
CLIENTS=${BENCH_CLIENTS:-100}
IDLE=${BENCH_IDLE_CLIENTS:-3000}
NODES=${BENCH_NODES-1 2 3}
for v in "$ROUNDS" "$CLIENTS" "$IDLE"; do
	[[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench-cluster: BENCH_ROUNDS, BENCH_CLIENTS and BENCH_IDLE_CLIENTS must be positive integers" >&2; exit 2; }
done
for n in $NODES; do
	[[ "$n" =~ ^[1-3]$ ]] || { echo "bench-cluster: BENCH_NODES takes node counts from 1 to 3, not $n" >&2; exit 2; }
done
command -v jq >/dev/null 2>&1 || { echo "bench-cluster: needs jq (make test-deps installs it)" >&2; exit 1; }
[ -x "$FEEDMQ" ] || { echo "bench-cluster: $FEEDMQ is not built; run make build" >&2; exit 1; }
[ -x "$NATS" ] || { echo "bench-cluster: $NATS is not built; run go build -o bin/nats-server github.com/nats-io/nats-server/v2" >&2; exit 1; }
FEEDMQ=$(realpath "$FEEDMQ")
NATS=$(realpath "$NATS")

PGBIN=${FEEDMQ_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -1)}
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || {
	echo "bench-cluster: no PostgreSQL server (install Debian's postgresql: make test-deps; or set FEEDMQ_PG_BINDIR)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/feedmq-bench-cluster.XXXXXX)
# The postgres user must reach its directory inside.
chmod 0711 "$tmp"
pids=()   # feedmq and NATS processes, stopped by PID
pg_up=
# PostgreSQL refuses root: then it runs as the postgres user, as in the tests.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# gone PID: waits up to 30s until the process has ended (a disowned
# node is no job to wait for), then kills it.
gone() {
	for _ in $(seq 300); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null || true
}
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do gone "$p"; done
	[ -z "$pg_up" ] || as_pg "$PGBIN/pg_ctl" -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-cluster: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: the kernel picks one for a listener that closes
# at once (another process may take it before we do; the start fails then).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
wait_port() { # PORT PID LOG
	for _ in $(seq 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || { echo "bench-cluster: process $2 ended; its log:" >&2; tail -20 "$3" >&2; exit 1; }
		sleep 0.1
	done
	echo "bench-cluster: nothing listens on 127.0.0.1:$1 after 30s" >&2; tail -20 "$3" >&2; exit 1
}

# PostgreSQL: a new cluster in the temporary directory, fsync on (the
# default) so that commits cost what they cost on a real server.
mkdir -p "$tmp/pg"
[ "$(id -u)" != 0 ] || chown postgres: "$tmp/pg"
pgport=$(free_port)
as_pg "$PGBIN/initdb" --no-sync -D "$tmp/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log" >&2; exit 1; }
pg_opts="-p $pgport -k $tmp/pg -c listen_addresses=127.0.0.1 -c max_connections=300"
as_pg "$PGBIN/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/server.log" -o "$pg_opts" -w start >/dev/null ||
	{ cat "$tmp/pg/server.log" >&2; exit 1; }
pg_up=1
psql() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
# What bench runs to restart the database: a fast shutdown (sessions
# ended, a checkpoint) and a start, returning once it accepts connections.
if [ "$(id -u)" = 0 ]; then
	restart_db="runuser -u postgres -- $PGBIN/pg_ctl -D $tmp/pg/data -l $tmp/pg/server.log -m fast -w restart >/dev/null"
else
	restart_db="$PGBIN/pg_ctl -D $tmp/pg/data -l $tmp/pg/server.log -m fast -w restart >/dev/null"
fi

# NATS: three servers routed to each other.
nports=() cports=()
for i in 0 1 2; do nports+=("$(free_port)"); cports+=("$(free_port)"); done
nats_urls=
for i in 0 1 2; do
	routes=
	for j in 0 1 2; do [ "$i" = "$j" ] || routes+="${routes:+,}nats://127.0.0.1:${cports[$j]}"; done
	"$NATS" -a 127.0.0.1 -p "${nports[$i]}" --cluster "nats://127.0.0.1:${cports[$i]}" --cluster_name feedmq-bench \
		--routes "$routes" -l "$tmp/nats$i.log" &
	pids+=("$!")
	wait_port "${nports[$i]}" "$!" "$tmp/nats$i.log"
	nats_urls+="${nats_urls:+,}nats://127.0.0.1:${nports[$i]}"
done
# The routes form within a second or so; a node connects either way.
for _ in $(seq 50); do
	n=$(cat "$tmp"/nats?.log | grep -c 'Route connection created' || true)
	[ "$n" -ge 6 ] && break
	sleep 0.1
done

# start_nodes TARGET N: N feedmq nodes (TARGET pg-N on PostgreSQL and NATS,
# in a database of their own) or one on bbolt (TARGET bbolt). Sets addrs,
# npids and data (node 1's directory, whose admin socket bench uses).
node_pids=()
start_nodes() {
	local target=$1 n=$2 db i dir cfg out pid a
	addrs= npids= node_pids=()
	db=$(echo "$target" | tr -c 'a-z0-9\n' '_')_$RANDOM
	[ "$target" = bbolt ] || psql -c "CREATE DATABASE $db"
	for i in $(seq "$n"); do
		dir="$tmp/$target-$db-n$i"
		mkdir -p "$dir"
		cfg="$dir/feedmq.yaml"
		# Per-node connection limits off: idle measures memory, not the cap.
		echo "max_connections: 0" >"$cfg"
		if [ "$target" != bbolt ]; then
			cat >>"$cfg" <<CONF
storage: "postgres://postgres@127.0.0.1:$pgport/$db?sslmode=disable"
cluster: "$nats_urls"
node_name: "n$i"
CONF
		fi
		out="$dir/serve.out"
		"$FEEDMQ" serve --config "$cfg" --data "$dir/data" --mqtt 127.0.0.1:0 --ws off --http off --log-level warn \
			>"$out" 2>"$dir/serve.log" &
		pid=$!
		# Out of the job table: bash would report the node bench kills.
		disown "$pid"
		pids+=("$pid"); node_pids+=("$pid")
		a=
		for _ in $(seq 300); do
			a=$(sed -n 's/^mqtt listening on //p' "$out")
			[ -n "$a" ] && break
			kill -0 "$pid" 2>/dev/null || { echo "bench-cluster: node $i of $target ended at start:" >&2; cat "$dir/serve.log" >&2; exit 1; }
			sleep 0.1
		done
		[ -n "$a" ] || { echo "bench-cluster: node $i of $target did not start within 30s" >&2; cat "$dir/serve.log" >&2; exit 1; }
		addrs+="${addrs:+,}$a"
		npids+="${npids:+,}$pid"
		if [ "$i" = 1 ]; then data="$dir/data"; fi
	done
}
stop_nodes() {
	local p
	for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${node_pids[@]}"; do gone "$p"; done
	node_pids=()
}

echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$("$FEEDMQ" version 2>/dev/null | head -1); $("$PGBIN/postgres" --version) on 127.0.0.1:$pgport (fsync on); $("$NATS" --version) x3"
echo "each run: --duration $DURATION --messages $MESSAGES; $ROUNDS round(s); every node, PostgreSQL, NATS and bench share this machine"
echo

targets=(bbolt)
for n in $NODES; do targets+=("pg-$n"); done
# name|arguments; idle last on each set-up (what follows 3000 connections
# pays for them). Fan-out publishes at QoS 1, one in flight: at QoS 0 the
# one publisher outruns the commits and most entries are refused, so the
# figure would say more about the flood than about the nodes.
scenarios=(
	"fanin-qos1|fanin --qos 1 --clients $CLIENTS"
	"fanout-qos1|fanout --qos 1 --clients $CLIENTS"
	"idle|idle --clients $IDLE --duration 10s"
)
failed=0
for round in $(seq "$ROUNDS"); do
	order=("${targets[@]}")
	if [ $((round % 2)) = 0 ]; then # the other way round, so no set-up always follows the same one
		order=()
		for ((k = ${#targets[@]} - 1; k >= 0; k--)); do order+=("${targets[$k]}"); done
	fi
	for target in "${order[@]}"; do
		n=1
		[ "$target" = bbolt ] || n=${target#pg-}
		start_nodes "$target" "$n"
		for s in "${scenarios[@]}"; do
			name=${s%%|*}; args=${s#*|}
			echo "round $round: $name on $target ($n node(s)): feedmq bench --addr $addrs --pid $npids --duration $DURATION --messages $MESSAGES $args" >&2
			# shellcheck disable=SC2086
			if ! out=$("$FEEDMQ" bench --addr "$addrs" --pid "$npids" --data "$data" --duration "$DURATION" --messages "$MESSAGES" $args --json); then
				echo "bench-cluster: $name on $target failed" >&2
				failed=1
				continue
			fi
			jq -c --arg name "$name" --arg t "$target" --argjson nodes "$n" --argjson round "$round" \
				'. + {name: $name, target: $t, nodes: $nodes, round: $round}' <<<"$out" >>"$tmp/results.jsonl"
		done
		stop_nodes
	done
done
echo >&2

[ -s "$tmp/results.jsonl" ] || { echo "bench-cluster: no run succeeded" >&2; exit 1; }
# Per scenario and set-up the median of the rounds; then the ratio of
# each to bbolt on one node. Idle's rate is connects per second while
# connecting.
jq -s '
	def median: map(select(. != null)) | sort | if length == 0 then null
		elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	group_by(.name + "|" + .target) | map({name: .[0].name, target: .[0].target, nodes: .[0].nodes, rounds: length,
		rate: (map(.rate_per_s) | median), cpu_per_million: (map(.broker_cpu_s_per_million) | median),
		p50: (map(.latency.p50_ms) | median), p99: (map(.latency.p99_ms) | median),
		rss_per_conn: (map(.broker_rss_per_conn_bytes) | median),
		delivered: (map(if .scenario == "idle" then .acked else .delivered end) | median),
		expected: (map(if .scenario == "idle" then .sent else .expected end) | median)})
' "$tmp/results.jsonl" >"$tmp/medians.json"
echo "medians of $ROUNDS round(s); ratio = rate / the rate of bbolt on one node (>1: faster); CPU is the feedmq nodes' only (not PostgreSQL's or NATS')"
jq -r '
	def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
	def r(a; b): if a == null or b == null or b == 0 then "-" else (a / b * 100 | round / 100 | tostring) end;
	(["scenario", "set-up", "nodes", "rate/s", "ratio", "CPU-s/M", "p50ms", "p99ms", "RSS/conn KiB", "RSS ratio", "delivered/expected"] | @tsv),
	(group_by(.name) | .[] | (map(select(.target == "bbolt"))[0]) as $b |
		sort_by(if .target == "bbolt" then 0 else 1 end, .nodes) | .[] |
		[.name, .target, .nodes, f(.rate), r(.rate; $b.rate), f(.cpu_per_million), f(.p50), f(.p99),
			f(if .rss_per_conn then .rss_per_conn / 1024 else null end), r(.rss_per_conn; $b.rss_per_conn),
			"\(.delivered)/\(.expected)"] | map(tostring) | @tsv)
' "$tmp/medians.json" | column -t -s $'\t'
echo

if [ "${BENCH_FAILOVER:-1}" != 0 ]; then
	# Failover: three nodes; 30 devices publish QoS 1 through bench's
	# round-robin balancer. Node 3 is killed (node 1 holds the admin socket
	# bench cleans up through), then PostgreSQL is restarted.
	# A checkpoint first: the restart's own (a fast shutdown writes every
	# dirty buffer) then covers what this run wrote, not the runs before.
	psql -c CHECKPOINT
	start_nodes pg-failover 3
	echo "failover: feedmq bench failover --addr $addrs --pid $npids --kill 3 --restart-db '<pg_ctl restart -m fast -w>' --clients 30" >&2
	if out=$("$FEEDMQ" bench failover --addr "$addrs" --pid "$npids" --data "$data" --kill 3 --restart-db "$restart_db" \
		--clients 30 --duration 60s --json); then
		echo "failover (3 nodes, 30 devices at 20 QoS 1 publishes/s each through a round-robin balancer)"
		jq -r '.failover as $f |
			(if $f.kill then $f.kill | "node \(.node) killed (SIGKILL) holding \(.devices) devices: \(.recovered) back; reconnected p50 \(.reconnect_p50_ms | round) ms, max \(.reconnect_max_ms | round) ms; publishing again (first PUBACK) p50 \(.recover_p50_ms | round) ms, max \(.recover_max_ms | round) ms after the kill; devices on other nodes paused at most \(.others_max_gap_ms | round) ms" else empty end),
			(if $f.db then $f.db | "PostgreSQL restarted (pg_ctl -m fast -w restart) in \(.restart_ms | round) ms: \(.resumed) of \($f.devices) devices publishing again, p50 \(.resume_p50_ms | round) ms, max \(.resume_max_ms | round) ms after it was back; longest pause without a PUBACK per device p50 \(.gap_p50_ms | round) ms, max \(.gap_max_ms | round) ms" else empty end),
			"\(.sent) publishes, \(.acked) acknowledged, \($f.disconnects) device connections ended"' <<<"$out"
	else
		echo "bench-cluster: failover failed" >&2
		failed=1
	fi
	stop_nodes
fi
[ "$failed" = 0 ] || echo "bench-cluster: some runs failed (see above); their rows are missing" >&2
exit "$failed"
