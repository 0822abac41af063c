#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the store tests and benchmark.
#
#   eval "$(scripts/postgres-test.sh start)"   # prints: export DINGBIND_TEST_POSTGRES_URL=...
#   cargo test --test store
#   scripts/postgres-test.sh stop              # stops the server, deletes its folder
#
#   scripts/postgres-test.sh status            # is it running? (exit 0 if so)
#
# - Server binaries: the newest /usr/lib/postgresql/*/bin (Debian's layout),
#   else initdb/pg_ctl from PATH; if neither exists and we are root with apt-get,
#   `apt-get install -y postgresql` (Debian's packages) installs them.
# - The cluster lives in a fresh temporary folder (initdb, trust auth on
#   loopback only, fsync off), on a free 127.0.0.1 port, socket in that folder.
# - PostgreSQL refuses to run as root: as root the server runs as the
#   `postgres` user if it exists, else as a `dingbind-pg` system user created
#   for it (DINGBIND_PG_USER overrides).
# - The state (folder, port, user) is kept in $DINGBIND_PG_STATE
#   (default ${TMPDIR:-/tmp}/dingbind-postgres-test.state) for `stop`.
# stdout carries only the export line; progress goes to stderr.
set -euo pipefail

STATE=${DINGBIND_PG_STATE:-${TMPDIR:-/tmp}/dingbind-postgres-test.state}
DB=dingbind
SUPERUSER=dingbind

log() { echo "postgres-test: $*" >&2; }
die() { echo "postgres-test: error: $*" >&2; exit 1; }

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  return 1
}

# Run a command as the server's user (root cannot run PostgreSQL).
as_user() {
  if [[ -n ${RUN_AS:-} ]]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

pick_user() {
  RUN_AS=
  [[ $EUID -ne 0 ]] && return 0
  RUN_AS=${DINGBIND_PG_USER:-}
  if [[ -z $RUN_AS ]]; then
    if id postgres >/dev/null 2>&1; then RUN_AS=postgres
    else
      RUN_AS=dingbind-pg
      if ! id "$RUN_AS" >/dev/null 2>&1; then
        log "creating system user $RUN_AS to run the server (PostgreSQL refuses root)"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS" \
          || die "cannot create user $RUN_AS (set DINGBIND_PG_USER to an existing unprivileged user)"
      fi
    fi
  fi
  id "$RUN_AS" >/dev/null 2>&1 || die "user $RUN_AS does not exist"
  command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is needed to run the server as $RUN_AS"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}

read_state() {
  [[ -f $STATE ]] || return 1
  # shellcheck disable=SC1090
  source "$STATE"
  [[ -n ${PGTEST_DIR:-} && -n ${PGTEST_BIN:-} ]]
}

start() {
  if read_state && as_user_state "$PGTEST_BIN/pg_ctl" -D "$PGTEST_DIR/data" status >/dev/null 2>&1; then
    log "already running ($PGTEST_DIR, port $PGTEST_PORT)"
    echo "export DINGBIND_TEST_POSTGRES_URL=postgres://$SUPERUSER@127.0.0.1:$PGTEST_PORT/$DB"
    return 0
  fi
  local bindir
  if ! bindir=$(find_bindir); then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "PostgreSQL server binaries not found; installing Debian's postgresql package"
      DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2; } \
        || die "apt-get install postgresql failed"
      bindir=$(find_bindir) || die "postgresql installed but initdb/pg_ctl still not found"
    else
      die "initdb/pg_ctl not found (install Debian's postgresql package, or put them on PATH)"
    fi
  fi
  pick_user
  local dir port
  dir=$(mktemp -d "${TMPDIR:-/tmp}/dingbind-pg.XXXXXX")
  chmod 0700 "$dir"
  [[ -n $RUN_AS ]] && chown "$RUN_AS" "$dir"
  port=$(free_port)
  log "$("$bindir/postgres" --version) in $dir, port $port${RUN_AS:+, as $RUN_AS}"
  as_user "$bindir/initdb" -D "$dir/data" -U "$SUPERUSER" --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -h 127.0.0.1 -p $port -F -c max_connections=200" start >&2 \
    || { cat "$dir/server.log" >&2; die "the server did not start"; }
  printf 'PGTEST_DIR=%q\nPGTEST_BIN=%q\nPGTEST_PORT=%q\nPGTEST_USER=%q\n' "$dir" "$bindir" "$port" "$RUN_AS" >"$STATE"
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$SUPERUSER" "$DB" || die "createdb failed"
  log "running; stop with: $0 stop"
  echo "export DINGBIND_TEST_POSTGRES_URL=postgres://$SUPERUSER@127.0.0.1:$port/$DB"
}

as_user_state() {
  if [[ -n ${PGTEST_USER:-} ]]; then runuser -u "$PGTEST_USER" -- "$@"; else "$@"; fi
}

stop() {
  if ! read_state; then
    log "nothing to stop (no $STATE)"
    return 0
  fi
  as_user_state "$PGTEST_BIN/pg_ctl" -D "$PGTEST_DIR/data" -m immediate -w stop >&2 2>/dev/null || log "server was not running"
  rm -rf "$PGTEST_DIR" "$STATE"
  log "stopped and removed $PGTEST_DIR"
}

status() {
  read_state || { log "not started"; return 1; }
  as_user_state "$PGTEST_BIN/pg_ctl" -D "$PGTEST_DIR/data" status >&2
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
