"""End-to-end fixtures: a real local Kubernetes control plane, the real kubectl/helm, the operator
as a local process. See e2e_kube.py for why each session runs a private instance by default.

Environment:
  PHOENIX_E2E_SHARED=1  use the default instance (`scripts/control-plane.sh up` with default ports/state)
                        instead of a private one; it is left running if it was running before.
  PHOENIX_KEEP_CP=1     do not stop the control plane at the end (prints its kubeconfig).
  CI                    when set, a control plane that cannot start FAILS the tests instead of skipping.

`control_plane` has kwok's fake nodes (pods never run); `real_control_plane` has this machine as a
real node (containerd, kubelet, kube-proxy, CoreDNS: pods run), with `probe_image` and
`real_namespace` for its tests (see e2e_node.py). PHOENIX_E2E_NODE_WAIT (seconds, default 600): how long
`real_control_plane` waits while another session holds the machine's one real node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from e2e_kube import (
    CHART,
    OPERATOR_NS,
    RELEASE,
    SCRIPTS,
    SERVICE_ACCOUNT,
    CommandFailed,
    ControlPlane,
    ControlPlaneUnavailable,
    OperatorProcess,
    crd_established,
    free_ports,
    unavailable,
    wait_until,
)
from e2e_node import build_probe_image, registry
from e2e_pods import PodDatabase, build_images, drop_database, open_database_to_pods, push_images


def _build_binaries() -> Path:
    """Build (or find, when warm) the pinned binaries; returns their directory."""
    try:
        result = subprocess.run(
            ["bash", str(SCRIPTS / "build-control-plane.sh")],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneUnavailable("scripts/build-control-plane.sh took more than an hour") from exc
    if result.returncode != 0:
        raise ControlPlaneUnavailable(
            f"scripts/build-control-plane.sh failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _script(action: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / "control-plane.sh"), action],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A running control plane for the whole session (private unless PHOENIX_E2E_SHARED=1)."""
    try:
        bin_dir = _build_binaries()
    except ControlPlaneUnavailable as exc:
        unavailable(str(exc))
    shared = os.environ.get("PHOENIX_E2E_SHARED") == "1"
    env = {**os.environ, "PHOENIX_CP_BIN": str(bin_dir)}
    tmp_state: Path | None = None
    if not shared:
        tmp_state = Path(tempfile.mkdtemp(prefix="phoenix-cp-"))
        api, etcd, peer, kcm, sched, kwok = free_ports(6)
        env.update(
            PHOENIX_CP_NODES="kwok",
            PHOENIX_CP_STATE=str(tmp_state),
            PHOENIX_CP_APISERVER_PORT=str(api),
            PHOENIX_CP_ETCD_PORT=str(etcd),
            PHOENIX_CP_ETCD_PEER_PORT=str(peer),
            PHOENIX_CP_KCM_PORT=str(kcm),
            PHOENIX_CP_SCHEDULER_PORT=str(sched),
            PHOENIX_CP_KWOK_PORT=str(kwok),
        )
    was_running = shared and _script("status", env).returncode == 0
    up = _script("up", env)
    if up.returncode != 0:
        _script("down", env)
        unavailable(f"scripts/control-plane.sh up failed (exit {up.returncode}):\n{up.stderr[-4000:]}")
    state = Path(env.get("PHOENIX_CP_STATE", Path.home() / ".cache/phoenix/state/cp"))
    cp = ControlPlane(kubeconfig=state / "kubeconfig", bin_dir=bin_dir, state=state, script_env=env)
    try:
        yield cp
    finally:
        if os.environ.get("PHOENIX_KEEP_CP") == "1" or was_running:
            print(f"\ncontrol plane left running: export KUBECONFIG={cp.kubeconfig}", file=sys.stderr)
        else:
            _script("down", env)
            if tmp_state is not None:
                shutil.rmtree(tmp_state, ignore_errors=True)


