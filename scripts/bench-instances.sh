#!/usr/bin/env bash
# bench-instances.sh: the throughput of two shiplog instances on one PostgreSQL database
# against one instance, same database, same documents, alternating rounds.
#
#   bash scripts/bench-instances.sh --bodies DIR [--rounds R] [--duration S] [--connections C]
#
# DIR holds the request bodies of a run of ../shared/peers/bench.sh (its RUN/bodies, e.g.
# /tmp/shiplog-peer/runs/<time>/bodies): shiplog-W2.json (the dashboard) and
# shiplog-W1c.json (a create). wrk and post.lua come from that harness too (bench.sh
# installs wrk). The database is a fresh one on the cluster of scripts/pg-cluster.sh, seeded
# with 1,000 creates; both instances (127.0.0.1:56001 and :56002) run throughout, and a
# round sends C connections to the first alone ("one"), or C/2 to each ("two") at once.
# Prints one line per round and the medians.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="$ROOT/../shared/peers"
BIN="${SHIPLOG_BIN:-$ROOT/target/release/shiplog}"
BODIES="" ROUNDS=3 DURATION=10 CONNS=16
while [ $# -gt 0 ]; do
  case "$1" in
    --bodies) BODIES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$BODIES/shiplog-W2.json" ] && [ -f "$BODIES/shiplog-W1c.json" ] ||
  { echo "--bodies DIR must hold shiplog-W2.json and shiplog-W1c.json (a bench.sh run's bodies)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: run ../shared/peers/setup-peer.sh first" >&2; exit 2; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin shiplog >&2)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

base=$("$ROOT/scripts/pg-cluster.sh" start)
name="bench_$(date +%s)_$$"
psql -X -q -v ON_ERROR_STOP=1 "$base" -c "CREATE DATABASE $name" >&2
url="${base%/*}/$name"

for port in 56001 56002; do
  "$BIN" serve --listen "127.0.0.1:$port" --database-url "$url" >"$WORK/$port.log" 2>&1 &
  PIDS+=($!)
done
for port in 56001 56002; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
  done
done

# run_wrk PORT WORKLOAD CONNECTIONS TAG: the BENCH line of one wrk run
run_wrk() {
  BODY_FILE="$BODIES/shiplog-$2.json" RUN_TAG="$4-$2-$1-$(date +%s%N)" \
    wrk -t1 -c"$3" -d"${DURATION}s" --timeout 5s -s "$PEERS/post.lua" "http://127.0.0.1:$1/graphql" |
    grep '^BENCH '
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

echo "seeding: 1000 creates" >&2
BODY_FILE="$BODIES/shiplog-W1c.json" RUN_TAG="seed" wrk -t1 -c4 -d60s --timeout 5s \
  -s "$PEERS/post.lua" "http://127.0.0.1:56001/graphql" >/dev/null &
seeder=$!
until [ "$(psql -X -qtA "$url" -c 'SELECT count(*) FROM deployments')" -ge 1000 ]; do sleep 0.5; done
kill "$seeder" 2>/dev/null || true
wait "$seeder" 2>/dev/null || true

for w in W2 W1c; do
  one=() two=()
  for r in $(seq 1 "$ROUNDS"); do
    a=$(run_wrk 56001 "$w" "$CONNS" "one$r")
    one+=("$(echo "$a" | field rps)")
    run_wrk 56001 "$w" $((CONNS / 2)) "twoA$r" >"$WORK/a" &
    pa=$!
    run_wrk 56002 "$w" $((CONNS / 2)) "twoB$r" >"$WORK/b" &
    pb=$!
    wait "$pa" "$pb"
    sum=$(awk -v a="$(field rps <"$WORK/a")" -v b="$(field rps <"$WORK/b")" 'BEGIN { printf "%.1f", a + b }')
    two+=("$sum")
    echo "$w round $r: one instance $(echo "$a" | field rps) req/s; two instances $sum req/s ($(field rps <"$WORK/a") + $(field rps <"$WORK/b"))"
  done
  m1=$(printf '%s\n' "${one[@]}" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p")
  m2=$(printf '%s\n' "${two[@]}" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p")
  echo "$w median: one $m1 req/s, two $m2 req/s, two/one $(awk -v a="$m2" -v b="$m1" 'BEGIN { printf "%.2f", a / b }')x"
done
psql -X -q "$base" -c "SELECT 1" >/dev/null
