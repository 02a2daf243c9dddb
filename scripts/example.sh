#!/usr/bin/env bash
# The example Next.js app (examples/nextjs) and the client package it installs.
#   bash scripts/example.sh build     # client: npm ci + build + pack; example: npm ci + the pack + next build
# npm's cache lives outside the repo (PHOENIX_CACHE, default ~/.cache/phoenix/npm). Used by
# scripts/test.sh (before the browser test) and scripts/demo.sh (which then starts the app).
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_cache="${PHOENIX_CACHE:-$HOME/.cache/phoenix}/npm" npm_config_fund=false npm_config_audit=false
export NEXT_TELEMETRY_DISABLED=1
log() { printf '[example] %s\n' "$*" >&2; }

build() {
  command -v node >/dev/null && command -v npm >/dev/null || { log "node and npm are required"; exit 1; }
  local t0=$SECONDS out tgz
  out="$(mktemp)"
  trap 'rm -f "$out"' RETURN
  log "client package: npm ci, tsc, npm pack"
  (cd clients/phoenix-client && npm ci --no-progress && npm run --silent build) >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
  tgz="$(cd clients/phoenix-client && npm pack --silent 2>/dev/null | tail -1)"
  log "example app: npm ci, the client from its archive, next build"
  (cd examples/nextjs && npm ci --no-progress && npm install --no-save --no-progress "../../clients/phoenix-client/$tgz" \
    && node node_modules/next/dist/bin/next build) >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
  rm -f "clients/phoenix-client/$tgz"
  log "built in $((SECONDS - t0))s"
}

case "${1:-}" in
  build) build ;;
  *) echo "usage: scripts/example.sh build" >&2; exit 2 ;;
esac
