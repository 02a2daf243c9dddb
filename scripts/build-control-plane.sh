#!/usr/bin/env bash
# Build the local Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, helm) and the real node's pieces (kubelet,
# kube-proxy, CoreDNS, crictl, the pause binary and its OCI image archive) from Go
# modules into a cache folder outside the repo. Reused when present: a warm run only
# checks the binaries. Versions are pinned here and nowhere else (see docs/control-plane.md).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
# Only its PrometheusRule/ServiceMonitor CRDs (for the e2e tests of the operator's monitoring objects).
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
# The real node (PHOENIX_CP_NODES=real): cluster DNS, a CRI client for teardown, the sandbox image.
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
# The name containerd's sandbox_image and the kubelet expect; it is imported, never pulled.
PAUSE_IMAGE="registry.k8s.io/pause:3.10"

CACHE_ROOT="${PHOENIX_CACHE:-$HOME/.cache/phoenix}"
BIN="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION/bin"
WORK="$CACHE_ROOT/build"
NODE_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"
mkdir -p "$BIN" "$WORK"

log() { printf '[control-plane build] %s (%ss)\n' "$*" "$SECONDS" >&2; }

have() { [ -x "$BIN/$1" ]; }
# have_stamped NAME STAMP: the binary exists and was built from STAMP (a version or a source hash),
# so a version bump or an edited source rebuilds it although the bin dir's name did not change.
have_stamped() { have "$1" && [ "$(cat "$BIN/$1.stamp" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$BIN/$1.stamp"; }

if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || { log "Go toolchain not found (need Go >= 1.25)"; exit 1; }

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
staging_ver="v0.${K8S_VERSION#v1.}"

build_kubernetes() {
  local dir="$WORK/kubernetes-$K8S_VERSION"
  mkdir -p "$dir"
  log "kubernetes $K8S_VERSION: resolving the module (first time only)"
  local gomod
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module phoenix.local/k8sbuild"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/' "$gomod" \
      | awk -v v="$staging_ver" '{print "replace " $1 " => " $1 " " v}'
  } > "$dir/go.mod"
  cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy)
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for cmd in $K8S_CMDS; do
    if ! have "$cmd"; then
      log "building $cmd (cold: several minutes each on 2 cores)"
      (cd "$dir" && go build -tags tools -ldflags "$ld" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" && mv "$BIN/$cmd.tmp" "$BIN/$cmd")
    fi
  done
}

build_etcd() {
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  log "etcd $ETCD_VERSION: building"
  cat > "$dir/go.mod" <<GOMOD
module phoenix.local/etcdbuild

go 1.25

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
GOMOD
  cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy && go build -tags tools -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$BIN/etcd.tmp" "$BIN/etcd")
}

build_go_install() {  # name module@version
  local name="$1" mod="$2"
  log "$name: go install $mod"
  GOBIN="$WORK/gobin" go install -ldflags "-s -w" "$mod"
  mv "$WORK/gobin/$name" "$BIN/$name"
}

build_coredns() {
  local dir="$WORK/coredns-$COREDNS_VERSION"
  mkdir -p "$dir"
  log "coredns $COREDNS_VERSION: building (plugins: scripts/node/coredns/main.go)"
  cp "$NODE_SRC/coredns/main.go" "$dir/main.go"
  printf 'module phoenix.local/corednsbuild\n\ngo 1.25\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" > "$dir/go.mod"
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$BIN/coredns.tmp" . && mv "$BIN/coredns.tmp" "$BIN/coredns")
  stamp coredns "$1"
}

# The pause binary (static: the image holds nothing else) and its OCI archive named $PAUSE_IMAGE,
# which scripts/control-plane.sh imports into containerd (nothing is pulled). pause.ref holds the name.
build_pause() {
  local dir="$WORK/pause"
  mkdir -p "$dir"
  log "pause: building the static sandbox binary and its image $PAUSE_IMAGE"
  cp "$NODE_SRC/pause/main.go" "$dir/main.go"
  printf 'module phoenix.local/pause\n\ngo 1.25\n' > "$dir/go.mod"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/pause.tmp" . && mv "$BIN/pause.tmp" "$BIN/pause")
  python3 "$NODE_SRC/oci_image.py" --binary "$BIN/pause" --path /pause --name "$PAUSE_IMAGE" -o "$BIN/pause-image.oci.tar" >/dev/null
  echo "$PAUSE_IMAGE" > "$BIN/pause.ref"
  stamp pause "$1"
}

K8S_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy"
for c in $K8S_CMDS; do have "$c" || { build_kubernetes; break; }; done
have etcd || build_etcd
have kwok || build_go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
have helm || build_go_install helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
have_stamped coredns "$COREDNS_VERSION" || build_coredns "$COREDNS_VERSION"
have_stamped crictl "$CRICTL_VERSION" || { build_go_install crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"; stamp crictl "$CRICTL_VERSION"; }
pause_src="$(cat "$NODE_SRC/pause/main.go" "$NODE_SRC/oci_image.py" | sha256sum | cut -c1-16) $PAUSE_IMAGE"
{ have_stamped pause "$pause_src" && [ -s "$BIN/pause-image.oci.tar" ]; } || build_pause "$pause_src"

# kwok's stage definitions ship inside its module; keep a concatenated copy beside the binaries.
if [ ! -s "$BIN/kwok-stages.yaml" ]; then
  stage_dir="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  if [ ! -d "$stage_dir" ]; then
    (cd "$WORK" && GOFLAGS=-mod=mod go mod download "sigs.k8s.io/kwok@$KWOK_VERSION")
  fi
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$stage_dir/$f"; echo "---"
  done > "$BIN/kwok-stages.yaml.tmp"
  mv "$BIN/kwok-stages.yaml.tmp" "$BIN/kwok-stages.yaml"
fi

# The Prometheus Operator's CRDs for PrometheusRule and ServiceMonitor (real schemas, so the API server
# validates what phoenix-operator generates), from the Go module of the same name.
if [ ! -s "$BIN/prometheus-operator-crds.yaml" ]; then
  log "prometheus-operator $PROMETHEUS_OPERATOR_VERSION: PrometheusRule and ServiceMonitor CRDs"
  pdir="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  for f in monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_servicemonitors.yaml; do
    echo "---"; cat "$pdir/example/prometheus-operator-crd/$f"
  done > "$BIN/prometheus-operator-crds.yaml.tmp"
  mv "$BIN/prometheus-operator-crds.yaml.tmp" "$BIN/prometheus-operator-crds.yaml"
fi

log "ready in $BIN"
echo "$BIN"
