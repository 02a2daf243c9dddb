#!/usr/bin/env bash
# Install (Debian packages) and start PostgreSQL and Redis on loopback, idempotently.
#   scripts/services.sh up        install if missing, start if not running, create role + databases
#   scripts/services.sh down      stop both
#   scripts/services.sh status    print what is running
#   scripts/services.sh restart-redis | stop-redis | start-redis | restart-postgres | stop-postgres | start-postgres
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
  *) echo "usage: $0 up|down|status|start-redis|stop-redis|restart-redis|start-postgres|stop-postgres|restart-postgres" >&2; exit 2 ;;
esac
