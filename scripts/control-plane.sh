#!/usr/bin/env bash
# Run a real, local Kubernetes control plane on loopback: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and nodes: kwok (fake nodes that make pods
# Ready and Jobs Complete without running anything) and/or a real node (containerd,
# kubelet, kube-proxy and CoreDNS on this machine, pods really run). No Docker: see
# docs/control-plane.md.
#
#   scripts/control-plane.sh up       # start (idempotent: a second `up` is a no-op)
#   scripts/control-plane.sh down     # stop every process it started, keep the state
#   scripts/control-plane.sh status   # which processes run, is the API server ready
#   scripts/control-plane.sh env      # print `export KUBECONFIG=... PATH=...` for eval
#   scripts/control-plane.sh bin      # print the directory of the binaries (kubectl, helm, ...)
#   scripts/control-plane.sh wipe     # down + delete the state (PKI, etcd data, logs)
#   scripts/control-plane.sh forget-images REF...  # the real node drops these tags, so the next pod
#                                     # pulls what the registry has now (a rebuilt image keeps its tag)
#
# Everything is configurable from the environment so a test can run a private
# instance beside the default one:
#   PHOENIX_CP_STATE        state dir (default ~/.cache/phoenix/state/cp)
#   PHOENIX_CP_BIN          binaries (default: the dir scripts/build-control-plane.sh prints)
#   PHOENIX_CP_APISERVER_PORT 6443   PHOENIX_CP_ETCD_PORT 2379   PHOENIX_CP_ETCD_PEER_PORT 2380
#   PHOENIX_CP_KCM_PORT 10257        PHOENIX_CP_SCHEDULER_PORT 10259
#   PHOENIX_CP_KWOK_PORT 10247       PHOENIX_CP_TIMEOUT 120 (seconds to wait for readiness)
#   PHOENIX_CP_KCM_QPS 200           PHOENIX_CP_KCM_BURST 400 (kube-controller-manager client limits)
#   PHOENIX_CP_NODES        kwok (default) | real | real,kwok — which nodes `up` brings; unset, the
#                           mode the state dir last ran with
#   PHOENIX_CP_NODE         kwok-node-0 (the fake node's name)
#   PHOENIX_CP_KWOK_CIDR    10.246.0.0/16 (addresses kwok hands its fake pods; off the real pod subnet)
#
# The real node (PHOENIX_CP_NODES=real or real,kwok; root only) is ONE per machine: its bridge,
# iptables chains, kubelet ports and DNS address are host-wide. A second real node from another
# state dir is refused naming the state dir that holds it; kwok-only instances run beside it.
#   PHOENIX_CP_POD_CIDR     10.244.0.0/24 (pod addresses, on the bridge)
#   PHOENIX_CP_NODE_IP      the pod subnet's first address (10.244.0.1): the bridge's gateway, the
#                           node's InternalIP, the API server's advertised address and CoreDNS's
#                           address; host services listening there are reachable from pods
#   PHOENIX_CP_BRIDGE       phx0 (created by `up`, deleted by `down`)
#   PHOENIX_CP_REAL_NODE    $(hostname) (the node's name; must resolve locally, for logs/exec)
#   PHOENIX_CP_KUBELET_PORT 10250  PHOENIX_CP_KUBELET_HEALTHZ_PORT 10248 (both on 127.0.0.1)
#   PHOENIX_CP_PROXY_HEALTHZ_PORT 10256  PHOENIX_CP_PROXY_METRICS_PORT 10249 (kube-proxy, 127.0.0.1)
#   PHOENIX_CP_DNS_HEALTH_PORT 10253     PHOENIX_CP_DNS_READY_PORT 10254 (CoreDNS, 127.0.0.1)
#   PHOENIX_CP_MIRRORED     "ghcr.io docker.io registry.k8s.io" (registries containerd pulls from
#                           the local registry instead; localhost:PORT and 127.0.0.1:PORT too)
#   PHOENIX_REGISTRY_PORT   5000 (the local registry, scripts/registry.sh, on 127.0.0.1)
#   PHOENIX_CP_HOST_DIR     /run/phoenix (the machine-wide owner file of the real node)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$(realpath -m "${PHOENIX_CP_STATE:-$HOME/.cache/phoenix/state/cp}")"
API_PORT="${PHOENIX_CP_APISERVER_PORT:-6443}"
ETCD_PORT="${PHOENIX_CP_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${PHOENIX_CP_ETCD_PEER_PORT:-2380}"
KCM_PORT="${PHOENIX_CP_KCM_PORT:-10257}"
SCHED_PORT="${PHOENIX_CP_SCHEDULER_PORT:-10259}"
KWOK_PORT="${PHOENIX_CP_KWOK_PORT:-10247}"
TIMEOUT="${PHOENIX_CP_TIMEOUT:-120}"
# Service ClusterIPs: a /16 (65k) — a /24 ran out at ~125 PhoenixAuths (2 Services each) in the
# scale benchmark ("failed to allocate a serviceIP: range is full"). Its first address stays
# 10.0.0.1, the `kubernetes` Service IP the API-server certificate names.
SERVICE_CIDR="10.0.0.0/16"
# kube-controller-manager's client rate limit. Its defaults (--kube-api-qps=20, --kube-api-burst=30)
# capped the ReplicaSet controller at ~10 pods created per second (a pod create and a ReplicaSet
# status update share each controller's budget), which alone made 200 PhoenixAuths (800 pods)
# take ~80 s to become Ready however fast the operator is. Production clusters of this size run
# with higher limits (and kwok's scale guides raise them), so the test bed does too.
KCM_QPS="${PHOENIX_CP_KCM_QPS:-200}"
KCM_BURST="${PHOENIX_CP_KCM_BURST:-400}"
NODE_NAME="${PHOENIX_CP_NODE:-kwok-node-0}"
KWOK_CIDR="${PHOENIX_CP_KWOK_CIDR:-10.246.0.0/16}"
# Unset: the mode this state dir last ran with (so `status`/`down` need no flag), else kwok.
NODES="${PHOENIX_CP_NODES:-$(cat "$STATE/nodes" 2>/dev/null || echo kwok)}"
case "$NODES" in
  kwok) WANT_KWOK=1 WANT_REAL=0 ;;
  real) WANT_KWOK=0 WANT_REAL=1 ;;
  real,kwok | kwok,real) WANT_KWOK=1 WANT_REAL=1 NODES=real,kwok ;;
  *) echo "[control-plane] ERROR: PHOENIX_CP_NODES must be kwok, real or real,kwok (got '$NODES')" >&2; exit 2 ;;
