#!/bin/sh
# Run inside an image build (see scripts/images.sh): a user for uid 10001, a venv in /opt/phoenix with
# the locked wheels (hashes checked, binary only, offline) and the product wheel, bytecode compiled
# (the root filesystem is read-only at run time, so Python could not write it later).
#   install-python-app.sh DIST VERSION PIP_WHEEL
set -eu
dist="$1" version="$2" pip_wheel="$3"

# A real passwd entry for the uid the pods run as: some libraries ask for the user's name
# (Kopf calls getpass.getuser()) and crash without one.
printf 'phoenix:x:10001:10001:Phoenix:/nonexistent:/usr/sbin/nologin\n' >> /etc/passwd
printf 'phoenix:x:10001:\n' >> /etc/group

python3 -m venv --without-pip /opt/phoenix
pip() { /opt/phoenix/bin/python "/wheels/$pip_wheel/pip" "$@"; }
pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --find-links /wheels --only-binary=:all: --require-hashes --no-deps -r /lock/requirements.lock
pip install --quiet --no-index --no-cache-dir --disable-pip-version-check --no-deps \
  "/dist/$dist-$version-py3-none-any.whl"
/opt/phoenix/bin/python -m compileall -q -j 0 /opt/phoenix >/dev/null
