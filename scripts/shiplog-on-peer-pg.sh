#!/usr/bin/env bash
# shiplog-on-peer-pg.sh: shiplog on the peer's PostgreSQL, for the side-by-side harness in
# ../shared/peers, so that both servers keep their data in the same database server:
#
#   bash ../shared/peers/bench.sh --shiplog-bin scripts/shiplog-on-peer-pg.sh
#
# bench.sh runs its --shiplog-bin as `BIN serve --listen ADDR --database-url sqlite://FILE`.
# This script runs target/release/shiplog (or $SHIPLOG_BIN) with the same arguments, but the
# SQLite URL replaced by a database on the peer's cluster (127.0.0.1:$PEER_PG_PORT, user
# postgres, trust): one database per SQLite URL, named from its hash and created on first
# use, so every run starts empty and a restart within a run finds its data again. It
# execs shiplog, so the PID bench.sh measures is shiplog's.
#
# Give bench.sh a --shiplog-port below the ephemeral range (e.g. --shiplog-port 25600):
# shiplog connects to PostgreSQL before it listens, and its own connections to the same
# server tend to get the same local ports from run to run, 55600 (bench.sh's default)
# among them, which then makes its listen fail with "Address already in use".
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SHIPLOG_BIN:-$ROOT/target/release/shiplog}"
PORT="${PEER_PG_PORT:-55432}"

args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--database-url" ] && [ $# -gt 1 ]; then
    name="shiplog_$(printf '%s' "$2" | sha256sum | cut -c1-16)"
    exists=$(psql -X -q -tA -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
      -c "SELECT 1 FROM pg_database WHERE datname = '$name'")
    if [ "$exists" != 1 ]; then
      psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
        -c "CREATE DATABASE $name" >&2
    fi
    args+=("--database-url" "postgres://postgres@127.0.0.1:$PORT/$name")
    shift 2
  else
    args+=("$1")
    shift
  fi
done
exec "$BIN" "${args[@]}"
