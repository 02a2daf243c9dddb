# shellcheck shell=bash
# The real node of scripts/control-plane.sh (PHOENIX_CP_NODES=real or real,kwok): containerd,
# kubelet, kube-proxy and CoreDNS as host processes, pods on a bridge this script creates.
# Sourced by control-plane.sh, which defines the settings (POD_CIDR, NODE_IP, BRIDGE, ...) and the
# process helpers (start, stop, alive, pid_is, wait_for, kubectl_, log, die). docs/control-plane.md
# says what runs where and how it differs from a production node.

NODE_DIR="$STATE/node"
CTRD_DIR="$NODE_DIR/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
CNI_DIR="$NODE_DIR/cni"
KUBELET_DIR="$NODE_DIR/kubelet"
POD_LOGS="$NODE_DIR/pod-logs"
# The CNI network's name: the bridge plugin writes it into its iptables comments.
CNI_NETWORK="phoenix-$BRIDGE"
OWNER_FILE="$HOST_DIR/real-node.owner"
CNI_BIN=/usr/lib/cni

ctr_() { ctr --address "$CTRD_SOCK" --namespace k8s.io "$@"; }
crictl_() { "$BIN/crictl" --runtime-endpoint "unix://$CTRD_SOCK" --timeout 20s "$@"; }

