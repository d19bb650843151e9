#!/usr/bin/env bash
# scripts/bench.sh: feedmq against Mosquitto on this machine, same load
# generator (feedmq bench), same scenarios, run in alternation; then the Go
# micro-benchmarks. Called by `make bench`.
#
#   scripts/bench.sh [FEEDMQ_BINARY]        (default bin/feedmq)
#
# Environment: BENCH_DURATION (default 5s) and BENCH_MESSAGES (default
# 200000) bound each run; BENCH_ROUNDS (default 3) is how many times each
# scenario runs against each broker; BENCH_SCENARIOS (default all) names
# the scenarios to run, separated by spaces (e.g. "free-fanin-qos0
# free-fanout"); BENCH_GO=0 skips the Go benchmarks; BENCH_BASE names an
# earlier feedmq binary to run beside it, for before/after ratios.
set -euo pipefail

cd "$(dirname "$0")/.."
FEEDMQ=${1:-bin/feedmq}
DURATION=${BENCH_DURATION:-5s}
MESSAGES=${BENCH_MESSAGES:-200000}
ROUNDS=${BENCH_ROUNDS:-3}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_ROUNDS must be a positive integer" >&2; exit 2; }
GO=${GO:-go}

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v jq >/dev/null 2>&1 || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
# perf counts system calls and context switches per message when it can
# (root, or perf_event_paranoid allowing it); BENCH_PERF=0 turns it off.
PERF=
if [ "${BENCH_PERF:-1}" != 0 ] && command -v perf >/dev/null 2>&1 &&
	perf stat -e raw_syscalls:sys_enter -p $$ -- true >/dev/null 2>&1; then
	PERF=$(command -v perf)
fi
[ -x "$FEEDMQ" ] || { echo "bench: $FEEDMQ is not built; run make build" >&2; exit 1; }

tmp=$(mktemp -d /tmp/feedmq-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# A free loopback port (bind to port 0 through the kernel is not possible
# from bash; try random high ports until one refuses connections).
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "bench: no free port" >&2; exit 1
}

# feedmq: built binary, temporary data directory, MQTT on loopback only.
# max_connections 0: the default (1000) would cap the idle scenario's
# 10,000 connections; Mosquitto has no such cap by default either.
printf 'max_connections: 0\n' >"$tmp/feedmq.yaml"
# start_feedmq NAME BINARY: serve on data directory $tmp/NAME; sets
# spid, saddr and swsaddr (MQTT over WebSocket, for the ws-* scenarios).
start_feedmq() {
	mkdir -p "$tmp/$1"
	"$2" serve --config "$tmp/feedmq.yaml" --data "$tmp/$1" --mqtt 127.0.0.1:0 --ws 127.0.0.1:0 --http off --log-level warn \
		>"$tmp/$1.out" 2>"$tmp/$1.log" &
	spid=$!; pids+=("$spid")
	saddr= swsaddr=
	for _ in $(seq 100); do
		saddr=$(sed -n 's/^mqtt listening on //p' "$tmp/$1.out")
		swsaddr=$(sed -n 's/^ws listening on //p' "$tmp/$1.out")
		[ -n "$saddr" ] && [ -n "$swsaddr" ] && break
		kill -0 "$spid" 2>/dev/null || { cat "$tmp/$1.log" >&2; exit 1; }
		sleep 0.1
	done
	[ -n "$saddr" ] && [ -n "$swsaddr" ] || { echo "bench: $1 did not start" >&2; cat "$tmp/$1.log" >&2; exit 1; }
}
start_feedmq feedmq "$FEEDMQ"
fpid=$spid faddr=$saddr fwsaddr=$swsaddr
# BENCH_BASE: another feedmq binary (an earlier build) run in the same
# rounds as "base", for before/after ratios measured in alternation.
BASE=${BENCH_BASE:-}
if [ -n "$BASE" ]; then
	[ -x "$BASE" ] || { echo "bench: BENCH_BASE $BASE is not an executable" >&2; exit 2; }
	start_feedmq base "$BASE"
	bpid0=$spid baddr=$saddr bwsaddr=$swsaddr