esac
POD_CIDR="${PHOENIX_CP_POD_CIDR:-10.244.0.0/24}"
read -r POD_PREFIX POD_GATEWAY < <(python3 -c 'import ipaddress, sys; n = ipaddress.ip_network(sys.argv[1]); print(n.prefixlen, n[1])' "$POD_CIDR") \
  || { echo "[control-plane] ERROR: PHOENIX_CP_POD_CIDR '$POD_CIDR' is not an IPv4 network" >&2; exit 2; }
NODE_IP="${PHOENIX_CP_NODE_IP:-$POD_GATEWAY}"
BRIDGE="${PHOENIX_CP_BRIDGE:-phx0}"
REAL_NODE="${PHOENIX_CP_REAL_NODE:-$(hostname)}"
KUBELET_PORT="${PHOENIX_CP_KUBELET_PORT:-10250}"
KUBELET_HEALTHZ_PORT="${PHOENIX_CP_KUBELET_HEALTHZ_PORT:-10248}"
PROXY_HEALTHZ_PORT="${PHOENIX_CP_PROXY_HEALTHZ_PORT:-10256}"
PROXY_METRICS_PORT="${PHOENIX_CP_PROXY_METRICS_PORT:-10249}"
DNS_HEALTH_PORT="${PHOENIX_CP_DNS_HEALTH_PORT:-10253}"
DNS_READY_PORT="${PHOENIX_CP_DNS_READY_PORT:-10254}"
MIRRORED="${PHOENIX_CP_MIRRORED:-ghcr.io docker.io registry.k8s.io}"
REGISTRY="127.0.0.1:${PHOENIX_REGISTRY_PORT:-5000}"
HOST_DIR="${PHOENIX_CP_HOST_DIR:-/run/phoenix}"

PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_FILE="$STATE/kubeconfig"
CP_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
NODE_COMPONENTS=(containerd kubelet kube-proxy coredns)
# What this mode runs (checked by `up`, `status` and the waits); `down` stops every recorded one.
COMPONENTS=("${CP_COMPONENTS[@]}")
[ "$WANT_KWOK" = 1 ] && COMPONENTS+=(kwok)
[ "$WANT_REAL" = 1 ] && COMPONENTS+=("${NODE_COMPONENTS[@]}")
ALL_COMPONENTS=("${CP_COMPONENTS[@]}" kwok "${NODE_COMPONENTS[@]}")

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The cache dir of the pinned versions, derived the same way as the build script does.
default_bin() {
  local k8s="${K8S_VERSION:-v1.36.3}" etcd="${ETCD_VERSION:-v3.6.16}" kwok="${KWOK_VERSION:-v0.8.0}" helm="${HELM_VERSION:-v4.3.1}"
  echo "${PHOENIX_CACHE:-$HOME/.cache/phoenix}/k8s-$k8s-etcd-$etcd-kwok-$kwok-helm-$helm/bin"
}
BIN="${PHOENIX_CP_BIN:-$(default_bin)}"

need_binaries() {
  local missing=()
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [ -x "$BIN/$b" ] || missing+=("$b")
  done
  [ -s "$BIN/kwok-stages.yaml" ] || missing+=("kwok-stages.yaml")
  if [ "$WANT_REAL" = 1 ]; then
    for b in kubelet kube-proxy coredns crictl; do [ -x "$BIN/$b" ] || missing+=("$b"); done
    [ -s "$BIN/pause-image.oci.tar" ] && [ -s "$BIN/pause.ref" ] || missing+=("pause-image.oci.tar")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing in $BIN: ${missing[*]} — run scripts/build-control-plane.sh first"
  fi
}

pid_of() { [ -s "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid" || true; }
# pid_is PID NAME: PID runs and its argv[0] is the binary NAME (a pid file left by a reboot may name
# a recycled pid of an unrelated process, which must be neither trusted nor killed).
pid_is() {
  local argv0
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  argv0="$(tr '\0' '\n' 2>/dev/null < "/proc/$1/cmdline" | head -n1)"
  [ "${argv0##*/}" = "$2" ]
}
alive() { pid_is "$(pid_of "$1")" "$1"; }

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
  findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1 { print length($0) " " $0 }' \
    | sort -rn | cut -d' ' -f2- | uniq
}

api_ready() {
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

# ---------------------------------------------------------------- PKI
# The API server's serving names: loopback, the `kubernetes` Service (10.0.0.1 and its DNS names) and
# the node address pods reach it on when a real node runs.
APISERVER_SANS="IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,IP:$NODE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

# sign_cert NAME SUBJECT EXTRA_EXTENSIONS: $PKI/NAME.key and NAME.crt signed by the local CA.
sign_cert() {
  local name="$1" subject="$2" extra="$3"
  (
    cd "$PKI"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n%s\n' "$extra" > "$name.ext"
    openssl genrsa -out "$name.key" 2048 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
    chmod 600 "$name.key"
  )
}

# has_sans CERT: the certificate names every entry of $APISERVER_SANS (state made before the node
# address was added gets a new serving certificate, same CA).
has_sans() {
  local have want
  have="$(openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' ' | sed 's/IPAddress:/IP:/g')"
  for want in ${APISERVER_SANS//,/ }; do
    case ",$have," in *",$want,"*) ;; *) return 1 ;; esac
  done
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -s "$PKI/ca.crt" ]; then
    log "generating certificates in $PKI"
    (
      cd "$PKI"
      openssl genrsa -out ca.key 2048 2>/dev/null
      openssl req -x509 -new -nodes -key ca.key -sha256 -days 3650 -subj "/CN=phoenix-local-ca" -out ca.crt 2>/dev/null
      chmod 600 ca.key
    )
  fi
  if [ ! -s "$PKI/apiserver.crt" ] || ! has_sans "$PKI/apiserver.crt"; then
    [ -s "$PKI/apiserver.crt" ] && log "the API server certificate lacks $NODE_IP: issuing a new one"
    sign_cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=$APISERVER_SANS"
  fi
  [ -s "$PKI/admin.crt" ] || sign_cert admin "/O=system:masters/CN=phoenix-admin" "extendedKeyUsage=clientAuth"
  if [ ! -s "$PKI/sa.pub" ]; then
    (cd "$PKI" && openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null && chmod 600 sa.key)
  fi
}