@pytest.fixture(scope="session")
def real_control_plane() -> Iterator[ControlPlane]:
    """A control plane whose node is THIS machine (`PHOENIX_CP_NODES=real`): pods really run.

    Private state dir and free ports for etcd and the control-plane processes; the node itself
    (bridge, kubelet, kube-proxy, CoreDNS on the node address) is one per machine, so `up` fails,
    naming the state dir that holds it, while another control plane runs it. PHOENIX_E2E_SHARED=1
    uses the default state dir instead.
    """
    if os.geteuid() != 0:
        unavailable("the real node needs root (containerd, bridge, iptables, cgroups)")
    try:
        bin_dir = _build_binaries()
    except ControlPlaneUnavailable as exc:
        unavailable(str(exc))
    shared = os.environ.get("PHOENIX_E2E_SHARED") == "1"
    env = {**os.environ, "PHOENIX_CP_BIN": str(bin_dir), "PHOENIX_CP_NODES": "real"}
    private = not shared
    if private:
        # Short: containerd's socket lives under it (a unix socket path has at most 108 bytes).
        state = Path(tempfile.mkdtemp(prefix="phx-node-", dir="/tmp"))
        api, etcd, peer, kcm, sched = free_ports(5)
        env.update(
            PHOENIX_CP_STATE=str(state),
            PHOENIX_CP_APISERVER_PORT=str(api),
            PHOENIX_CP_ETCD_PORT=str(etcd),
            PHOENIX_CP_ETCD_PEER_PORT=str(peer),
            PHOENIX_CP_KCM_PORT=str(kcm),
            PHOENIX_CP_SCHEDULER_PORT=str(sched),
        )
    was_running = shared and _script("status", env).returncode == 0
    up = _script("up", env, timeout=300)
    # The node is one per machine: wait for another session's to be released (it says who holds it).
    deadline = time.monotonic() + float(os.environ.get("PHOENIX_E2E_NODE_WAIT", "600"))
    held = "belongs to the control plane in"
    while up.returncode != 0 and held in up.stderr and time.monotonic() < deadline:
        time.sleep(5)
        up = _script("up", env, timeout=300)
    if up.returncode != 0:
        _script("wipe" if private else "down", env)
        unavailable(
            f"scripts/control-plane.sh up (real node) failed (exit {up.returncode}):\n{up.stderr[-4000:]}"
        )
    state = Path(env.get("PHOENIX_CP_STATE", Path.home() / ".cache/phoenix/state/cp"))
    cp = ControlPlane(kubeconfig=state / "kubeconfig", bin_dir=bin_dir, state=state, script_env=env)
    try:
        yield cp
    finally:
        if os.environ.get("PHOENIX_KEEP_CP") == "1" or was_running:
            print(
                f"\nreal-node control plane left running: export KUBECONFIG={cp.kubeconfig}", file=sys.stderr
            )
        else:
            # wipe = down (pods, mounts, bridge, iptables chains) + delete the private state dir.
            _script("wipe" if private else "down", env)


@pytest.fixture(scope="session")
def probe_image(real_control_plane: ControlPlane) -> Iterator[str]:
    """The tests' probe image (tests/e2e/probe/main.go) in the local registry, named as pods pull it
    through containerd's ghcr.io mirror. Starts scripts/registry.sh if needed (and stops it after)."""
    was_running = registry("status").returncode == 0
    up = registry("up")
    if up.returncode != 0:
        unavailable(f"scripts/registry.sh up failed (exit {up.returncode}):\n{up.stderr[-2000:]}")
    try:
        image = build_probe_image(registry("addr").stdout.strip())
    except ControlPlaneUnavailable as exc:
        unavailable(str(exc))
    try:
        yield image
    finally:
        if not was_running and os.environ.get("PHOENIX_KEEP_CP") != "1":
            registry("down")


