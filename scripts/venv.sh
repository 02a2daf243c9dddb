#!/usr/bin/env bash
# The dev venv that scripts/test.sh and scripts/demo.sh use: requirements-dev.lock installed with its
# hashes checked, then this checkout's three distributions editable (phoenix-auth, phoenix-operator,
# phoenix-dev-tools) without touching their dependencies. Idempotent; when the lock, the pyproject
# files and VERSION are unchanged since the last install (a stamp in the venv), it does nothing.
#   bash scripts/venv.sh [VENV]     # default: $PHOENIX_VENV, else .venv in the repo
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-${PHOENIX_VENV:-$PWD/.venv}}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
py="$VENV/bin/python"
stamp="$VENV/.phoenix-dev-install"
inputs=(requirements-dev.lock pyproject.toml auth_service/pyproject.toml operator/pyproject.toml
        tools/pyproject.toml VERSION)
want="$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$VENV/bin/phoenix-auth" ] \
   && [ -x "$VENV/bin/phoenix-operator" ]; then
  exit 0
fi

# `phoenix`: the one distribution this repo built before the split; its editable finder would
# shadow the new ones.
if "$py" -m pip show -q phoenix >/dev/null 2>&1; then "$py" -m pip uninstall -q -y phoenix; fi
"$py" -m pip install -q --require-hashes -r requirements-dev.lock
# setuptools comes from the lock, so no build environment is fetched from outside it. Its output
# (a notice on every editable install) is shown only when the install fails.
log="$VENV/.phoenix-editable-install.log"
"$py" -m pip install -q --no-deps --no-build-isolation -e auth_service -e operator -e tools >"$log" 2>&1 \
  || { cat "$log" >&2; exit 1; }
echo "$want" > "$stamp"
