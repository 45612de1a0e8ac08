#!/usr/bin/env bash
# fanout-side-by-side.sh: the peers harness's fan-out, shiplog against PostGraphile, with
# the project's cheap client (bench/src/bin/fanout-client.rs) instead of fanout.mjs, in
# alternating rounds (shiplog, peer, shiplog, peer, ...). fanout.mjs spends about 25 us of
# one Node thread per message, which puts a floor of 30-38 ms under either server's p99 at
# 1,000 subscribers (BENCHMARKS.md). This client's own floor is about 18 ms there (against
# fanout-floor), so the ratio it prints is an upper bound on the servers' own.
#
#   bash scripts/fanout-side-by-side.sh [--rounds 3] [--subs 1000] [--rate 10] [--seconds 10]
#
# The peer must be up: `bash ../shared/peers/bench.sh --shiplog-bin target/release/shiplog
# --keep-peer` (or setup-peer.sh) leaves it on 127.0.0.1:55505. shiplog is started here on a
# new empty SQLite file for every round (target/release/shiplog, or $SHIPLOG_BIN), on
# 127.0.0.1:$SHIPLOG_PORT (55610), and stopped after it. Prints each round's line and the
# medians of the p99s.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SHIPLOG_BIN:-$ROOT/target/release/shiplog}"
CLIENT="$ROOT/target/release/fanout-client"
PORT="${SHIPLOG_PORT:-55610}"
PEER_URL="${PEER_URL:-127.0.0.1:55505}"
ROUNDS=3
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --subs | --rate | --seconds | --warmup-s) pass+=("$1" "$2"); shift 2 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "fanout-side-by-side: unknown option $1" >&2; exit 2 ;;
  esac
done
for f in "$BIN" "$CLIENT"; do
  [ -x "$f" ] || { echo "fanout-side-by-side: no $f (cargo build --release --workspace)" >&2; exit 2; }
done
curl -sf -o /dev/null -X POST -H 'content-type: application/json' \
  --data '{"query":"{ __typename }"}' "http://$PEER_URL/graphql" ||
  { echo "fanout-side-by-side: the peer does not answer on $PEER_URL" >&2; exit 2; }

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

p99() { sed -n 's/^FANOUT //p' "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sendToDelivery"]["p99"])'; }

ours=()
theirs=()
for round in $(seq 1 "$ROUNDS"); do
  "$BIN" serve --listen "127.0.0.1:$PORT" --database-url "sqlite://$WORK/round-$round.db?mode=rwc" \
    >"$WORK/shiplog-$round.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.1
  done
  "$CLIENT" --target shiplog --ws "ws://127.0.0.1:$PORT/graphql/ws" \
    --http "http://127.0.0.1:$PORT/graphql" "${pass[@]}" >"$WORK/shiplog-$round.out" 2>"$WORK/err"
  grep '"shiplog"' "$WORK/err" | sed "s/^\[fanout-client\]/round $round/"
  ours+=("$(p99 "$WORK/shiplog-$round.out")")
  kill "$SERVER" && wait "$SERVER" 2>/dev/null || true
  SERVER=""

  "$CLIENT" --target peer --ws "ws://$PEER_URL/graphql" --http "http://$PEER_URL/graphql" \
    "${pass[@]}" >"$WORK/peer-$round.out" 2>"$WORK/err"
  grep '"peer"' "$WORK/err" | sed "s/^\[fanout-client\]/round $round/"
  theirs+=("$(p99 "$WORK/peer-$round.out")")
done

python3 - "${ours[*]}" "${theirs[*]}" <<'EOF'
import statistics, sys
ours = [float(x) for x in sys.argv[1].split()]
theirs = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(ours), statistics.median(theirs)
print(f"send->delivery p99, median of {len(ours)} rounds: shiplog {a:.1f} ms, peer {b:.1f} ms, ratio {a / b:.2f}x")
EOF