# write_kubeconfig_for FILE USER CERT_NAME: a kubeconfig for $PKI/CERT_NAME.{crt,key}.
# Certificates are embedded so the file can be copied or read from anywhere.
write_kubeconfig_for() {
  local file="$1" user="$2" ca crt key
  ca="$(base64 -w0 "$PKI/ca.crt")"
  crt="$(base64 -w0 "$PKI/$3.crt")"
  key="$(base64 -w0 "$PKI/$3.key")"
  (
    umask 077
    cat > "$file.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: phoenix-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: phoenix-local
  context:
    cluster: phoenix-local
    user: $user
    namespace: default
current-context: phoenix-local
KC
    mv "$file.tmp" "$file"
  )
}

write_kubeconfig() { write_kubeconfig_for "$KUBECONFIG_FILE" phoenix-admin admin; }

# ---------------------------------------------------------------- processes
# start NAME PORT CMD...: its own session (process group) so `down` can stop it and
# everything it spawned; output to $LOGS/NAME.log.
start() {
  local name="$1" port="$2"; shift 2
  if alive "$name"; then
    return
  fi
  log "starting $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$PIDS/$name.pid"
  # Until setsid has exec'd the binary, /proc/PID/cmdline still names bash or setsid and alive()
  # would call a starting process dead: wait (5 s at most) for the exec or the exit.
  local _
  for _ in $(seq 1 100); do
    pid_is "$pid" "$name" && return
    kill -0 "$pid" 2>/dev/null || return
    sleep 0.05
  done
}

# wait_for DESCRIPTION COMMAND...: poll with a deadline, show progress, fail with the logs' tail.
wait_for() {
  local what="$1"; shift
  local start_s=$SECONDS last=-1
  until "$@"; do
    local waited=$((SECONDS - start_s))
    if [ "$waited" -ge "$TIMEOUT" ]; then
      log "timed out after ${TIMEOUT}s waiting for $what"
      for c in "${COMPONENTS[@]}"; do
        if ! alive "$c"; then log "$c is not running; last lines of $LOGS/$c.log:"; tail -n 15 "$LOGS/$c.log" >&2 || true; fi
      done
      exit 1
    fi
    for c in "${COMPONENTS[@]}"; do
      if [ -s "$PIDS/$c.pid" ] && ! alive "$c"; then
        log "$c exited while waiting for $what; last lines of $LOGS/$c.log:"
        tail -n 25 "$LOGS/$c.log" >&2 || true
        exit 1
      fi
    done
    if [ $((waited / 5)) -ne "$last" ] && [ "$waited" -gt 0 ]; then
      last=$((waited / 5)); log "  waiting for $what (${waited}s)"
    fi
    sleep 0.5
  done
}

etcd_ready() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
default_sa_ready() { kubectl_ get serviceaccount default -n default >/dev/null 2>&1; }
node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = "True" ]
}

# Beside a real node, the fake node is tainted: only pods that tolerate it (and ask for it) land there.
# Room for 5,000 pods: the operator benchmark at N=1,000 PhoenixAuths runs ~3,000 on it (a cap of 1,000
# left two thirds Pending, "Too many pods", whatever the operator did).
create_node() {
  local KWOK_TAINTS="[]"
  [ "$WANT_REAL" = 0 ] || KWOK_TAINTS='[{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]'
  kubectl_ apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $NODE_NAME
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec:
  taints: $KWOK_TAINTS
status:
  allocatable: {cpu: "4096", memory: 16Ti, pods: "5000"}
  capacity: {cpu: "4096", memory: 16Ti, pods: "5000"}
NODE
}

# State made before SERVICE_CIDR was widened keeps its /24 default ServiceCIDR (the API server
# never rewrites it); an extra ServiceCIDR object extends the range in place. Idempotent.
widen_service_cidr() {
  kubectl_ apply -f - >/dev/null <<CIDR
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: phoenix-services
spec:
  cidrs: ["$SERVICE_CIDR"]
CIDR
}

# shellcheck source-path=SCRIPTDIR source=node/real-node.sh
. "$HERE/node/real-node.sh"

# All nodes this mode wants are Ready (and the real node's DNS answers).
nodes_ready() {
  { [ "$WANT_KWOK" = 0 ] || node_ready; } && { [ "$WANT_REAL" = 0 ] || { real_node_ready && dns_answers; }; }
}

