#!/usr/bin/env bash
# Install the Debian packages Phoenix's scripts and tests use, only those missing.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
want=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || want+=(postgresql-15)
command -v redis-server >/dev/null || want+=(redis-server)
command -v promtool >/dev/null || want+=(prometheus)
command -v openssl >/dev/null || want+=(openssl)
command -v curl >/dev/null || want+=(curl)
command -v wrk >/dev/null || want+=(wrk)
# The app developer's side: the TypeScript client, the example Next.js app and its browser test.
command -v node >/dev/null || want+=(nodejs npm)
[ -x /usr/bin/chromium ] || want+=(chromium)
# The real Kubernetes node (scripts/control-plane.sh, PHOENIX_CP_NODES=real), the images (mmdebstrap) and the local image
# registry (scripts/registry.sh): "test:package" pairs, the package wanted when the test fails.
node_packages() {
  local pair
  for pair in "command -v buildah:buildah" "command -v skopeo:skopeo" "command -v runc:runc" \
              "command -v containerd:containerd" "test -x /usr/lib/cni/bridge:containernetworking-plugins" \
              "command -v docker-registry:docker-registry" "command -v iptables:iptables" \
              "command -v mmdebstrap:mmdebstrap"; do
    ${pair%%:*} >/dev/null 2>&1 || echo "${pair##*:}"
  done
}
while IFS= read -r pkg; do want+=("$pkg"); done < <(node_packages)
if [ ${#want[@]} -gt 0 ]; then
  echo "[deps] installing: ${want[*]}" >&2
  as_root apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  # Debian's prometheus package starts a server through its init scripts on some systems; we only want promtool.
  as_root pkill -x prometheus 2>/dev/null || true
fi
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || { echo "[deps] Go toolchain missing (needed to build the control plane)" >&2; exit 1; }
