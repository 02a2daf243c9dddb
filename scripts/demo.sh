#!/usr/bin/env bash
# The README's main job: Phoenix running on this machine the way a platform team runs it, then one
# login with the seed's curl.
#
#   bash scripts/demo.sh up           # pods on a real local node (the default)
#   bash scripts/demo.sh up --local   # no node: operator and auth service as local processes, kwok fakes the pods
#   bash scripts/demo.sh down         # stop everything `up` started
#   bash scripts/demo.sh status       # what runs
#
# `up` (pods) does, showing progress: Python venv (scripts/venv.sh) → PostgreSQL + Redis
# (scripts/services.sh) → control-plane and node binaries (scripts/build-control-plane.sh; ~10 min
# the first time, < 1 s after) → Phoenix's images (scripts/images.sh build; ~1.5 min the first time)
# → the local registry + push → the control plane with this machine as its real node
# (PHOENIX_CP_NODES=real: containerd, kubelet, kube-proxy, CoreDNS) → PostgreSQL opened to the pods
# on the node address → `helm install` of the chart (the operator runs in a pod from its image) → a
# PhoenixAuth (its migration Job, managed Redis and auth pods run) → seed users with
# `phoenix-auth seed-demo` inside an auth pod → `kubectl port-forward` of the auth Service to
# localhost:$PHOENIX_PORT → the seed's curl, answered by an auth pod.
# `up --local` is the former demo for machines that cannot run a node (no root, no containerd):
# kwok marks the pods Ready, and the login is answered by a local `phoenix-auth serve`.
#
# Environment (defaults work): PHOENIX_DEMO_STATE (~/.cache/phoenix/state/demo), PHOENIX_PORT (3007),
# DATABASE_URL (postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix; in pods mode its host is
# replaced by the node address), REDIS_URL (local mode), PHOENIX_DEMO_USERS (1000),
# PHOENIX_DEMO_NAMESPACE (phoenix-demo), PHOENIX_DEMO_TIMEOUT (240 s), PHOENIX_VENV (.venv),
# plus everything scripts/control-plane.sh reads (PHOENIX_CP_*).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

STATE="${PHOENIX_DEMO_STATE:-$HOME/.cache/phoenix/state/demo}"
PORT="${PHOENIX_PORT:-3007}"
EXAMPLE_PORT="${PHOENIX_EXAMPLE_PORT:-3000}"
export DATABASE_URL="${DATABASE_URL:-postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
USERS="${PHOENIX_DEMO_USERS:-1000}"
NS="${PHOENIX_DEMO_NAMESPACE:-phoenix-demo}"
TIMEOUT="${PHOENIX_DEMO_TIMEOUT:-240}"
OPERATOR_NS=phoenix-system
RELEASE=phoenix-operator

step_no=0
step() { step_no=$((step_no + 1)); printf '\n\033[1m[demo %d] %s\033[0m\n' "$step_no" "$*" >&2; }
info() { printf '[demo]   %s\n' "$*" >&2; }
die() { printf '[demo] ERROR: %s\n' "$*" >&2; exit 1; }

# Alive = the recorded pid runs and is still ours (phoenix-<name>, or kubectl port-forward): never trust or kill a recycled pid.
alive() {
  local p want="phoenix-$1"
  [ "$1" != port-forward ] || want="port-forward"
  [ "$1" != example ] || want="next-server"  # Next renames its process
  [ -s "$STATE/$1.pid" ] && p="$(cat "$STATE/$1.pid")" || return 1
  kill -0 "$p" 2>/dev/null && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q -- "$want"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll with a deadline and a progress line every 5 s.
wait_for() {
  local limit="$1" what="$2"; shift 2
  local t0=$SECONDS last=0
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t0)) -ge "$limit" ]; then return 1; fi
    if [ $((SECONDS - last)) -ge 5 ]; then last=$SECONDS; info "waiting for $what ($((SECONDS - t0))s)"; fi
    sleep 1
  done
}

# Start a command in its own session (process group), output to $STATE/NAME.log.
start_bg() {
  local name="$1"; shift
  if alive "$name"; then info "$name already running (pid $(cat "$STATE/$name.pid"))"; return; fi
  setsid "$@" >>"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/$name.pid"
  info "$name started (pid $!, log $STATE/$name.log)"
}