cmd_up() {
  need_binaries
  [ "$WANT_REAL" = 0 ] || node_preflight
  mkdir -p "$STATE" "$LOGS" "$PIDS" "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  # The API server's flags depend on the mode: switching needs a restart.
  local was_mode
  was_mode="$(cat "$STATE/nodes" 2>/dev/null || echo kwok)"
  if [ "$was_mode" != "$NODES" ] && alive kube-apiserver; then
    die "this control plane ($STATE) runs with PHOENIX_CP_NODES=$was_mode: run \`$0 down\` first to switch to $NODES"
  fi
  local all=1
  for c in "${COMPONENTS[@]}"; do alive "$c" || all=0; done
  if [ "$all" = 1 ] && [ -s "$KUBECONFIG_FILE" ] && api_ready && nodes_ready; then
    log "already up (https://127.0.0.1:$API_PORT, state $STATE, nodes: $NODES)"
    return
  fi
  local t0=$SECONDS
  # A pid file whose process is gone (a crash, a reboot) would read as "exited while waiting".
  for c in "${ALL_COMPONENTS[@]}"; do alive "$c" || rm -f "$PIDS/$c.pid"; done
  # The real node is one per machine: claim it before anything starts.
  [ "$WANT_REAL" = 0 ] || node_claim
  # Every port we are about to listen on must be free before anything starts.
  local spec comp port var specs
  specs=("etcd:$ETCD_PORT:PHOENIX_CP_ETCD_PORT" "etcd:$ETCD_PEER_PORT:PHOENIX_CP_ETCD_PEER_PORT"
         "kube-apiserver:$API_PORT:PHOENIX_CP_APISERVER_PORT" "kube-controller-manager:$KCM_PORT:PHOENIX_CP_KCM_PORT"
         "kube-scheduler:$SCHED_PORT:PHOENIX_CP_SCHEDULER_PORT")
  [ "$WANT_KWOK" = 0 ] || specs+=("kwok:$KWOK_PORT:PHOENIX_CP_KWOK_PORT")
  [ "$WANT_REAL" = 0 ] || specs+=("kubelet:$KUBELET_PORT:PHOENIX_CP_KUBELET_PORT" "kubelet:$KUBELET_HEALTHZ_PORT:PHOENIX_CP_KUBELET_HEALTHZ_PORT"
         "kube-proxy:$PROXY_HEALTHZ_PORT:PHOENIX_CP_PROXY_HEALTHZ_PORT" "kube-proxy:$PROXY_METRICS_PORT:PHOENIX_CP_PROXY_METRICS_PORT"
         "coredns:$DNS_HEALTH_PORT:PHOENIX_CP_DNS_HEALTH_PORT" "coredns:$DNS_READY_PORT:PHOENIX_CP_DNS_READY_PORT")
  for spec in "${specs[@]}"; do
    IFS=: read -r comp port var <<<"$spec"
    if ! alive "$comp" && port_busy "$port"; then
      die "port $port (for $comp) on 127.0.0.1 is in use by another process: set $var to a free port"
    fi
  done
  [ "$WANT_REAL" = 0 ] || node_check_dns_port
  gen_pki
  [ "$WANT_REAL" = 0 ] || node_pki
  write_kubeconfig
  echo "$NODES" > "$STATE/nodes"

  start etcd "$ETCD_PORT" "$BIN/etcd" --name phoenix --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "phoenix=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  wait_for "etcd" etcd_ready

  # kwok only: loopback, no endpoints (a loopback address may not be one). A real node's pods reach
  # the API server through the `kubernetes` Service, whose endpoint is the node address.
  local api_net=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
  if [ "$WANT_REAL" = 1 ]; then
    api_net=(--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --endpoint-reconciler-type=lease
      --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
      --kubelet-certificate-authority="$PKI/ca.crt")
  fi
  start kube-apiserver "$API_PORT" "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --secure-port="$API_PORT" "${api_net[@]}" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --allow-privileged=true
  wait_for "kube-apiserver /readyz" api_ready
  widen_service_cidr

  start kube-controller-manager "$KCM_PORT" "$BIN/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE" \
    --authorization-kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true --controllers='*,-nodeipam' \
    --kube-api-qps="$KCM_QPS" --kube-api-burst="$KCM_BURST"
  start kube-scheduler "$SCHED_PORT" "$BIN/kube-scheduler" \
    --kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE" \
    --authorization-kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT"
  # The heartbeat stage patches node status only every ~10 min; without a node Lease the node
  # lifecycle controller declares the node lost after ~50 s, marks its pods NotReady and taints it.
  # --node-lease-duration-seconds makes kwok renew a Lease like a kubelet does.
  if [ "$WANT_KWOK" = 1 ]; then
    start kwok "$KWOK_PORT" "$BIN/kwok" --kubeconfig="$KUBECONFIG_FILE" --config="$BIN/kwok-stages.yaml" \
      --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
      --manage-nodes-with-label-selector= --disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom \
      --disregard-status-with-label-selector= --cidr="$KWOK_CIDR" --node-ip=10.0.0.2 \
      --node-lease-duration-seconds=40 --server-address="127.0.0.1:$KWOK_PORT"
  fi

  wait_for "the default ServiceAccount (controller-manager)" default_sa_ready
  if [ "$WANT_KWOK" = 1 ]; then
    create_node
    wait_for "fake node $NODE_NAME Ready (kwok)" node_ready
  fi
  [ "$WANT_REAL" = 0 ] || node_up
  log "up in $((SECONDS - t0))s: https://127.0.0.1:$API_PORT (nodes: $NODES) — run: eval \"\$($0 env)\""
}

