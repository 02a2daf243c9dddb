#!/usr/bin/env bash
# Regenerate the hash-locked requirements from the pyproject files (docs/packaging.md):
#   requirements-dev.lock           phoenix-auth + phoenix-operator + phoenix-dev-tools[plot,profile]
#                                   + the root pyproject's `test` and `tooling` groups (scripts/test.sh)
#   auth_service/requirements.lock  phoenix-auth's runtime dependencies (the auth image)
#   operator/requirements.lock      phoenix-operator's runtime dependencies (the operator image)
#
#   bash scripts/lock.sh              # after a dependency change: keeps every pin still allowed
#   bash scripts/lock.sh --upgrade    # newest allowed versions of everything (any `uv pip compile` flag passes)
#
# Target: Debian 12's python3 (CPython 3.11.2, x86_64, glibc 2.36), the images' Python; the lowest 3.11
# patch release, so markers such as `python_full_version < "3.11.3"` hold and a newer 3.11 (our
# machines' pyenv 3.11.7) installs the same set. Wheels only (no compiler in an image). The runtime
# locks are resolved under the dev lock as constraints, so the tests run exactly the versions the
# images ship. Needs uv (in the dev venv; scripts/test.sh installs it) and the package index.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${PHOENIX_VENV:-$PWD/.venv}"
UV="$VENV/bin/uv"
[ -x "$UV" ] || UV="$(command -v uv || true)"
[ -n "$UV" ] || { echo "lock.sh: uv not found; run bash scripts/test.sh once (it installs uv into $VENV)" >&2; exit 1; }

common=(--quiet --generate-hashes --only-binary :all: --python-version 3.11.2
        --python-platform x86_64-manylinux_2_36 --custom-compile-command "bash scripts/lock.sh")
# The two products come from this checkout (tools/pyproject.toml's [tool.uv.sources]), never from an
# index, and are installed editable by scripts/test.sh, so they are resolved but not written.
local_products=(--no-binary phoenix-auth --no-binary phoenix-operator
                --no-emit-package phoenix-auth --no-emit-package phoenix-operator)

"$UV" pip compile "${common[@]}" "${local_products[@]}" "$@" \
  tools/pyproject.toml auth_service/pyproject.toml operator/pyproject.toml \
  --extra plot --extra profile --group pyproject.toml:test --group pyproject.toml:tooling \
  -o requirements-dev.lock
for dist in auth_service operator; do
  "$UV" pip compile "${common[@]}" "$@" "$dist/pyproject.toml" -c requirements-dev.lock \
    -o "$dist/requirements.lock"
done
echo "lock.sh: requirements-dev.lock auth_service/requirements.lock operator/requirements.lock written" >&2
