#!/usr/bin/env bash
# Run a real, local Kubernetes control plane on loopback: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes that make pods
# Ready and Jobs Complete). No Docker, no kubelet: see docs/control-plane.md.
#
#   scripts/control-plane.sh up       # start (idempotent: a second `up` is a no-op)
#   scripts/control-plane.sh down     # stop every process it started, keep the state
#   scripts/control-plane.sh status   # which processes run, is the API server ready
#   scripts/control-plane.sh env      # print `export KUBECONFIG=... PATH=...` for eval
#   scripts/control-plane.sh bin      # print the directory of the binaries (kubectl, helm, ...)
#   scripts/control-plane.sh wipe     # down + delete the state (PKI, etcd data, logs)
#
# Everything is configurable from the environment so a test can run a private
# instance beside the default one:
#   PHOENIX_CP_STATE        state dir (default ~/.cache/phoenix/state/cp)
#   PHOENIX_CP_BIN          binaries (default: the dir scripts/build-control-plane.sh prints)
#   PHOENIX_CP_APISERVER_PORT 6443   PHOENIX_CP_ETCD_PORT 2379   PHOENIX_CP_ETCD_PEER_PORT 2380
#   PHOENIX_CP_KCM_PORT 10257        PHOENIX_CP_SCHEDULER_PORT 10259
#   PHOENIX_CP_KWOK_PORT 10247       PHOENIX_CP_TIMEOUT 120 (seconds to wait for readiness)
#   PHOENIX_CP_KCM_QPS 200           PHOENIX_CP_KCM_BURST 400 (kube-controller-manager client limits)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${PHOENIX_CP_STATE:-$HOME/.cache/phoenix/state/cp}"
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

PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_FILE="$STATE/kubeconfig"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

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
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing in $BIN: ${missing[*]} — run scripts/build-control-plane.sh first"
  fi
}

pid_of() { [ -s "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid" || true; }
# Alive = the recorded pid runs AND is still our binary (a pid file left by a reboot may name a
# recycled pid of an unrelated process, which must be neither trusted nor killed).
alive() {
  local p; p="$(pid_of "$1")"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q -- "/$1 "
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

api_ready() {
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

# ---------------------------------------------------------------- PKI
gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ -s "$PKI/ca.crt" ] && [ -s "$PKI/apiserver.crt" ] && [ -s "$PKI/admin.crt" ] && [ -s "$PKI/sa.pub" ]; then
    return
  fi
  log "generating certificates in $PKI"
  (
    cd "$PKI"
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -nodes -key ca.key -sha256 -days 3650 -subj "/CN=phoenix-local-ca" -out ca.crt 2>/dev/null

    cat > apiserver.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
    openssl genrsa -out apiserver.key 2048 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null

    cat > client.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
    openssl genrsa -out admin.key 2048 2>/dev/null
    openssl req -new -key admin.key -subj "/O=system:masters/CN=phoenix-admin" -out admin.csr 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile client.ext -out admin.crt 2>/dev/null

    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext
    chmod 600 ./*.key
  )
}

write_kubeconfig() {
  # Certificates are embedded so the file can be copied or read from anywhere.
  local ca crt key
  ca="$(base64 -w0 "$PKI/ca.crt")"
  crt="$(base64 -w0 "$PKI/admin.crt")"
  key="$(base64 -w0 "$PKI/admin.key")"
  umask 077
  cat > "$KUBECONFIG_FILE.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: phoenix-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $ca
users:
- name: phoenix-admin
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: phoenix-local
  context:
    cluster: phoenix-local
    user: phoenix-admin
    namespace: default
current-context: phoenix-local
KC
  mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

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
  echo $! > "$PIDS/$name.pid"
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

create_node() {
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
status:
  allocatable: {cpu: "256", memory: 1Ti, pods: "1000"}
  capacity: {cpu: "256", memory: 1Ti, pods: "1000"}
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

cmd_up() {
  need_binaries
  mkdir -p "$STATE" "$LOGS" "$PIDS" "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  local all=1
  for c in "${COMPONENTS[@]}"; do alive "$c" || all=0; done
  if [ "$all" = 1 ] && [ -s "$KUBECONFIG_FILE" ] && api_ready && node_ready; then
    log "already up (https://127.0.0.1:$API_PORT, state $STATE)"
    return
  fi
  local t0=$SECONDS
  # Every port we are about to listen on must be free before anything starts.
  local spec comp port var
  for spec in "etcd:$ETCD_PORT:PHOENIX_CP_ETCD_PORT" "etcd:$ETCD_PEER_PORT:PHOENIX_CP_ETCD_PEER_PORT" \
              "kube-apiserver:$API_PORT:PHOENIX_CP_APISERVER_PORT" "kube-controller-manager:$KCM_PORT:PHOENIX_CP_KCM_PORT" \
              "kube-scheduler:$SCHED_PORT:PHOENIX_CP_SCHEDULER_PORT" "kwok:$KWOK_PORT:PHOENIX_CP_KWOK_PORT"; do
    IFS=: read -r comp port var <<<"$spec"
    if ! alive "$comp" && port_busy "$port"; then
      die "port $port (for $comp) on 127.0.0.1 is in use by another process: set $var to a free port"
    fi
  done
  gen_pki
  write_kubeconfig

  start etcd "$ETCD_PORT" "$BIN/etcd" --name phoenix --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "phoenix=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  wait_for "etcd" etcd_ready

  start kube-apiserver "$API_PORT" "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address=127.0.0.1 --secure-port="$API_PORT" \
    --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
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
  start kwok "$KWOK_PORT" "$BIN/kwok" --kubeconfig="$KUBECONFIG_FILE" --config="$BIN/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --manage-nodes-with-label-selector= --disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom \
    --disregard-status-with-label-selector= --cidr=10.244.0.0/16 --node-ip=10.0.0.2 \
    --node-lease-duration-seconds=40 --server-address="127.0.0.1:$KWOK_PORT"

  wait_for "the default ServiceAccount (controller-manager)" default_sa_ready
  create_node
  wait_for "fake node $NODE_NAME Ready (kwok)" node_ready
  log "up in $((SECONDS - t0))s: https://127.0.0.1:$API_PORT — run: eval \"\$($0 env)\""
}

# stop NAME: TERM its process group, wait up to 10 s, then KILL.
stop() {
  local name="$1" pid
  pid="$(pid_of "$name")"
  if [ -z "$pid" ]; then return; fi
  if alive "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop in 10s; killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDS/$name.pid"
}

cmd_down() {
  local c i
  # Reverse order: clients first, etcd last.
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c="${COMPONENTS[$i]}"
    stop "$c"
  done
  log "down (state kept in $STATE)"
}

cmd_status() {
  local rc=0 c
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"; else printf '%-24s stopped\n' "$c"; rc=1; fi
  done
  if [ -s "$KUBECONFIG_FILE" ] && [ -s "$PKI/admin.crt" ] && api_ready; then
    printf '%-24s ready at https://127.0.0.1:%s\n' "api /readyz" "$API_PORT"
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

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  bin) echo "$BIN" ;;
  wipe) cmd_down; rm -rf "$STATE"; log "wiped $STATE" ;;
  *) echo "usage: $0 up|down|status|env|bin|wipe" >&2; exit 2 ;;
esac