stop_bg() {
  local name="$1" pid
  [ -s "$STATE/$name.pid" ] || return 0
  pid="$(cat "$STATE/$name.pid")"
  if alive "$name"; then
    info "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}

# Steps both modes share: tools, venv, PostgreSQL + Redis, the control-plane binaries (on PATH).
prepare() {
  step "tools and Python package (phoenix-auth, phoenix-operator)"
  if ! command -v openssl >/dev/null || ! command -v curl >/dev/null || ! command -v ss >/dev/null; then
    bash scripts/install-deps.sh
  fi
  # The venv of scripts/test.sh (Debian's system Python refuses pip installs, PEP 668): the dev lock
  # and the products editable; nothing to do when warm.
  local venv="${PHOENIX_VENV:-$ROOT/.venv}" py
  bash scripts/venv.sh "$venv" || die "scripts/venv.sh (Python environment) failed"
  py="$venv/bin/python"
  export PATH="$(dirname "$py"):$PATH"
  command -v phoenix-auth >/dev/null && command -v phoenix-operator >/dev/null \
    || die "phoenix-auth / phoenix-operator not on PATH after installing"
  info "$(command -v phoenix-auth)"

  step "PostgreSQL and Redis (scripts/services.sh)"
  if [ ! -e "$STATE/services-were-running" ] && [ ! -e "$STATE/services-started-by-demo" ]; then
    if [ "$(bash scripts/services.sh status 2>/dev/null | grep -c ': up')" = 2 ]; then touch "$STATE/services-were-running"; else touch "$STATE/services-started-by-demo"; fi
  fi
  bash scripts/services.sh up >&2

  step "Kubernetes control-plane binaries (cold build ~12 min on 2 cores; cached after)"
  local bin
  bin="$(bash scripts/build-control-plane.sh | tail -n 1)" || die "scripts/build-control-plane.sh failed (see above)"
  export PATH="$bin:$PATH"
  info "binaries in $bin"
  export HELM_CACHE_HOME="$STATE/helm/cache" HELM_CONFIG_HOME="$STATE/helm/config" HELM_DATA_HOME="$STATE/helm/data"
}

# The two modes keep different objects in the cluster (pods bound to the real node, or kwok's), so a
# switch starts from an empty cluster instead of waiting on the other mode's pods.
switch_mode() {  # MODE
  local was
  was="$(cat "$STATE/mode" 2>/dev/null || true)"
  if [ -n "$was" ] && [ "$was" != "$1" ]; then
    if alive auth || alive operator || alive port-forward; then
      die "the $was demo is running: bash scripts/demo.sh down first"
    fi
    info "the control plane last ran the $was demo: wiping its cluster state for the $1 demo"
    bash scripts/control-plane.sh wipe >&2
  fi
  echo "$1" > "$STATE/mode"
}

cmd_up_local() {
  local t_start=$SECONDS py="${PHOENIX_VENV:-$ROOT/.venv}/bin/python"
  switch_mode local
  prepare

  step "Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
  PHOENIX_CP_NODES=kwok bash scripts/control-plane.sh up
  eval "$(bash scripts/control-plane.sh env)"

  step "helm upgrade --install $RELEASE (CRDs, RBAC, Grafana dashboard)"
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  helm upgrade --install "$RELEASE" helm/phoenix-operator --namespace "$OPERATOR_NS" --create-namespace \
    --set "operator.watchNamespaces={$NS}" --wait --timeout 120s >"$STATE/helm.log" 2>&1 || { cat "$STATE/helm.log" >&2; die "helm install failed"; }
  kubectl wait --for condition=Established crd/phoenixauths.auth.phoenix.dev --timeout=60s >/dev/null
  info "release $RELEASE deployed in $OPERATOR_NS; CRD phoenixauths.auth.phoenix.dev Established"

  step "operator (local process, as the chart's ServiceAccount)"
  if ! alive operator; then
    local token
    token="$(kubectl create token phoenix-operator -n "$OPERATOR_NS" --duration=24h)"
    "$py" - "$KUBECONFIG" "$STATE/operator.kubeconfig" "$token" <<'PY'
import sys, yaml
admin, out, token = sys.argv[1:]
cluster = yaml.safe_load(open(admin))["clusters"][0]
cfg = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
       "users": [{"name": "phoenix-operator", "user": {"token": token}}],
       "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "phoenix-operator"}}],
       "current-context": "operator"}
with open(out, "w") as f:
    yaml.safe_dump(cfg, f)
PY
    chmod 600 "$STATE/operator.kubeconfig"
  fi
  start_bg operator phoenix-operator --kubeconfig "$STATE/operator.kubeconfig" --namespace "$NS" \
    --liveness-port "${PHOENIX_DEMO_OPERATOR_HEALTH_PORT:-18180}" --metrics-port "${PHOENIX_DEMO_OPERATOR_METRICS_PORT:-18181}"
  wait_for 60 "operator liveness" curl -sf "http://127.0.0.1:${PHOENIX_DEMO_OPERATOR_HEALTH_PORT:-18180}/healthz" \
    || { tail -20 "$STATE/operator.log" >&2; die "the operator did not start"; }

  step "auth service: migrate, seed $USERS demo users, serve on 127.0.0.1:$PORT"
  phoenix-auth migrate >"$STATE/migrate.log" 2>&1 || { cat "$STATE/migrate.log" >&2; die "phoenix-auth migrate failed"; }
  tail -n 3 "$STATE/migrate.log" | sed 's/^/[demo]   /' >&2
  phoenix-auth seed-demo "$USERS" >"$STATE/seed.log" 2>&1 || { cat "$STATE/seed.log" >&2; die "phoenix-auth seed-demo failed"; }
  tail -n 1 "$STATE/seed.log" | sed 's/^/[demo]   /' >&2
  if ! alive auth && ss -Hltn "sport = :$PORT" | grep -q .; then
    die "port $PORT is in use by another process; set PHOENIX_PORT"
  fi
  # Redis values are sealed with this key (L2 stays off without one); made once, kept in the demo's
  # state (mode 600), passed in the environment, never on a command line.
  [ -s "$STATE/cache-signing-key" ] || (umask 077; openssl rand -base64 48 > "$STATE/cache-signing-key")
  PHOENIX_CACHE_SIGNING_KEY="$(cat "$STATE/cache-signing-key")" PHOENIX_PORT="$PORT" PHOENIX_HOST=127.0.0.1 \
    start_bg auth phoenix-auth serve
  wait_for 60 "auth service /readyz" curl -sf "http://127.0.0.1:$PORT/readyz" \
    || { tail -20 "$STATE/auth.log" >&2; die "the auth service did not become ready"; }

  step "PhoenixAuth 'phoenix' in namespace $NS"
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "$NS" create secret generic phoenix-db --from-literal=DATABASE_URL="$DATABASE_URL" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # The sample without its placeholder Secret (the Secret above points at the local PostgreSQL).
  "$py" -c 'import sys, yaml; print(yaml.safe_dump_all(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] != "Secret"))' \
    manifests/samples/minimal.yaml | kubectl -n "$NS" apply -f - | sed 's/^/[demo]   /' >&2
  ready() {
    [ "$(kubectl -n "$NS" get pxa phoenix -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
  }
  wait_for "$TIMEOUT" "PhoenixAuth Ready (operator reconciles; kwok makes pods Ready)" ready || {
    kubectl -n "$NS" describe pxa phoenix >&2; die "PhoenixAuth not Ready after ${TIMEOUT}s"; }
  echo >&2
  kubectl -n "$NS" get pxa
  echo
  kubectl -n "$NS" get deploy,svc,job,hpa,pdb

  step "login with the seed's curl"
  seed_curl
  printf '\n[demo] up in %ss (local mode: the login above was answered by a local phoenix-auth process). Try:\n  eval "$(bash scripts/control-plane.sh env)"; kubectl get pxa -A; kubectl describe pxa -n %s phoenix\n  bash scripts/demo.sh down\n' \
    "$((SECONDS - t_start))" "$NS" >&2
}

seed_curl() {  # URL BASE: the seed's curl, verbatim but for the port
  echo "+ curl -X POST http://localhost:$PORT/api/auth/phoenix -H \"Content-Type: application/json\" -d '{\"email\": \"test@example.com\", \"password\": \"testpassword\"}'"
  curl -sS --fail-with-body -X POST "http://localhost:$PORT/api/auth/phoenix" \
    -H "Content-Type: application/json" \
    -d '{"email": "test@example.com", "password": "testpassword"}'
  echo
}

cmd_up_pods() {
  local t_start=$SECONDS t
  [ "$(id -u)" = 0 ] || die "a real node needs root (containerd, a bridge, iptables); try: bash scripts/demo.sh up --local"
  switch_mode pods
  prepare

  step "Phoenix's images (scripts/images.sh build: operator, auth, managed Redis; ~1.5 min the first time)"
  t=$SECONDS
  bash scripts/images.sh build || die "scripts/images.sh build failed"
  info "images ready in $((SECONDS - t))s"

  step "local registry (scripts/registry.sh) and push"
  if bash scripts/registry.sh status >/dev/null 2>&1; then :; else touch "$STATE/registry-started-by-demo"; fi
  bash scripts/registry.sh up >&2
  bash scripts/images.sh push "$(bash scripts/registry.sh addr)" >&2 || die "scripts/images.sh push failed"

  step "Kubernetes control plane with this machine as a real node (containerd, kubelet, kube-proxy, CoreDNS)"
  t=$SECONDS
  PHOENIX_CP_NODES=real bash scripts/control-plane.sh up
  eval "$(bash scripts/control-plane.sh env)"
  # shellcheck disable=SC2046  # one word per image reference
  bash scripts/control-plane.sh forget-images $(bash scripts/images.sh refs)
  info "control plane and node up in $((SECONDS - t))s"
  local node_ip pod_cidr db_url
  node_ip="$(kubectl get nodes -o 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}')"
  [ -n "$node_ip" ] || die "the node has no InternalIP"
  # The pods' subnet: the network of the bridge that carries the node address.
  pod_cidr="$(ip -o -4 addr show | awk -v ip="$node_ip" '{split($4, a, "/"); if (a[1] == ip) print $4}' \
    | python3 -c 'import ipaddress, sys; print(ipaddress.ip_interface(sys.stdin.read().strip()).network)')" \
    || die "no interface carries the node address $node_ip"

  step "PostgreSQL for the pods: $node_ip:5432 from $pod_cidr (scripts/services.sh pod-access)"
  bash scripts/services.sh pod-access "$node_ip" "$pod_cidr" >/dev/null || die "scripts/services.sh pod-access failed"
  # The demo's DATABASE_URL with its host replaced by the node address (what pods can reach).
  db_url="$(printf '%s' "$DATABASE_URL" | sed -E "s#@(127\.0\.0\.1|localhost)([:/])#@$node_ip\2#")"

  step "helm upgrade --install $RELEASE (CRDs, RBAC, the operator pod from ghcr.io/phoenix-dev/phoenix-operator:$(cat VERSION))"
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  helm upgrade --install "$RELEASE" helm/phoenix-operator --namespace "$OPERATOR_NS" --create-namespace \
    --set "operator.watchNamespaces={$NS}" --wait --timeout 180s >"$STATE/helm.log" 2>&1 || {
      cat "$STATE/helm.log" >&2; kubectl -n "$OPERATOR_NS" describe pods >&2; die "helm install failed"; }
  kubectl wait --for condition=Established crd/phoenixauths.auth.phoenix.dev --timeout=60s >/dev/null
  kubectl -n "$OPERATOR_NS" get pods -o wide | sed 's/^/[demo]   /' >&2

  step "PhoenixAuth 'phoenix' in namespace $NS (migration Job, managed Redis, auth pods)"
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "$NS" create secret generic phoenix-db --from-literal=DATABASE_URL="$db_url" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # The default request (1 CPU per auth pod, docs/sizing.md) does not fit two pods beside the
  # operator on a 2-core machine: the demo asks for a quarter of a core each.
  echo "[demo]   auth pods request 250m CPU here (default 1 CPU per pod: docs/sizing.md)" >&2
  "${PHOENIX_VENV:-$ROOT/.venv}/bin/python" -c 'import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] != "Secret"]
for d in docs:
    d["spec"].setdefault("authService", {})["resources"] = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
print(yaml.safe_dump_all(docs))' \
    manifests/samples/minimal.yaml | kubectl -n "$NS" apply -f - | sed 's/^/[demo]   /' >&2
  ready() {
    [ "$(kubectl -n "$NS" get pxa phoenix -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
  }
  wait_for "$TIMEOUT" "PhoenixAuth Ready (images pulled, migration Job run, pods Ready)" ready || {
    kubectl -n "$NS" describe pxa phoenix >&2; kubectl -n "$NS" get pods,jobs -o wide >&2
    die "PhoenixAuth not Ready after ${TIMEOUT}s"; }
  echo >&2
  kubectl -n "$NS" get pxa
  echo
  kubectl -n "$NS" get pods,deploy,svc,job,hpa,pdb -o wide

  step "seed $USERS demo users (phoenix-auth seed-demo, inside an auth pod)"
  kubectl -n "$NS" exec deploy/phoenix -c auth -- phoenix-auth seed-demo "$USERS" 2>&1 | tail -n 1 | sed 's/^/[demo]   /' >&2

  step "the auth Service on localhost:$PORT (kubectl port-forward service/phoenix)"
  stop_bg port-forward
  if ss -Hltn "sport = :$PORT" | grep -q .; then die "port $PORT is in use by another process; set PHOENIX_PORT"; fi
  local svc_port
  svc_port="$(kubectl -n "$NS" get service phoenix -o 'jsonpath={.spec.ports[0].port}')"
  start_bg port-forward kubectl -n "$NS" port-forward --address 127.0.0.1 service/phoenix "$PORT:$svc_port"
  wait_for 30 "port-forward" curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" \
    || { tail -5 "$STATE/port-forward.log" >&2; die "kubectl port-forward did not start"; }

  step "login with the seed's curl (answered by an auth pod)"
  seed_curl || die "the seed's login failed"
  start_example
  local cluster_ip
  cluster_ip="$(kubectl -n "$NS" get service phoenix -o 'jsonpath={.spec.clusterIP}')"
  printf '\n[demo] up in %ss: the operator, the migration Job, Redis and the auth service ran in pods on this machine.\n' "$((SECONDS - t_start))" >&2
  printf '  The auth Service: http://%s:%s (ClusterIP, reachable from this machine) and http://localhost:%s (port-forward).\n' "$cluster_ip" "$svc_port" "$PORT" >&2
  if alive example; then
    printf '  The example Next.js app (examples/nextjs, Auth.js + @phoenix-auth/client): http://localhost:%s (test@example.com / testpassword).\n' "$EXAMPLE_PORT" >&2
  fi
  local admin_ip
  admin_ip="$(kubectl -n "$NS" get service phoenix-admin -o 'jsonpath={.spec.clusterIP}:{.spec.ports[0].port}' 2>/dev/null || true)"
  [ -z "$admin_ip" ] || printf '  Admin API and /metrics (not on the public Service): http://%s, bearer token in Secret phoenix-phoenix-keys (key PHOENIX_ADMIN_TOKEN).\n' "$admin_ip" >&2
  printf '  eval "$(bash scripts/control-plane.sh env)"; kubectl get pxa,pods -n %s; kubectl logs -n %s deploy/phoenix\n  bash scripts/demo.sh down\n' "$NS" "$NS" >&2
}

# The example Next.js app against the demo's Phoenix, when Node is here (skipped with a line if not).
start_example() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    info "no node/npm here: the example Next.js app is not started (examples/nextjs/README.md)"; return 0; fi
  step "the example Next.js app on http://localhost:$EXAMPLE_PORT (scripts/example.sh build; ~35 s the first time)"
  if ! alive example; then
    bash scripts/example.sh build || { info "the example app did not build; the demo goes on without it"; return 0; }
  fi
  [ -s "$STATE/auth-secret" ] || (umask 077; openssl rand -base64 32 > "$STATE/auth-secret")
  (cd examples/nextjs && PHOENIX_URL="http://localhost:$PORT" AUTH_SECRET="$(cat "$STATE/auth-secret")" \
    NEXT_TELEMETRY_DISABLED=1 start_bg example node node_modules/next/dist/bin/next start -p "$EXAMPLE_PORT" -H 127.0.0.1)
  wait_for 60 "the example app" curl -sf -o /dev/null "http://127.0.0.1:$EXAMPLE_PORT/login" \
    || info "the example app did not answer; see $STATE/example.log"
}

cmd_down() {
  mkdir -p "$STATE"
  step "port-forward, example app, local auth service and operator"
  stop_bg example
  stop_bg port-forward
  stop_bg auth
  stop_bg operator
  step "Kubernetes control plane (and the real node, if it runs)"
  bash scripts/control-plane.sh down
  if [ -e "$STATE/registry-started-by-demo" ]; then
    bash scripts/registry.sh down >&2 || true
    rm -f "$STATE/registry-started-by-demo"
  fi
  if [ -e "$STATE/services-started-by-demo" ]; then
    step "PostgreSQL and Redis (started by the demo)"
    bash scripts/services.sh down >&2
    rm -f "$STATE/services-started-by-demo"
  else
    info "PostgreSQL and Redis were running before the demo: left running"
    rm -f "$STATE/services-were-running"
  fi
  info "down"
}

cmd_status() {
  echo "mode: $(cat "$STATE/mode" 2>/dev/null || echo none)"
  for n in port-forward auth operator; do
    if alive "$n"; then echo "$n: running (pid $(cat "$STATE/$n.pid"))"; else echo "$n: stopped"; fi
  done
  bash scripts/control-plane.sh status || true
}

case "${1:-}" in
  up)
    mkdir -p "$STATE"
    case "${2:-}" in
      --local) cmd_up_local ;;
      "") cmd_up_pods ;;
      *) echo "usage: $0 up [--local]" >&2; exit 2 ;;
    esac ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up [--local] | down | status" >&2; exit 2 ;;
esac