@pytest.fixture
def real_namespace(real_control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace on the real-node cluster, deleted afterwards (its pods stop with it)."""
    name = f"node-{uuid.uuid4().hex[:8]}"
    real_control_plane.kubectl("create", "namespace", name)
    wait_until(
        lambda: real_control_plane.exists("serviceaccount", "default", name),
        30,
        f"default ServiceAccount in {name}",
    )
    yield name
    real_control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    wait_until(
        lambda: control_plane.exists("serviceaccount", "default", name),
        30,
        f"default ServiceAccount in {name}",
    )
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def helm_release(control_plane: ControlPlane) -> Iterator[str]:
    """`helm install` of the chart (CRDs, RBAC, operator Deployment made Ready by kwok) for the session.

    The in-cluster operator pod never runs (no kubelet); the operator runs as a local process with
    the chart's ServiceAccount token (see `operator_kubeconfig`), so the chart's RBAC is what it gets.
    The tests make a namespace each, so the release serves every namespace (the chart's default is
    its own namespace only).
    """
    control_plane.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        "--set",
        "operator.watchAllNamespaces=true",
        "--wait",
        "--timeout",
        "120s",
    )
    wait_until(lambda: crd_established(control_plane), 60, "the PhoenixAuth CRD to be Established")
    yield RELEASE
    # The session's control plane is thrown away; no uninstall needed (test_helm covers uninstall).


@pytest.fixture(scope="session")
def operator_kubeconfig(control_plane: ControlPlane, helm_release: str) -> Path:
    """A kubeconfig authenticating as the chart's ServiceAccount (a short-lived token), so the local
    operator process has exactly the permissions the chart grants it, no more."""
    token = control_plane.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NS, "--duration=3h"
    ).stdout.strip()
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "phoenix-operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": cluster["name"], "user": "phoenix-operator"}}
        ],
        "current-context": "operator",
    }
    path = control_plane.state / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture
def operator_factory(operator_kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operator processes (as the chart's ServiceAccount); all are stopped after the test."""
    started: list[OperatorProcess] = []

    def start(name: str = "operator", *extra_args: str, **extra_env: str) -> OperatorProcess:
        op = OperatorProcess(
            operator_kubeconfig, tmp_path / f"{name}.log", list(extra_args), extra_env
        ).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    return operator_factory()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is an end-to-end test (so `-m "not e2e"` skips it)."""
    for item in items:
        if "/tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def built_images() -> list[str]:
    """Phoenix's three images, built by `scripts/images.sh build`; their references."""
    try:
        return build_images()
    except ControlPlaneUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def phoenix_images(real_control_plane: ControlPlane, built_images: list[str]) -> Iterator[list[str]]:
    """The images pushed to the local registry, where the node's mirrors find them under their
    default names (ghcr.io/phoenix-dev/...:<VERSION>)."""
    was_running = registry("status").returncode == 0
    up = registry("up")
    if up.returncode != 0:
        unavailable(f"scripts/registry.sh up failed (exit {up.returncode}):\n{up.stderr[-2000:]}")
    try:
        push_images(registry("addr").stdout.strip())
    except ControlPlaneUnavailable as exc:
        unavailable(str(exc))
    try:
        yield built_images
    finally:
        if not was_running and os.environ.get("PHOENIX_KEEP_CP") != "1":
            registry("down")


@pytest.fixture(scope="session")
def pods_database(real_control_plane: ControlPlane) -> Iterator[PodDatabase]:
    """A database and role of their own on the host's PostgreSQL, opened to the node's pods."""
    node = real_control_plane.get("nodes")["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    try:
        db = open_database_to_pods(node_ip)
    except ControlPlaneUnavailable as exc:
        unavailable(str(exc))
    yield db
    drop_database(db)


@pytest.fixture(scope="session")
def pods_release(real_control_plane: ControlPlane, phoenix_images: list[str]) -> ControlPlane:
    """`helm install` of the chart with its default image: the operator pod runs the real image.

    The tests make a namespace per module, so the release serves every namespace (the chart's
    default is its own namespace only).
    """
    cp = real_control_plane
    try:
        cp.helm(
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
            "--set",
            "operator.watchAllNamespaces=true",
            "--wait",
            "--timeout",
            "180s",
            timeout=240,
        )
    except CommandFailed as exc:
        pods = cp.kubectl("describe", "pods", "-n", OPERATOR_NS, check=False).stdout
        raise AssertionError(
            f"helm install with the real operator image failed: {exc}\n{pods[-3000:]}"
        ) from None
    wait_until(lambda: crd_established(cp), 60, "the PhoenixAuth CRD to be Established")
    return cp


@pytest.fixture(scope="module")
def real_namespace_module(real_control_plane: ControlPlane) -> Iterator[str]:
    """A namespace on the real-node cluster for one test module (its pods stop with it)."""
    name = f"pods-{uuid.uuid4().hex[:8]}"
    real_control_plane.kubectl("create", "namespace", name)
    wait_until(
        lambda: real_control_plane.exists("serviceaccount", "default", name),
        30,
        f"default ServiceAccount in {name}",
    )
    yield name
    real_control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
