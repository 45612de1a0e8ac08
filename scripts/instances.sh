#!/usr/bin/env bash
# instances.sh: a local PostgreSQL and N shiplog instances on it, for trying shiplog with
# several instances on one machine.
#
#   scripts/instances.sh start [N]   # N instances (default 3) on 127.0.0.1:8001, :8002, ...
#   scripts/instances.sh stop        # stop the instances and the cluster
#
# PostgreSQL comes from scripts/pg-cluster.sh (installed from Debian's packages if needed).
# The binary is target/release/shiplog, built when missing; SHIPLOG_BIN names another one.
# Each instance logs to $INSTANCES_DIR/N.log (default /tmp/shiplog-instances). Extra
# shiplog flags can be given in SHIPLOG_ARGS, e.g. SHIPLOG_ARGS="--webhook-allow-private true".
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${INSTANCES_DIR:-/tmp/shiplog-instances}"
BIN="${SHIPLOG_BIN:-$ROOT/target/release/shiplog}"
FIRST_PORT="${FIRST_PORT:-8001}"

log() { printf '[instances] %s\n' "$*" >&2; }
die() { printf '[instances] error: %s\n' "$*" >&2; exit 1; }

start() {
  local n="${1:-3}" url i port
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not $n"
  if [ ! -x "$BIN" ]; then
    log "building $BIN"
    (cd "$ROOT" && cargo build --release --locked --bin shiplog >&2)
  fi
  url="$("$ROOT/scripts/pg-cluster.sh" start)"
  mkdir -p "$DIR"
  for i in $(seq 1 "$n"); do
    port=$((FIRST_PORT + i - 1))
    # shellcheck disable=SC2086
    "$BIN" --listen "127.0.0.1:$port" --database-url "$url" ${SHIPLOG_ARGS:-} >"$DIR/$i.log" 2>&1 &
    echo $! >"$DIR/$i.pid"
  done
  for i in $(seq 1 "$n"); do
    port=$((FIRST_PORT + i - 1))
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
      kill -0 "$(cat "$DIR/$i.pid")" 2>/dev/null || { cat "$DIR/$i.log" >&2; die "instance $i exited"; }
      sleep 0.1
    done
    echo "http://127.0.0.1:$port/graphql"
  done
  log "$n instances on $url; logs in $DIR; stop with: scripts/instances.sh stop"
}

stop() {
  local pid
  if [ -d "$DIR" ]; then
    for pid in "$DIR"/*.pid; do
      [ -e "$pid" ] || continue
      kill "$(cat "$pid")" 2>/dev/null || true
      rm -f "$pid"
    done
  fi
  "$ROOT/scripts/pg-cluster.sh" stop
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  *) die "usage: scripts/instances.sh start [N] | stop" ;;
esac