# ---------------------------------------------------------------- checks
node_preflight() {
  [ "$(id -u)" = 0 ] || die "a real node needs root (containerd, bridge, iptables, cgroups)"
  local missing=() t
  for t in containerd ctr runc ip iptables flock findmnt; do command -v "$t" >/dev/null || missing+=("$t"); done
  for t in bridge host-local portmap loopback; do [ -x "$CNI_BIN/$t" ] || missing+=("$CNI_BIN/$t"); done
  [ ${#missing[@]} -eq 0 ] || die "missing for the real node: ${missing[*]} — run scripts/install-deps.sh"
  # A unix socket path is limited to 108 bytes.
  [ ${#CTRD_SOCK} -lt 100 ] || die "state dir too long for containerd's socket ($CTRD_SOCK): use a shorter PHOENIX_CP_STATE"
  # The API server reaches the kubelet by the node's name (kubectl logs/exec).
  getent hosts "$REAL_NODE" >/dev/null \
    || die "the node name '$REAL_NODE' does not resolve: add it to /etc/hosts or set PHOENIX_CP_REAL_NODE"
}

# CoreDNS listens on NODE_IP:53 (UDP and TCP): nothing else may hold that port there or on a wildcard.
node_check_dns_port() {
  alive coredns && return
  local taken
  taken="$(ss -Hlnu 'sport = :53' 2>/dev/null; ss -Hlnt 'sport = :53' 2>/dev/null)"
  taken="$(awk -v ip="$NODE_IP" '$4 == ip ":53" || $4 == "0.0.0.0:53" || $4 == "*:53" || $4 == "[::]:53" { print $4 }' <<<"$taken")"
  [ -z "$taken" ] || die "port 53 is taken ($(echo "$taken" | tr '\n' ' ')): CoreDNS needs $NODE_IP:53"
}

# ---------------------------------------------------------------- machine-wide ownership
# The owner file names the state dir (line 1) and the bridge (line 2) of the real node.
node_owner_live() {  # STATE_DIR BRIDGE
  local c
  ip link show "$2" >/dev/null 2>&1 && return 0
  for c in "${NODE_COMPONENTS[@]}"; do
    pid_is "$(cat "$1/pids/$c.pid" 2>/dev/null)" "$c" && return 0
  done
  return 1
}

node_claim() {
  mkdir -p "$HOST_DIR"
  local owner="" owner_bridge=""
  exec 9>"$HOST_DIR/real-node.lock"
  flock -w 30 9 || die "could not lock $HOST_DIR/real-node.lock"
  if [ -s "$OWNER_FILE" ]; then
    { read -r owner; read -r owner_bridge; } < "$OWNER_FILE" || true
  fi
  if [ -n "$owner" ] && [ "$owner" != "$STATE" ]; then
    if node_owner_live "$owner" "${owner_bridge:-$BRIDGE}"; then
      exec 9>&-
      die "this machine's real node (bridge ${owner_bridge:-$BRIDGE}, kubelet, kube-proxy, CoreDNS) belongs to the control plane in $owner: stop it first (PHOENIX_CP_STATE=$owner $0 down) or use PHOENIX_CP_NODES=kwok here"
    fi
    log "the real node's previous owner ($owner) left nothing running: taking it over"
  elif [ -z "$owner" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then
    exec 9>&-
    die "bridge $BRIDGE exists but no Phoenix control plane owns it ($OWNER_FILE missing): delete it (ip link delete $BRIDGE) or set PHOENIX_CP_BRIDGE"
  fi
  printf '%s\n%s\n' "$STATE" "$BRIDGE" > "$OWNER_FILE.tmp"
  mv "$OWNER_FILE.tmp" "$OWNER_FILE"
  exec 9>&-
}

node_owned_here() { [ -s "$OWNER_FILE" ] && [ "$(head -n1 "$OWNER_FILE")" = "$STATE" ]; }
# Something of a real node may exist for this state dir (down must clean it up).
node_present() { [ -d "$NODE_DIR" ] || node_owned_here; }

# ---------------------------------------------------------------- certificates
node_pki() {
  local subj
  # The kubelet's client identity: the Node authorizer and NodeRestriction admit it by this name.
  subj="$(openssl x509 -in "$PKI/kubelet.crt" -noout -subject 2>/dev/null || true)"
  case "$subj" in *"CN = system:node:$REAL_NODE"*) ;; *)
    sign_cert kubelet "/O=system:nodes/CN=system:node:$REAL_NODE" "extendedKeyUsage=clientAuth" ;;
  esac
  # The kubelet's serving certificate, verified by the API server (--kubelet-certificate-authority)
  # when it dials the node by name for logs/exec.
  if ! openssl x509 -in "$PKI/kubelet-server.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:$REAL_NODE,.*IP Address:$NODE_IP"; then
    sign_cert kubelet-server "/CN=$REAL_NODE" "extendedKeyUsage=serverAuth
subjectAltName=DNS:$REAL_NODE,IP:127.0.0.1,IP:$NODE_IP"
  fi
  [ -s "$PKI/apiserver-kubelet-client.crt" ] \
    || sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  # Bound by the default RBAC (system:node-proxier) and by the ClusterRole node_coredns_rbac applies.
  [ -s "$PKI/kube-proxy.crt" ] || sign_cert kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
  [ -s "$PKI/coredns.crt" ] || sign_cert coredns "/CN=system:coredns" "extendedKeyUsage=clientAuth"
}

# ---------------------------------------------------------------- configuration files
node_bridge_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($NODE_IP/$POD_PREFIX)"
    ip link add name "$BRIDGE" type bridge
  fi
  ip -4 -o addr show dev "$BRIDGE" | grep -q " $NODE_IP/$POD_PREFIX " || ip addr add "$NODE_IP/$POD_PREFIX" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# `containerd config default`, then: everything under the state dir; restrict_oom_score_adj (root here
# lacks the capability for the -998 a sandbox asks for: every sandbox failed with "can't get final
# child's PID from pipe: EOF"); cgroupfs; Debian's CNI plugins; our pause image; registry mirrors.
node_containerd_config() {
  mkdir -p "$CTRD_DIR" "$CNI_DIR/net.d" "$CNI_DIR/ipam" "$POD_LOGS"
  containerd config default > "$CTRD_DIR/config.default.toml"
  python3 - "$CTRD_DIR/config.default.toml" "$CTRD_DIR" "$(cat "$BIN/pause.ref")" "$CNI_BIN" "$CNI_DIR/net.d" \
    "$CTRD_DIR/certs.d" > "$CTRD_DIR/config.toml.tmp" <<'PY'
import re, sys
path, state, pause, cni_bin, cni_conf, certs = sys.argv[1:]
text = open(path).read()
# (line pattern, key, new value): each must match exactly one line of the default config.
edits = [
    (r"^root = .*$", "root", f"{state}/root"),
    (r"^state = .*$", "state", f"{state}/state"),
    (r'^\s*address = "/run/containerd/containerd.sock"$', "address", f"{state}/containerd.sock"),
    (r'^\s*path = "/opt/containerd"$', "path", f"{state}/opt"),
    (r"^\s*restrict_oom_score_adj = .*$", "restrict_oom_score_adj", True),
    (r"^\s*sandbox_image = .*$", "sandbox_image", pause),
    (r"^\s*bin_dir = .*$", "bin_dir", cni_bin),
    (r"^\s*conf_dir = .*$", "conf_dir", cni_conf),
    (r'^\s*config_path = ""$', "config_path", certs),
    (r"^\s*SystemdCgroup = .*$", "SystemdCgroup", False),
]
for pattern, key, value in edits:
    toml = str(value).lower() if isinstance(value, bool) else f'"{value}"'
    text, n = re.subn(pattern, lambda m: m.group(0).split(key)[0] + f"{key} = {toml}", text, flags=re.M)
    if n != 1:
        sys.exit(f"containerd config default: expected one line matching {pattern!r}, found {n}")
sys.stdout.write(text)
PY
  mv "$CTRD_DIR/config.toml.tmp" "$CTRD_DIR/config.toml"

  # Mirrors: every name resolves to the local registry ONLY. `server` replaces the upstream host, so
  # an image missing there fails (404, ImagePullBackOff) instead of falling back to the internet
  # (without it containerd tries the mirror, then the real host). `_default` covers every registry
  # not named here (containerd 1.6.20 honours it; verified).
  rm -rf "$CTRD_DIR/certs.d"
  local name
  for name in $MIRRORED "localhost:${REGISTRY##*:}" "$REGISTRY" _default; do
    mkdir -p "$CTRD_DIR/certs.d/$name"
    cat > "$CTRD_DIR/certs.d/$name/hosts.toml" <<TOML
# $name -> the local registry (scripts/registry.sh), never the upstream host.
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
TOML
  done

  # The pod network. containerd adds the loopback interface itself (with $CNI_BIN/loopback).
  cat > "$CNI_DIR/net.d/10-phoenix.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$CNI_DIR/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

node_kubelet_config() {
  mkdir -p "$KUBELET_DIR"
  write_kubeconfig_for "$NODE_DIR/kubelet.kubeconfig" "system:node:$REAL_NODE" kubelet
  cat > "$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Loopback only: the API server dials it by the node's name, which resolves to this machine.
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CTRD_SOCK
# This machine has cgroup v1 only (kubelet >= 1.35 refuses it unless told) and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
# The kubelet's own -999 needs a capability root lacks here.
oomScoreAdj: 0
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $POD_LOGS
maxPods: 110
serializeImagePulls: false
# Images are imported or come from the local registry: no disk-based image GC (it could drop the
# imported pause image), and evict only when the disk is really full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1Gi
  imagefs.available: 1Gi
  nodefs.inodesFree: 1%
shutdownGracePeriod: 0s
YAML
}

node_proxy_config() {
  write_kubeconfig_for "$NODE_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  cat > "$NODE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $NODE_DIR/kube-proxy.kubeconfig
hostnameOverride: $REAL_NODE
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
# Leave the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
}

node_coredns_config() {
  write_kubeconfig_for "$NODE_DIR/coredns.kubeconfig" system:coredns coredns
  cat > "$NODE_DIR/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    log . {
        class denial error
    }
    health 127.0.0.1:$DNS_HEALTH_PORT
    ready 127.0.0.1:$DNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE_DIR/coredns.kubeconfig phoenix-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 30
    forward . /etc/resolv.conf
}
COREFILE
  kubectl_ apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "phoenix:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "phoenix:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "phoenix:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}
YAML
}

# ---------------------------------------------------------------- readiness
containerd_ready() { ctr_ version >/dev/null 2>&1; }
# Ready, and (after `up` started the kubelet) confirmed by this kubelet: a node object left in etcd by
# the previous run still says Ready, and a kubelet re-reports an unchanged status only every 5 min;
# so either the status was written since the start (a new node) or the Lease renewed (a known one).
KUBELET_STARTED_AT=0
real_node_ready() {
  local ready beat renewed
  curl -sf --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" >/dev/null 2>&1 || return 1
  ready="$(kubectl_ get node "$REAL_NODE" 2>/dev/null -o \
    'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}')" || return 1
  beat="${ready#* }" ready="${ready%% *}"
  [ "$ready" = True ] || return 1
  [ "$KUBELET_STARTED_AT" = 0 ] && return 0
  [ "$(date -d "$beat" +%s 2>/dev/null || echo 0)" -ge "$KUBELET_STARTED_AT" ] && return 0
  renewed="$(kubectl_ get lease "$REAL_NODE" -n kube-node-lease -o 'jsonpath={.spec.renewTime}' 2>/dev/null)" || return 1
  [ -n "$renewed" ] && [ "$(date -d "$renewed" +%s 2>/dev/null || echo 0)" -ge "$KUBELET_STARTED_AT" ]
}
# An A record for the `kubernetes` Service from CoreDNS on the node address (a raw UDP query: no dig here).
dns_answers() {
  python3 - "$NODE_IP" <<'PY' 2>/dev/null
import socket, struct, sys
name = b"".join(bytes([len(p)]) + p.encode() for p in "kubernetes.default.svc.cluster.local".split(".")) + b"\0"
query = struct.pack(">HHHHHH", 0x5058, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1)
sock.sendto(query, (sys.argv[1], 53))
reply = sock.recv(512)
ok = reply[:2] == query[:2] and reply[3] & 0x0F == 0 and struct.unpack(">H", reply[6:8])[0] > 0
sys.exit(0 if ok else 1)
PY
}

# ---------------------------------------------------------------- up
node_up() {
  local t0=$SECONDS
  node_bridge_up
  node_containerd_config
  start containerd - containerd --config "$CTRD_DIR/config.toml"
  wait_for "containerd ($CTRD_SOCK)" containerd_ready
  # The sandbox image is imported, never pulled (idempotent: same digest, same image).
  ctr_ images import "$BIN/pause-image.oci.tar" >/dev/null \
    || die "importing $BIN/pause-image.oci.tar into containerd failed"

  node_kubelet_config
  alive kubelet || KUBELET_STARTED_AT=$(($(date +%s) - 1))
  start kubelet - "$BIN/kubelet" --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --root-dir="$KUBELET_DIR" --cert-dir="$KUBELET_DIR/pki" --hostname-override="$REAL_NODE" --node-ip="$NODE_IP"
  node_coredns_config
  start coredns - "$BIN/coredns" -conf "$NODE_DIR/Corefile"
  node_proxy_config
  start kube-proxy - "$BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"

  wait_for "node $REAL_NODE Ready (kubelet, containerd, CNI)" real_node_ready
  wait_for "CoreDNS answering kubernetes.default.svc.cluster.local on $NODE_IP" dns_answers
  curl -sf --max-time 2 "http://$REGISTRY/v2/" >/dev/null 2>&1 \
    || log "note: no registry answers at $REGISTRY: pods can only use the pause image (start one: scripts/registry.sh up)"
  log "real node $REAL_NODE Ready in $((SECONDS - t0))s: pods $POD_CIDR on $BRIDGE, node/DNS/API address $NODE_IP, images from $REGISTRY"
}

# ---------------------------------------------------------------- down
# Stop the pods' sandboxes through the CRI (that runs CNI DEL: veth, IP, iptables rules go), then
# whatever containerd still runs.
node_remove_pods() {
  containerd_ready || return 0
  local pods
  pods="$(crictl_ pods -q 2>/dev/null || true)"
  if [ -n "$pods" ]; then
    log "removing $(echo "$pods" | wc -l) pod sandbox(es)"
    # shellcheck disable=SC2086
    crictl_ stopp $pods >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    crictl_ rmp -f $pods >/dev/null 2>&1 || true
  fi
  local task
  for task in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    ctr_ tasks delete -f "$task" >/dev/null 2>&1 || true
  done
}

# Shims re-parent away from containerd: find ours by the socket address on their command line.
node_kill_shims() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null < "$p/cmdline" | grep -q -- "containerd-shim.* -address $CTRD_SOCK " || continue
    log "killing leftover shim ${p#/proc/}"
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}

node_unmount() {
  local m round
  for round in 1 2 3; do
    m="$(mounts_under "$NODE_DIR")"
    [ -n "$m" ] || return 0
    while IFS= read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done <<<"$m"
    [ "$round" = 3 ] || sleep 0.2
  done
  m="$(mounts_under "$NODE_DIR")"
  [ -z "$m" ] || log "WARNING: still mounted: $m"
}

# Delete KUBE-* chains (kube-proxy's, the kubelet's canaries) and chains whose rules carry our CNI
# network's name, in every table, IPv4 and IPv6: unlink the jumps to them, flush, delete.
node_iptables_cleanup() {
  local ipt table rules chains pattern rule c
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle raw; do
      rules="$("$ipt" -w 5 -t "$table" -S 2>/dev/null)" || continue
      chains="$( { awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }' <<<"$rules"
                   { grep -F "name: \\\"$CNI_NETWORK\\\"" <<<"$rules" || true; } \
                     | awk '$1 == "-A" && $2 ~ /^CNI-/ && $2 !~ /^CNI-HOSTPORT-/ { print $2 }'
                 } | sort -u)"
      [ -n "$chains" ] || continue
      pattern="$(echo "$chains" | paste -sd'|')"
      while IFS= read -r rule; do
        [ -n "$rule" ] || continue
        eval "\"\$ipt\" -w 5 -t \"\$table\" -D ${rule#-A }" 2>/dev/null || true
      done < <(grep -E -- "-j ($pattern)( |$)" <<<"$rules" | grep -vE -- "^-A ($pattern) " || true)
      for c in $chains; do "$ipt" -w 5 -t "$table" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$ipt" -w 5 -t "$table" -X "$c" 2>/dev/null || true; done
    done
  done
}

