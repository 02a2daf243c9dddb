#!/usr/bin/env bash
# Install (Debian packages) and start PostgreSQL and Redis on loopback, idempotently.
#   scripts/services.sh up        install if missing, start if not running, create role + databases
#   scripts/services.sh down      stop both
#   scripts/services.sh status    print what is running
#   scripts/services.sh restart-redis | stop-redis | start-redis | restart-postgres | stop-postgres | start-postgres
#   scripts/services.sh pod-access ADDR CIDR
#                                 PostgreSQL also listens on ADDR (the real node's bridge address, which
#                                 must exist) and accepts password logins from pods in CIDR; restarts it
#                                 only when that changes. Nothing else is opened: other addresses of the
#                                 machine stay closed.
# Environment: PHOENIX_PG_PORT (5432), PHOENIX_REDIS_PORT (6379), PHOENIX_STATE (~/.cache/phoenix/state).
set -euo pipefail

PG_VERSION="${PHOENIX_PG_VERSION:-15}"
PG_PORT="${PHOENIX_PG_PORT:-5432}"
REDIS_PORT="${PHOENIX_REDIS_PORT:-6379}"
STATE="${PHOENIX_STATE:-$HOME/.cache/phoenix/state}"
DB_USER=phoenix
DB_PASSWORD=phoenix
DATABASES=(phoenix phoenix_test)

log() { printf '[services] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"; as_root apt-get update -qq >/dev/null; apt_updated=1
  fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_missing() {
  local want=()
  [ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ] || want+=("postgresql-$PG_VERSION")
  command -v redis-server >/dev/null || want+=(redis-server)
  [ ${#want[@]} -eq 0 ] || apt_install "${want[@]}"
}

pg_running() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }
redis_running() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_postgres() {
  if pg_running; then log "PostgreSQL already up on 127.0.0.1:$PG_PORT"; return; fi
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$PG_VERSION main"; then
    as_root pg_createcluster "$PG_VERSION" main -p "$PG_PORT" >/dev/null
  fi
  # Loopback only, on our port: a conf.d drop-in (Debian's postgresql.conf includes conf.d/).
  printf "listen_addresses = '127.0.0.1'\nport = %s\nmax_connections = 200\n" "$PG_PORT" \
    | as_root tee "/etc/postgresql/$PG_VERSION/main/conf.d/phoenix.conf" >/dev/null
  as_root pg_ctlcluster "$PG_VERSION" main start
  for _ in $(seq 1 60); do pg_running && break; sleep 0.5; done
  pg_running || { log "PostgreSQL did not come up; see /var/log/postgresql/"; exit 1; }
  log "PostgreSQL up on 127.0.0.1:$PG_PORT"
}

psql_admin() { as_root runuser -u postgres -- psql -p "$PG_PORT" -h /var/run/postgresql -v ON_ERROR_STOP=1 -qAt "$@"; }

ensure_databases() {
  if [ "$(psql_admin -c "select 1 from pg_roles where rolname='$DB_USER'")" != 1 ]; then
    psql_admin -c "create role $DB_USER login password '$DB_PASSWORD' createdb"
  fi
  for db in "${DATABASES[@]}"; do
    if [ "$(psql_admin -c "select 1 from pg_database where datname='$db'")" != 1 ]; then
      psql_admin -c "create database $db owner $DB_USER"
    fi
  done
}

start_redis() {
  if redis_running; then log "Redis already up on 127.0.0.1:$REDIS_PORT"; return; fi
  mkdir -p "$STATE/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$STATE/redis" --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log"
  for _ in $(seq 1 50); do redis_running && break; sleep 0.1; done
  redis_running || { log "Redis did not come up; see $STATE/redis/redis.log"; exit 1; }
  log "Redis up on 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
  if redis_running; then redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
  for _ in $(seq 1 50); do redis_running || break; sleep 0.1; done
  log "Redis stopped"
}

stop_postgres() {
  as_root pg_ctlcluster "$PG_VERSION" main stop -m fast 2>/dev/null || true
  log "PostgreSQL stopped"
}

# PostgreSQL for pods of the local real node: one more listen address and one pg_hba line, both in
# files of ours (a conf.d drop-in read after phoenix.conf; a marked block in pg_hba.conf).
pod_access() {
  local addr="$1" cidr="$2" conf="/etc/postgresql/$PG_VERSION/main/conf.d/phoenix.pods.conf"  # read after phoenix.conf: conf.d is read in name order
  local hba="/etc/postgresql/$PG_VERSION/main/pg_hba.conf" want line changed=0
  [ -n "$addr" ] && [ -n "$cidr" ] || { echo "usage: $0 pod-access ADDR CIDR" >&2; exit 2; }
  case "$(ip -o -4 addr show)" in *" inet $addr/"*) ;; *) log "no interface has $addr (start the real node first)"; exit 1 ;; esac
  want="$(printf "listen_addresses = '127.0.0.1,%s'\n" "$addr")"
  if [ "$(as_root cat "$conf" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" | as_root tee "$conf" >/dev/null; changed=1
  fi
  line="host all all $cidr scram-sha-256  # phoenix: pods of the local node"
  if ! as_root grep -qxF "$line" "$hba"; then
    as_root sed -i '/# phoenix: pods of the local node$/d' "$hba"
    printf '%s\n' "$line" | as_root tee -a "$hba" >/dev/null; changed=1
  fi
  if [ "$changed" = 1 ] || ! pg_isready -q -h "$addr" -p "$PG_PORT" 2>/dev/null; then
    log "PostgreSQL: listening on $addr:$PG_PORT for pods in $cidr (restart)"
    as_root pg_ctlcluster "$PG_VERSION" main restart -m fast
    for _ in $(seq 1 60); do pg_isready -q -h "$addr" -p "$PG_PORT" 2>/dev/null && break; sleep 0.5; done
  fi
  pg_isready -q -h "$addr" -p "$PG_PORT" || { log "PostgreSQL does not answer on $addr:$PG_PORT"; exit 1; }
  echo "DATABASE_URL=postgresql://$DB_USER:$DB_PASSWORD@$addr:$PG_PORT/phoenix"
}

case "${1:-up}" in
  up)
    install_missing; start_postgres; ensure_databases; start_redis
    echo "DATABASE_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/phoenix"
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" ;;
  down) stop_redis; stop_postgres ;;
  status)
    pg_running && echo "postgresql: up (127.0.0.1:$PG_PORT)" || echo "postgresql: down"
    redis_running && echo "redis: up (127.0.0.1:$REDIS_PORT)" || echo "redis: down" ;;
  start-redis) start_redis ;;
  stop-redis) stop_redis ;;
  restart-redis) stop_redis; start_redis ;;
  start-postgres) start_postgres ;;
  stop-postgres) stop_postgres ;;
  restart-postgres) stop_postgres; start_postgres ;;
  pod-access) pod_access "${2:-}" "${3:-}" ;;
  *) echo "usage: $0 up|down|status|start-redis|stop-redis|restart-redis|start-postgres|stop-postgres|restart-postgres|pod-access ADDR CIDR" >&2; exit 2 ;;
esac
