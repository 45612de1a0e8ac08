#!/usr/bin/env bash
# pg-cluster.sh: a throwaway PostgreSQL cluster on 127.0.0.1, for trying shiplog on PostgreSQL
# and for the multi-instance demo.
#
#   scripts/pg-cluster.sh start   # install PostgreSQL if needed, start a cluster, print its URL
#   scripts/pg-cluster.sh url     # print the URL of the running cluster
#   scripts/pg-cluster.sh stop    # stop it and remove its directory
#
#   url=$(scripts/pg-cluster.sh start)
#   cargo run -p migration -- -u "$url" up
#
# The URL (stdout, nothing else goes there) is postgres://postgres@127.0.0.1:PORT/DATABASE.
# Everything lives in one directory, PGDATA_DIR (default /tmp/shiplog-pg): data/, sock/,
# postgres.log, port. The server listens on 127.0.0.1 only (and on a socket in sock/), trusts
# every local connection, keeps fsync and synchronous_commit on, and allows 200 connections.
#
# Environment:
#   PGDATA_DIR      the cluster's directory (default /tmp/shiplog-pg)
#   PG_PORT         the port (default: a free one, chosen at the first start and kept)
#   PG_DATABASE     the database `start` creates and the URL names (default shiplog)
#   SHIPLOG_PG_BIN  the directory of initdb, pg_ctl, postgres and psql; otherwise
#                   `pg_config --bindir`, then the highest /usr/lib/postgresql/*/bin; when none
#                   has them, `start` installs Debian's postgresql package (with sudo when not root)
#
# initdb and postgres refuse to run as root: as root they run as the `postgres` user (Debian's
# package creates it), or a system user `shiplog-pg` created for the purpose.
set -euo pipefail

DIR="${PGDATA_DIR:-/tmp/shiplog-pg}"
DATABASE="${PG_DATABASE:-shiplog}"
HOST=127.0.0.1
DATA="$DIR/data"
SOCK="$DIR/sock"
LOG="$DIR/postgres.log"
MARK="$DIR/.shiplog-pg-cluster" # what tells `stop` that this directory is ours to remove

log() { printf '[pg-cluster] %s\n' "$*" >&2; }
die() { printf '[pg-cluster] error: %s\n' "$*" >&2; exit 1; }

has_server() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ] && [ -x "$1/psql" ]; }

# find_bin: the binaries' directory on stdout, or nothing (the same order as the testpg crate)
find_bin() {
  if [ -n "${SHIPLOG_PG_BIN:-}" ]; then
    has_server "$SHIPLOG_PG_BIN" && echo "$SHIPLOG_PG_BIN"
    return 0
  fi
  local dir
  if dir=$(pg_config --bindir 2>/dev/null) && has_server "$dir"; then echo "$dir"; return 0; fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
    if has_server "$dir"; then echo "$dir"; return 0; fi
  done
}

install_postgresql() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "PostgreSQL is not installed and there is no sudo: install the postgresql package"
    sudo="sudo"
  fi
  log "PostgreSQL not found: installing Debian's postgresql package"
  $sudo apt-get update >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
}

# The user PostgreSQL runs as: empty for this user, else a system user (when root).
pg_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if id postgres >/dev/null 2>&1; then echo postgres; return 0; fi
  id shiplog-pg >/dev/null 2>&1 ||
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shiplog-pg >&2 ||
    id shiplog-pg >/dev/null 2>&1 || die "running as root, no postgres user, and useradd failed"
  echo shiplog-pg
}

as_pg() {
  if [ -n "$PGUSER_RUN" ]; then runuser -u "$PGUSER_RUN" -- "$@"; else "$@"; fi
}

