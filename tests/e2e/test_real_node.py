"""The real node (`PHOENIX_CP_NODES=real`): pods run as processes under containerd, the pod network,
Services, cluster DNS and the API server work from inside pods, images come only from the local
registry, and `down` leaves the machine clean so `up` works again.

The probe image (tests/e2e/probe/main.go) answers each question from inside a pod via `kubectl exec`.
The last test restarts the node; keep it last.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from e2e_kube import REPO, ControlPlane, free_ports, wait_until
from e2e_node import (
    MIRRORED_REGISTRY,
    exec_probe,
    host_listener,
    http_get,
    node_address,
    probe_pod,
    wait_pod_ready,
)


def _web(cp: ControlPlane, namespace: str, image: str, replicas: int = 2) -> str:
    """A Deployment of probe HTTP servers behind a ClusterIP Service `web` (port 80 -> 8080)."""
    cp.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "web",
                                "image": image,
                                "args": ["serve", "8080"],
                                "readinessProbe": {
                                    "httpGet": {"path": "/", "port": 8080},
                                    "periodSeconds": 1,
                                },
                            }
                        ],
                    },
                },
            },
        },
        namespace=namespace,
    )
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        namespace=namespace,
    )
    wait_until(
        lambda: cp.get("deployment", "web", namespace).get("status", {}).get("readyReplicas") == replicas,
        90,
        f"{replicas}/{replicas} web pods Ready",
    )
    return str(cp.get("service", "web", namespace)["spec"]["clusterIP"])


def _answer(url: str) -> str:
    """The answering pod's name, or "" while the Service does not answer yet (rules being programmed)."""
    try:
        return http_get(url, timeout=2).split()[1]
    except OSError:
        return ""


def test_node_is_ready_with_containerd_on_the_bridge_address(real_control_plane: ControlPlane) -> None:
    nodes = real_control_plane.get("nodes")["items"]
    assert len(nodes) == 1, [n["metadata"]["name"] for n in nodes]
    node = nodes[0]
    assert real_control_plane.condition(node, "Ready")["status"] == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    assert node_address(real_control_plane) == "10.244.0.1"


def test_a_pod_runs_its_process_with_logs_and_exec(
    real_control_plane: ControlPlane, real_namespace: str, probe_image: str
) -> None:
    word = f"hello-{uuid.uuid4().hex[:8]}"
    real_control_plane.apply(probe_pod("talker", probe_image, ["echo", word]), namespace=real_namespace)
    pod = wait_pod_ready(real_control_plane, real_namespace, "talker")
    assert pod["status"]["podIP"].startswith("10.244.0.")
    logs = real_control_plane.kubectl("logs", "talker", "-n", real_namespace).stdout
    assert logs.strip() == word
    # PID 1 of the container is the probe itself, started with our arguments.
    cmdline = exec_probe(real_control_plane, real_namespace, "talker", "cat", "/proc/1/cmdline")
    assert cmdline.split("\0")[:3] == ["/probe", "echo", word]


def test_cluster_ip_service_answers_from_the_host_and_from_a_pod(
    real_control_plane: ControlPlane, real_namespace: str, probe_image: str
) -> None:
    cluster_ip = _web(real_control_plane, real_namespace, probe_image)
    pods = {p["metadata"]["name"] for p in real_control_plane.get("pods", namespace=real_namespace)["items"]}
    # From the host (kube-proxy's iptables rules): both replicas answer sooner or later.
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while seen != pods and time.monotonic() < deadline:
        seen.add(_answer(f"http://{cluster_ip}/"))
        seen.discard("")
    assert seen == pods
    # From another pod, by the Service's DNS name.
    real_control_plane.apply(probe_pod("client", probe_image, ["echo", "client"]), namespace=real_namespace)
    wait_pod_ready(real_control_plane, real_namespace, "client")
    out = exec_probe(
        real_control_plane, real_namespace, "client", "get", f"http://web.{real_namespace}.svc.cluster.local/"
    )
    status, body = out.split("\n", 1)
    assert status == "200"
    assert body.split()[1] in pods


def test_a_pod_resolves_and_calls_the_api_server_with_its_token(
    real_control_plane: ControlPlane, real_namespace: str, probe_image: str
) -> None:
    real_control_plane.apply(probe_pod("caller", probe_image, ["echo", "caller"]), namespace=real_namespace)
    wait_pod_ready(real_control_plane, real_namespace, "caller")
    addresses = exec_probe(
        real_control_plane, real_namespace, "caller", "lookup", "kubernetes.default.svc.cluster.local"
    )
    kubernetes_ip = real_control_plane.get("service", "kubernetes", "default")["spec"]["clusterIP"]
    assert addresses.split() == [kubernetes_ip]
    # Through the `kubernetes` Service, TLS verified with the pod's CA, authenticated by its token:
    # the default ServiceAccount may not list Secrets, and the API server says who it is.
    out = exec_probe(
        real_control_plane,
        real_namespace,
        "caller",
        "get",
        f"https://kubernetes.default.svc/api/v1/namespaces/{real_namespace}/secrets",
    )
    status, body = out.split("\n", 1)
    assert status == "403", out
    assert json.loads(body)["message"].startswith(
        f'secrets is forbidden: User "system:serviceaccount:{real_namespace}:default"'
    )