node_cgroups_cleanup() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$d" ] && log "WARNING: $d still holds processes"
  done
}

node_down() {
  local host=0
  # Host-wide leftovers (bridge, chains, netns, cgroups) are ours to clean only if we own the node.
  if node_owned_here || [ ! -s "$OWNER_FILE" ]; then host=1; fi
  stop coredns kube-proxy kubelet
  if alive containerd; then node_remove_pods; fi
  stop containerd
  node_kill_shims
  node_unmount
  rm -rf "${CNI_DIR:?}/ipam"
  if [ "$host" = 1 ]; then
    if [ -x "$BIN/kube-proxy" ]; then
      "$BIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
    fi
    node_iptables_cleanup
    local ns
    for ns in /run/netns/cni-*; do
      [ -e "$ns" ] || continue
      [ -z "$(ip netns pids "${ns##*/}" 2>/dev/null)" ] || continue
      umount "$ns" 2>/dev/null || true
      rm -f "$ns"
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
      log "deleting bridge $BRIDGE"
      ip link delete "$BRIDGE" || true
    fi
    node_cgroups_cleanup
    find /var/log/containers -maxdepth 1 -type l -lname "$POD_LOGS/*" -delete 2>/dev/null || true
    node_owned_here && rm -f "$OWNER_FILE"
  fi
  return 0
}