fi

# Mosquitto: anonymous on loopback, no persistence, defaults otherwise.
mport=$(free_port)
cat >"$tmp/mosquitto.conf" <<CONF
listener $mport 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
CONF
"$MOSQUITTO" -c "$tmp/mosquitto.conf" 2>"$tmp/mosquitto.log" &
mpid=$!; pids+=("$mpid")
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break
	kill -0 "$mpid" 2>/dev/null || { cat "$tmp/mosquitto.log" >&2; exit 1; }
	sleep 0.1
done

echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -sr)"
echo "$("$FEEDMQ" version 2>/dev/null | head -1) on $faddr (pid $fpid, data $tmp/feedmq)"
[ -n "$BASE" ] && echo "base: $("$BASE" version 2>/dev/null | head -1) on $baddr (pid $bpid0, data $tmp/base)"
echo "$("$MOSQUITTO" -h 2>/dev/null | head -1) on 127.0.0.1:$mport (pid $mpid)"
echo "each run: --duration $DURATION --messages $MESSAGES; $ROUNDS rounds"
# What a durable commit costs on this disk, before anything runs: the
# floor under feedmq's latency at a low rate (one commit per entry).
if disk=$("$FEEDMQ" bench disk --data "$tmp/feedmq" --duration "$DURATION" --rate 1000 --json); then
	jq -r '"disk: a 120-byte durable write (\(.method)) at \(.rate_per_s | round)/s: p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, p99.9 \(.latency.p999_ms) ms"' <<<"$disk"
fi
echo

# name|arguments. The free-* scenarios run on feedmq's free topics
# (bench/..., devices whose access rules allow bench/#) instead of
# channels; on Mosquitto, --free changes nothing (--plain topics are
# free topics already), so they compare feedmq's free topics with the
# same load on Mosquitto. Each round runs every scenario against both brokers,
# feedmq first in odd rounds and Mosquitto first in even ones, so that
# neither always follows the other's leftovers; the report takes the
# median of the rounds (this machine's speed drifts by tens of percent
# from minute to minute). The ws-* scenarios run the same load on
# feedmq over WebSocket (ws://.../mqtt), feedmq only: Debian's Mosquitto
# is built without websockets.
scenarios=(
	"fanin-qos0|fanin --qos 0 --clients 100"
	"fanin-qos1|fanin --qos 1 --clients 100"
	"fanout|fanout --clients 100"
	"free-fanin-qos0|fanin --free --qos 0 --clients 100"
	"free-fanin-qos1|fanin --free --qos 1 --clients 100"
	"free-fanout|fanout --free --clients 100"
	"latency|latency --rate 1000 --duration 20s" # 5 s is 5,000 samples and under a CPU-second: rounds differed by a third
	"connect|connect"
	"ws-fanin-qos1|fanin --qos 1 --clients 100"
	"ws-latency|latency --rate 1000 --duration 20s"
	"idle|idle --clients 10000 --duration 10s" # last; later flags win; issue 5's target is 10k
)
if [ -n "${BENCH_SCENARIOS:-}" ]; then
	picked=()
	for want in $BENCH_SCENARIOS; do
		found=
		for s in "${scenarios[@]}"; do
			[ "${s%%|*}" = "$want" ] && picked+=("$s") && found=1
		done
		[ -n "$found" ] || { echo "bench: BENCH_SCENARIOS: no scenario $want (one of: $(printf '%s ' "${scenarios[@]%%|*}"))" >&2; exit 2; }
	done
	scenarios=("${picked[@]}")
fi
idle=0 nws=0
for s in "${scenarios[@]}"; do
	[ "${s%%|*}" = idle ] && idle=1
	case ${s%%|*} in ws-*) nws=$((nws + 1)) ;; esac