running() { [ -n "${BIN:-}" ] && [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

url() { echo "postgres://postgres@$HOST:$(cat "$DIR/port")/$DATABASE"; }

port_taken() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

free_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    port_taken "$p" || { echo "$p"; return 0; }
  done
  die "no free port found"
}

init_cluster() {
  log "initdb $DATA"
  mkdir -p "$DIR" "$SOCK"
  touch "$MARK"
  chmod 700 "$DIR" "$SOCK"
  [ -z "$PGUSER_RUN" ] || chown "$PGUSER_RUN:" "$DIR" "$SOCK"
  (cd / && as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1) ||
    { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  cat >>"$DATA/postgresql.conf" <<EOF

# --- scripts/pg-cluster.sh: loopback only, durable commits, many connections ---
listen_addresses = '$HOST'
unix_socket_directories = '$SOCK'
max_connections = 200
fsync = on
synchronous_commit = on
timezone = 'UTC'
log_timezone = 'UTC'
EOF
  cat >"$DATA/pg_hba.conf" <<EOF
# scripts/pg-cluster.sh: trust, from this machine only
local all all               trust
host  all all 127.0.0.1/32  trust
EOF
}

start() {
  BIN=$(find_bin)
  if [ -z "$BIN" ]; then
    [ -z "${SHIPLOG_PG_BIN:-}" ] || die "SHIPLOG_PG_BIN=$SHIPLOG_PG_BIN has no initdb, pg_ctl, postgres and psql"
    install_postgresql
    BIN=$(find_bin)
    [ -n "$BIN" ] || die "PostgreSQL was installed but its binaries were not found"
  fi
  PGUSER_RUN=$(pg_user)
  if running; then
    log "already running ($DIR)"
    url
    return 0
  fi
  if [ -e "$DIR" ] && [ ! -f "$MARK" ]; then
    die "$DIR exists and was not made by this script; set PGDATA_DIR to another directory"
  fi
  [ -f "$DATA/PG_VERSION" ] || init_cluster
  [ -z "$PGUSER_RUN" ] || { touch "$LOG"; chown "$PGUSER_RUN:" "$LOG"; }
  local attempt port
  for attempt in 1 2 3 4 5 6 7 8; do
    port="${PG_PORT:-}"
    if [ -z "$port" ]; then
      if [ -s "$DIR/port" ] && ! port_taken "$(cat "$DIR/port")"; then port=$(cat "$DIR/port"); else port=$(free_port); fi
    fi
    echo "$port" >"$DIR/port"
    : >"$LOG"
    log "starting PostgreSQL ($BIN) on $HOST:$port"
    if (cd / && as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $port" -w -t 120 start >&2); then
      break
    fi
    if [ -n "${PG_PORT:-}" ] || ! grep -q -e 'Address already in use' -e 'could not bind' "$LOG"; then
      tail -20 "$LOG" >&2
      die "PostgreSQL did not start (log: $LOG)"
    fi
    log "port $port was taken; trying another"
    rm -f "$DIR/port"
    [ "$attempt" -lt 8 ] || die "PostgreSQL did not start: no port could be had"
  done
  if [ "$("$BIN/psql" -X -A -t -h "$HOST" -p "$port" -U postgres -d postgres \
      -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$port" -U postgres -d postgres \
      -c "CREATE DATABASE \"$DATABASE\"" >&2
  fi
  url
}

stop() {
  BIN=$(find_bin)
  PGUSER_RUN=$(pg_user)
  if [ ! -e "$DIR" ]; then log "nothing at $DIR"; return 0; fi
  [ -f "$MARK" ] || die "$DIR was not made by this script; not removing it"
  if running; then
    log "stopping PostgreSQL ($DIR)"
    (cd / && as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >&2) ||
      (cd / && as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate -w -t 60 stop >&2)
  fi
  rm -rf -- "$DIR"
  log "removed $DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url)
    BIN=$(find_bin)
    PGUSER_RUN=$(pg_user)
    running || die "no cluster running at $DIR (scripts/pg-cluster.sh start)"
    url
    ;;
  *)
    echo "usage: $0 start|stop|url   (PGDATA_DIR=$DIR)" >&2
    exit 2
    ;;
esac
