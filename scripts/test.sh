#!/usr/bin/env bash
# The README's test command: installs what it needs, starts PostgreSQL, Redis and the local
# Kubernetes control plane, then runs lint and the whole test suite (unit, integration, e2e).
#   bash scripts/test.sh [pytest args...]
# Environment: CI=true makes tests that cannot reach their real dependencies FAIL instead of skip.
#              PHOENIX_VENV (default .venv in the repo), PHOENIX_CACHE (default ~/.cache/phoenix).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n==> %s\n' "$*" >&2; }

step "system packages (PostgreSQL 15, Redis, promtool, openssl, curl)"
bash scripts/install-deps.sh

step "Python environment"
VENV="${PHOENIX_VENV:-$ROOT/.venv}"
bash scripts/venv.sh "$VENV"  # requirements-dev.lock (hash-checked) + the three distributions editable
export PATH="$VENV/bin:$PATH"

step "PostgreSQL and Redis"
bash scripts/services.sh up >/dev/null

step "Kubernetes control plane binaries (cached outside the repo; cold build ~12 min)"
bash scripts/build-control-plane.sh >/dev/null

step "lint (ruff)"
ruff check auth_service operator tools tests scripts clients
ruff format --check auth_service operator tools tests scripts clients

step "lint (mypy --strict: auth_service/phoenix_auth and operator/phoenix_operator, config in pyproject.toml)"
mypy

step "TypeScript client (clients/phoenix-client: npm ci, tsc strict, node --test, npm pack)"
command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required" >&2; exit 1; }
(
  cd clients/phoenix-client
  export npm_config_cache="${PHOENIX_CACHE:-$HOME/.cache/phoenix}/npm" npm_config_fund=false npm_config_audit=false
  npm ci --no-progress >/dev/null
  npm run --silent build
  log="$(mktemp)"
  npm test >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  grep -E '^# (tests|pass|fail) ' "$log" | tr '\n' ' ' >&2; echo >&2
  npm pack --dry-run >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  rm -f "$log"
)

step "example Next.js app (examples/nextjs, for the browser test; scripts/example.sh build)"
bash scripts/example.sh build

step "tests"
mkdir -p "$ROOT/.phoenix"
exec pytest --junitxml="$ROOT/.phoenix/junit.xml" "$@"