done
brokers=2; [ -n "$BASE" ] && brokers=3
runs=$(( (ROUNDS * (${#scenarios[@]} - idle) + idle) * brokers - ROUNDS * nws ))
n=0
failed=0
for round in $(seq "$ROUNDS"); do
	order=(feedmq mosquitto)
	[ $((round % 2)) = 0 ] && order=(mosquitto feedmq)
	if [ -n "$BASE" ]; then
		order=(base feedmq mosquitto)
		[ $((round % 2)) = 0 ] && order=(mosquitto feedmq base)
	fi
	for s in "${scenarios[@]}"; do
		name=${s%%|*}; args=${s#*|}
		# RSS per idle connection is the growth over the broker's RSS
		# before the run; after one idle run neither broker gives all of
		# it back, so a second would measure nothing. And what follows
		# 10,000 connections pays for them for a minute (feedmq's
		# latency p99 after one: 1.9-2.8 ms, before: 1.1-1.2 ms). So
		# idle runs once, last. It is memory, not speed: it does not
		# drift.
		[ "$name" = idle ] && [ "$round" -lt "$ROUNDS" ] && continue
		ws=
		case $name in ws-*) ws=1 ;; esac
		for b in "${order[@]}"; do
			[ -n "$ws" ] && [ "$b" = mosquitto ] && continue
			n=$((n + 1))
			case $b in
			feedmq) target=(--addr "$faddr" --data "$tmp/feedmq" --pid "$fpid") bpid=$fpid ;;
			base) target=(--addr "$baddr" --data "$tmp/base" --pid "$bpid0") bpid=$bpid0 ;;
			*) target=(--addr "127.0.0.1:$mport" --plain --pid "$mpid") bpid=$mpid ;;
			esac
			if [ -n "$ws" ]; then
				case $b in
				feedmq) target[1]=ws://$fwsaddr/mqtt ;;
				base) target[1]=ws://$bwsaddr/mqtt ;;
				esac
			fi
			echo "run $n/$runs (round $round): $name on $b: feedmq bench ${target[*]} --duration $DURATION --messages $MESSAGES $args" >&2
			perfpid=
			if [ -n "$PERF" ]; then
				# System calls and context switches of the broker, every
				# thread, while the run lasts (its set-up included: a few
				# hundred connects against 10^5 messages or more).
				"$PERF" stat -x, -e raw_syscalls:sys_enter,context-switches -p "$bpid" -o "$tmp/perf.txt" 2>/dev/null &
				perfpid=$!
			fi
			# shellcheck disable=SC2086
			if ! out=$("$FEEDMQ" bench "${target[@]}" --duration "$DURATION" --messages "$MESSAGES" $args --json); then
				echo "bench: $name on $b failed" >&2
				failed=1
				[ -n "$perfpid" ] && { kill -INT "$perfpid" 2>/dev/null; wait "$perfpid" 2>/dev/null || true; }
				continue
			fi
			perf=null
			if [ -n "$perfpid" ]; then
				kill -INT "$perfpid" 2>/dev/null || true
				wait "$perfpid" 2>/dev/null || true
				sc=$(awk -F, '$3 ~ /sys_enter/ {print $1}' "$tmp/perf.txt" 2>/dev/null)
				cs=$(awk -F, '$3 ~ /context-switches/ {print $1}' "$tmp/perf.txt" 2>/dev/null)
				[[ "$sc" =~ ^[0-9]+$ && "$cs" =~ ^[0-9]+$ ]] && perf="{\"syscalls\": $sc, \"ctxsw\": $cs}"
			fi
			jq -c --arg name "$name" --arg b "$b" --argjson round "$round" --argjson perf "$perf" \
				'. + {name: $name, target: $b, round: $round, perf: $perf}' <<<"$out" >>"$tmp/results.jsonl"
		done
	done
done
echo >&2

