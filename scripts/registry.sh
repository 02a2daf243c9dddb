#!/usr/bin/env bash
# A local container image registry on loopback (Debian's docker-registry, i.e. distribution 2.8),
# for the real node of scripts/control-plane.sh: images are pushed here and containerd's mirrors
# (ghcr.io, docker.io, registry.k8s.io, localhost:PORT) pull from here, so nothing is pulled from
# another host. Plain HTTP on 127.0.0.1 only.
#
#   scripts/registry.sh up       # start (idempotent: a second `up` is a no-op)
#   scripts/registry.sh down     # stop it, keep the stored images
#   scripts/registry.sh status   # running? answering /v2/?
#   scripts/registry.sh addr     # print HOST:PORT (e.g. for skopeo's docker://HOST:PORT/NAME:TAG)
#   scripts/registry.sh wipe     # down + delete the stored images
#
# Push: skopeo copy --dest-tls-verify=false oci-archive:FILE docker://127.0.0.1:5000/NAME:TAG
# A pod's `ghcr.io/phoenix-dev/x:1` is then pulled as 127.0.0.1:5000/phoenix-dev/x:1 (the mirror
# keeps the repository path and drops the registry host).
#
# Environment:
#   PHOENIX_REGISTRY_PORT   5000 (listens on 127.0.0.1:PORT)
#   PHOENIX_REGISTRY_STATE  ~/.cache/phoenix/state/registry (config, data/, registry.log, registry.pid)
#   PHOENIX_REGISTRY_TIMEOUT 30 (seconds to wait for /v2/)
set -euo pipefail

PORT="${PHOENIX_REGISTRY_PORT:-5000}"
STATE="${PHOENIX_REGISTRY_STATE:-$HOME/.cache/phoenix/state/registry}"
TIMEOUT="${PHOENIX_REGISTRY_TIMEOUT:-30}"
ADDR="127.0.0.1:$PORT"
REGISTRY_BIN="${PHOENIX_REGISTRY_BIN:-/usr/bin/docker-registry}"
PID_FILE="$STATE/registry.pid"
LOG="$STATE/registry.log"
NAME="$(basename "$REGISTRY_BIN")"

log() { printf '[registry] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid() { [ -s "$PID_FILE" ] && cat "$PID_FILE" || true; }
# Alive = the recorded pid runs AND its argv[0] is the registry binary (a pid file left by a reboot
# may name a recycled pid). Right after a start the pid may still be the shell that execs it.
alive() {
  local p argv0; p="$(pid)"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
  argv0="$(tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null | head -n1)"
  [ "${argv0##*/}" = "$NAME" ]
}

answering() { curl -sf --max-time 2 "http://$ADDR/v2/" >/dev/null 2>&1; }

write_config() {
  mkdir -p "$STATE/data"
  cat > "$STATE/config.yml" <<CFG
version: 0.1
log:
  level: warn
  fields: {service: phoenix-registry}
storage:
  filesystem:
    rootdirectory: $STATE/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
CFG
}

cmd_up() {
  [ -x "$REGISTRY_BIN" ] || die "$REGISTRY_BIN not found: run scripts/install-deps.sh (Debian package docker-registry)"
  mkdir -p "$STATE"
  if alive && answering; then
    log "already up (http://$ADDR, state $STATE)"
    return
  fi
  if ! alive && ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; then
    die "port $PORT is in use by another process: set PHOENIX_REGISTRY_PORT to a free port"
  fi
  local t0=$SECONDS
  write_config
  if ! alive; then
    log "starting docker-registry on $ADDR (storage $STATE/data)"
    setsid "$REGISTRY_BIN" serve "$STATE/config.yml" >>"$LOG" 2>&1 < /dev/null &
    echo $! > "$PID_FILE"
  fi
  until answering; do
    if ! kill -0 "$(pid)" 2>/dev/null; then
      log "docker-registry exited; last lines of $LOG:"; tail -n 20 "$LOG" >&2 || true; exit 1
    fi
    if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
      log "timed out after ${TIMEOUT}s waiting for http://$ADDR/v2/"; tail -n 20 "$LOG" >&2 || true; exit 1
    fi
    sleep 0.2
  done
  log "up in $((SECONDS - t0))s: http://$ADDR (push with skopeo copy --dest-tls-verify=false ... docker://$ADDR/NAME:TAG)"
}

cmd_down() {
  local p; p="$(pid)"
  if [ -n "$p" ] && alive; then
    log "stopping docker-registry (pid $p)"
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$p" 2>/dev/null && { kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; }
  fi
  rm -f "$PID_FILE"
  log "down (images kept in $STATE/data)"
}

cmd_status() {
  if alive; then printf '%-12s running (pid %s)\n' registry "$(pid)"; else printf '%-12s stopped\n' registry; fi
  if answering; then printf '%-12s answering at http://%s/v2/\n' api "$ADDR"; return 0; fi
  printf '%-12s not answering at http://%s/v2/\n' api "$ADDR"
  return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  addr) echo "$ADDR" ;;
  wipe) cmd_down; rm -rf --one-file-system "$STATE"; log "wiped $STATE" ;;
  *) echo "usage: $0 up|down|status|addr|wipe" >&2; exit 2 ;;
esac