# stop NAME: TERM its process group, wait up to 10 s, then KILL.
# stop NAME...: TERM each one's process group at once (they shut down in parallel), wait up to 10 s
# for all, then KILL what is left.
stop() {
  local name pid pids=() names=()
  for name in "$@"; do
    pid="$(pid_of "$name")"
    if [ -n "$pid" ] && alive "$name"; then
      log "stopping $name (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid") names+=("$name")
    fi
  done
  local i left
  for _ in $(seq 1 100); do
    left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      log "${names[$i]} did not stop in 10s; killing"
      kill -KILL -- "-${pids[$i]}" 2>/dev/null || kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}

cmd_down() {
  # The real node first (its pods, mounts, bridge, iptables chains), whatever mode is set now.
  if node_present; then node_down || log "WARNING: the real node's teardown was incomplete (see above)"; fi
  # The API server's clients and the API server together, etcd last.
  stop kwok kube-scheduler kube-controller-manager kube-apiserver
  stop etcd
  log "down (state kept in $STATE)"
}

cmd_wipe() {
  cmd_down
  local left
  left="$(mounts_under "$STATE")"
  [ -z "$left" ] || die "not deleting $STATE: still mounted under it: $left"
  rm -rf --one-file-system "$STATE"
  log "wiped $STATE"
}

cmd_status() {
  local rc=0 c
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"; else printf '%-24s stopped\n' "$c"; rc=1; fi
  done
  if [ -s "$KUBECONFIG_FILE" ] && [ -s "$PKI/admin.crt" ] && api_ready; then
    printf '%-24s ready at https://127.0.0.1:%s\n' "api /readyz" "$API_PORT"
    if [ "$WANT_REAL" = 1 ]; then
      if real_node_ready; then printf '%-24s Ready (%s, pods %s, bridge %s)\n' "node $REAL_NODE" "$NODE_IP" "$POD_CIDR" "$BRIDGE"
      else printf '%-24s not Ready\n' "node $REAL_NODE"; rc=1; fi
      if dns_answers; then printf '%-24s answering on %s:53\n' "cluster DNS" "$NODE_IP"
      else printf '%-24s not answering on %s:53\n' "cluster DNS" "$NODE_IP"; rc=1; fi
    fi
  else
    printf '%-24s not ready\n' "api /readyz"; rc=1
  fi
  printf '%-24s %s\n' kubeconfig "$KUBECONFIG_FILE"
  return $rc
}

cmd_env() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
}

# The node keeps a pulled tag and IfNotPresent never asks again, so a rebuilt image pushed under the
# same version tag would not reach new pods: drop the tags (running containers keep their layers).
cmd_forget_images() {
  [ "$WANT_REAL" = 1 ] && alive containerd || return 0
  local ref
  for ref in "$@"; do
    ctr_ images rm "$ref" >/dev/null 2>&1 && log "node forgot $ref" || true
  done
}

case "${1:-}" in
  up) cmd_up ;;
  forget-images) shift; cmd_forget_images "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  bin) echo "$BIN" ;;
  wipe) cmd_wipe ;;
  *) echo "usage: $0 up|down|status|env|bin|wipe|forget-images REF..." >&2; exit 2 ;;
esac