# Every run, then per scenario and broker the median of the rounds, then
# the feedmq/Mosquitto ratios of the medians.
jq -r -s '
	def f(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
	def lat(k): if .latency == null then "-" else (.latency[k] * 100 | round / 100 | tostring) end;
	(["scenario", "broker", "round", "clients", "sent", "delivered", "expected", "rate/s", "CPU-s", "CPU-s/M", "p50ms", "p99ms", "p99.9ms", "RSS MiB", "RSS/conn KiB"] | @tsv),
	(sort_by(.name, .target, .round) | .[] | [.name, .target, .round, .clients, .sent, (if .scenario == "connect" or .scenario == "idle" then .acked else .delivered end),
		(if .scenario == "connect" or .scenario == "idle" then .sent else .expected end),
		f(.rate_per_s), f(.broker_cpu_s), f(.broker_cpu_s_per_million), lat("p50_ms"), lat("p99_ms"), lat("p999_ms"),
		f(.broker_rss_bytes / 1048576), f(if .broker_rss_per_conn_bytes then .broker_rss_per_conn_bytes / 1024 else null end)] | map(tostring) | @tsv)
' "$tmp/results.jsonl" | column -t -s $'\t'
echo
jq -s '
	def median: map(select(. != null)) | sort | if length == 0 then null
		elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	group_by(.name + "|" + .target) | map({name: .[0].name, target: .[0].target, rounds: length,
		rate: (map(.rate_per_s) | median), cpu_per_million: (map(.broker_cpu_s_per_million) | median),
		p50: (map(.latency.p50_ms) | median), p99: (map(.latency.p99_ms) | median),
		rss_per_conn: (map(.broker_rss_per_conn_bytes) | median),
		syscalls: (map(if .perf == null or .rate_per_s * .duration_s == 0 then null else .perf.syscalls / (.rate_per_s * .duration_s) end) | median),
		ctxsw: (map(if .perf == null or .rate_per_s * .duration_s == 0 then null else .perf.ctxsw / (.rate_per_s * .duration_s) end) | median)})
' "$tmp/results.jsonl" >"$tmp/medians.json"
echo "medians of $ROUNDS rounds"
jq -r '
	def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
	(["scenario", "broker", "rate/s", "CPU-s/M", "p50ms", "p99ms", "RSS/conn KiB", "syscalls/msg", "ctxsw/msg"] | @tsv),
	(.[] | [.name, .target, f(.rate), f(.cpu_per_million), f(.p50), f(.p99), f(if .rss_per_conn then .rss_per_conn / 1024 else null end),
		f(.syscalls), f(.ctxsw)] | @tsv)
' "$tmp/medians.json" | column -t -s $'\t'
echo
echo "feedmq/Mosquitto ratios of the medians (rate: >1 means feedmq is faster; CPU-s per million: >1 means feedmq uses more CPU)"
jq -r '
	def r(a; b): if a == null or b == null or b == 0 then "-" else (a / b * 100 | round / 100 | tostring) end;
	(["scenario", "rate ratio", "CPU-s/M ratio", "p99 ratio", "RSS/conn ratio"] | @tsv),
	(group_by(.name) | .[] |
		(map(select(.target == "feedmq"))[0]) as $f | (map(select(.target == "mosquitto"))[0]) as $m |
		[$f.name, r($f.rate; $m.rate), r($f.cpu_per_million; $m.cpu_per_million),
			r($f.p99; $m.p99), r($f.rss_per_conn; $m.rss_per_conn)] | @tsv)
' "$tmp/medians.json" | column -t -s $'\t'
echo

if jq -e 'any(.[]; .name | startswith("ws-"))' "$tmp/medians.json" >/dev/null; then
	echo "feedmq over WebSocket / feedmq over TCP, same load, ratios of the medians (no Mosquitto reference: Debian's is built without websockets)"
	jq -r '
		def r(a; b): if a == null or b == null or b == 0 then "-" else (a / b * 100 | round / 100 | tostring) end;
		(map(select(.target == "feedmq")) | map({key: .name, value: .}) | from_entries) as $f |
		(["scenario", "rate ratio", "CPU-s/M ratio", "p99 ratio", "syscalls ratio"] | @tsv),
		($f | keys[] | select(startswith("ws-")) as $w | ($w | ltrimstr("ws-")) as $t |
			[$w, r($f[$w].rate; $f[$t].rate), r($f[$w].cpu_per_million; $f[$t].cpu_per_million),
				r($f[$w].p99; $f[$t].p99), r($f[$w].syscalls; $f[$t].syscalls)] | @tsv)
	' "$tmp/medians.json" | column -t -s $'\t'
	echo
fi

if [ -n "$BASE" ]; then
	echo "feedmq/base ratios of the medians (base: $BASE; rate >1: faster than base; CPU-s/M <1: less CPU than base)"
	jq -r '
		def r(a; b): if a == null or b == null or b == 0 then "-" else (a / b * 100 | round / 100 | tostring) end;
		(["scenario", "rate ratio", "CPU-s/M ratio", "p99 ratio", "RSS/conn ratio", "syscalls ratio", "ctxsw ratio"] | @tsv),
		(group_by(.name) | .[] |
			(map(select(.target == "feedmq"))[0]) as $f | (map(select(.target == "base"))[0]) as $b |
			[$f.name, r($f.rate; $b.rate), r($f.cpu_per_million; $b.cpu_per_million),
				r($f.p99; $b.p99), r($f.rss_per_conn; $b.rss_per_conn), r($f.syscalls; $b.syscalls), r($f.ctxsw; $b.ctxsw)] | @tsv)
	' "$tmp/medians.json" | column -t -s $'\t'
	echo
fi

# The targets feedmq holds itself to on any machine, as ratios to
# Mosquitto measured in this run (README, "Benchmarks"); latency p99 and
# idle memory are absolute.
echo "targets (met: yes/no; - when the scenario did not run)"
jq -r '
	def r(a; b): if a == null or b == null or b == 0 then null else a / b end;
	def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
	def row(name; what; v; op; want):
		[name, what, f(v), op + " " + (want | tostring),
			(if v == null then "-" elif (op == ">=" and v >= want) or (op == "<=" and v <= want) then "yes" else "no" end)];
	(group_by(.name) | map({key: .[0].name, value: {f: (map(select(.target == "feedmq"))[0]), m: (map(select(.target == "mosquitto"))[0])}}) | from_entries) as $s |
	(["scenario", "measure", "value", "target", "met"] | @tsv),
	(row("fanin-qos1"; "rate ratio"; r($s["fanin-qos1"].f.rate; $s["fanin-qos1"].m.rate); ">="; 1.0) | @tsv),
	(row("fanin-qos1"; "CPU-s/M ratio"; r($s["fanin-qos1"].f.cpu_per_million; $s["fanin-qos1"].m.cpu_per_million); "<="; 1.5) | @tsv),
	(row("fanin-qos0"; "rate ratio"; r($s["fanin-qos0"].f.rate; $s["fanin-qos0"].m.rate); ">="; 1.5) | @tsv),
	(row("fanin-qos0"; "CPU-s/M ratio"; r($s["fanin-qos0"].f.cpu_per_million; $s["fanin-qos0"].m.cpu_per_million); "<="; 1.0) | @tsv),
	(row("connect"; "rate ratio"; r($s["connect"].f.rate; $s["connect"].m.rate); ">="; 1.0) | @tsv),
	(row("connect"; "CPU-s/M ratio"; r($s["connect"].f.cpu_per_million; $s["connect"].m.cpu_per_million); "<="; 1.5) | @tsv),
	(row("latency"; "p99 ms"; $s["latency"].f.p99; "<="; 2) | @tsv),
	(row("latency"; "CPU-s/M ratio"; r($s["latency"].f.cpu_per_million; $s["latency"].m.cpu_per_million); "<="; 3) | @tsv),
	(row("idle"; "RSS/conn KiB"; (if $s["idle"].f.rss_per_conn == null then null else $s["idle"].f.rss_per_conn / 1024 end); "<="; 8) | @tsv)
' "$tmp/medians.json" | column -t -s $'\t'
echo

[ "$failed" = 0 ] || echo "bench: some runs failed (see above); their rows are missing" >&2

if [ "${BENCH_GO:-1}" != 0 ]; then
	echo "go test -run '^\$' -bench . -benchmem ./..."
	$GO test -run '^$' -bench . -benchmem ./...
fi
exit "$failed"