def test_a_memory_limit_is_applied_to_the_container_cgroup(
    real_control_plane: ControlPlane, real_namespace: str, probe_image: str
) -> None:
    limits = {"resources": {"limits": {"memory": "48Mi", "cpu": "250m"}}}
    real_control_plane.apply(
        probe_pod("limited", probe_image, ["echo", "x"], **limits), namespace=real_namespace
    )
    wait_pod_ready(real_control_plane, real_namespace, "limited")
    v1 = exec_probe(
        real_control_plane,
        real_namespace,
        "limited",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        check=False,
    )
    limit = v1 or exec_probe(
        real_control_plane, real_namespace, "limited", "cat", "/sys/fs/cgroup/memory.max"
    )
    assert int(limit) == 48 * 1024 * 1024


def test_a_pod_reaches_a_host_port_on_the_node_address(
    real_control_plane: ControlPlane, real_namespace: str, probe_image: str
) -> None:
    """How pods reach PostgreSQL on the host: it listens on the node address (the bridge gateway)."""
    real_control_plane.apply(probe_pod("dialer", probe_image, ["echo", "dialer"]), namespace=real_namespace)
    pod = wait_pod_ready(real_control_plane, real_namespace, "dialer")
    token = uuid.uuid4().hex
    with host_listener(node_address(real_control_plane), f"host {token}\n".encode()) as port:
        out = exec_probe(
            real_control_plane, real_namespace, "dialer", "dial", f"{node_address(real_control_plane)}:{port}"
        )
    assert out.strip() == f"host {token}"
    assert pod["status"]["hostIP"] == node_address(real_control_plane)


def test_an_image_missing_from_the_local_registry_fails_fast_without_an_outside_pull(
    real_control_plane: ControlPlane, real_namespace: str, probe_image: str
) -> None:
    image = f"{MIRRORED_REGISTRY}/phoenix-e2e/absent:{uuid.uuid4().hex[:12]}"
    real_control_plane.apply(probe_pod("absent", image, ["echo", "x"]), namespace=real_namespace)

    def pull_failed() -> dict[str, str] | None:
        statuses = real_control_plane.get("pod", "absent", real_namespace)["status"].get("containerStatuses")
        waiting = (statuses or [{}])[0].get("state", {}).get("waiting", {})
        return waiting if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    # Bounded: a fallback to the real registry would hang on the network or fail differently.
    waiting = wait_until(pull_failed, 30, "ErrImagePull/ImagePullBackOff")
    if waiting["reason"] == "ImagePullBackOff":  # the message is the next ErrImagePull's; read the event
        events = real_control_plane.kubectl(
            "get", "events", "-n", real_namespace, "--field-selector", "reason=Failed", "-o", "json"
        ).stdout
        message = " ".join(e["message"] for e in json.loads(events)["items"])
    else:
        message = waiting["message"]
    # The local registry answered 404; containerd did not go on to the real ghcr.io.
    assert f"{image}: not found" in message, message
    assert "lookup" not in message and "dial tcp" not in message, message


def test_a_second_real_node_is_refused_naming_the_owner(
    real_control_plane: ControlPlane, tmp_path: Path
) -> None:
    api, etcd, peer, kcm, sched = free_ports(5)
    env = {
        **real_control_plane.script_env,
        "PHOENIX_CP_STATE": str(tmp_path / "cp"),
        "PHOENIX_CP_APISERVER_PORT": str(api),
        "PHOENIX_CP_ETCD_PORT": str(etcd),
        "PHOENIX_CP_ETCD_PEER_PORT": str(peer),
        "PHOENIX_CP_KCM_PORT": str(kcm),
        "PHOENIX_CP_SCHEDULER_PORT": str(sched),
    }
    result = subprocess.run(
        ["bash", "scripts/control-plane.sh", "up"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1
    assert f"belongs to the control plane in {real_control_plane.state}" in result.stderr
    assert not list((tmp_path / "cp" / "pids").glob("*.pid")), "a component was started anyway"


def _host_leftovers(state: Path) -> list[str]:
    """What a stopped real node must not leave: mounts under its state, the bridge, iptables chains."""
    left = []
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True)
    left += [m for m in mounts.stdout.split() if m.startswith(f"{state}/")]
    if subprocess.run(["ip", "link", "show", "phx0"], capture_output=True, check=False).returncode == 0:
        left.append("bridge phx0")
    for save in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        left += [f"{save}: {line}" for line in rules.splitlines() if line.startswith(":KUBE-")]
    if Path("/run/netns").exists():
        left += [f"netns {n.name}" for n in Path("/run/netns").glob("cni-*")]
    return left


@pytest.mark.slow
def test_down_leaves_the_machine_clean_and_up_brings_the_pods_back(
    real_control_plane: ControlPlane, real_namespace: str, probe_image: str
) -> None:
    _web(real_control_plane, real_namespace, probe_image, replicas=1)
    env = real_control_plane.script_env

    def script(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "scripts/control-plane.sh", action],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=REPO,
            check=False,
        )

    down = script("down")
    assert down.returncode == 0, down.stderr
    assert _host_leftovers(real_control_plane.state) == []
    up = script("up")
    assert up.returncode == 0, up.stderr
    assert "real node" in up.stderr and "Ready" in up.stderr
    # The Deployment's pod restarts on the node and the Service routes to it again.
    cluster_ip = str(real_control_plane.get("service", "web", real_namespace)["spec"]["clusterIP"])
    wait_until(
        lambda: _answer(f"http://{cluster_ip}/").startswith("web-"), 90, "the web Service answering again"
    )
