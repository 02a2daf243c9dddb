"""Helpers for end-to-end tests on the REAL node (`PHOENIX_CP_NODES=real`): the local image registry,
the probe image the tests run, and small pod builders.

The real node is one per machine (its bridge, iptables chains, kubelet ports and DNS address are
host-wide), so a session that wants it starts a private control plane (own state dir, free ports)
whose node is that machine singleton; `scripts/control-plane.sh up` refuses, naming the state dir
that holds it, when another control plane already runs the node. Pods pull through containerd's
mirrors from the local registry (`scripts/registry.sh`), never from another host.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2e_kube import SCRIPTS, ControlPlane, ControlPlaneUnavailable, wait_until

PROBE_SRC = Path(__file__).with_name("probe") / "main.go"
# Pods name the probe by a registry the mirrors redirect (as the chart's ghcr.io images are);
# it is pushed to the local registry without the registry host.
PROBE_REPOSITORY = "phoenix-e2e/probe"
MIRRORED_REGISTRY = "ghcr.io"
CACHE = Path(os.environ.get("PHOENIX_CACHE", Path.home() / ".cache" / "phoenix"))


def go_binary() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise ControlPlaneUnavailable("the Go toolchain is needed to build the probe image")
    return go


def registry(action: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / "registry.sh"), action],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def build_probe_image(registry_addr: str) -> str:
    """Build the static probe binary (cached by source hash), pack it as an OCI image, push it to the
    local registry; return the name pods use (through the ghcr.io mirror)."""
    digest = hashlib.sha256(PROBE_SRC.read_bytes()).hexdigest()[:16]
    work = CACHE / "probe" / digest
    binary = work / "probe"
    if not binary.exists():
        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROBE_SRC, work / "main.go")
        (work / "go.mod").write_text("module phoenix.local/probe\n\ngo 1.25\n")
        result = subprocess.run(
            [go_binary(), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary) + ".tmp", "."],
            cwd=work,
            capture_output=True,
            text=True,
            env={**os.environ, "CGO_ENABLED": "0"},
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise ControlPlaneUnavailable(f"building the probe failed:\n{result.stderr[-2000:]}")
        Path(str(binary) + ".tmp").rename(binary)
    archive = work / "probe.oci.tar"
    image = f"{MIRRORED_REGISTRY}/{PROBE_REPOSITORY}:{digest}"
    if not archive.exists():
        subprocess.run(
            [
                "python3",
                str(SCRIPTS / "node" / "oci_image.py"),
                "--binary",
                str(binary),
                "--path",
                "/probe",
                "--name",
                image,
                "-o",
                str(archive),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    push = subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci-archive:{archive}",
            f"docker://{registry_addr}/{PROBE_REPOSITORY}:{digest}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if push.returncode != 0:
        raise ControlPlaneUnavailable(f"pushing the probe image failed:\n{push.stderr[-2000:]}")
    return image


def probe_pod(name: str, image: str, args: list[str], **spec: Any) -> dict[str, Any]:
    """A pod running the probe with `args`; extra keyword arguments go into the container."""
    container = {"name": "probe", "image": image, "args": args, **spec}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
    }


def wait_pod_ready(cp: ControlPlane, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = cp.get("pod", name, namespace)
        cond = cp.condition(pod, "Ready")
        return pod if cond and cond["status"] == "True" else None

    try:
        return wait_until(ready, timeout, f"pod {namespace}/{name} Ready")
    except AssertionError:
        described = cp.kubectl("describe", "pod", name, "-n", namespace, check=False).stdout
        raise AssertionError(
            f"pod {namespace}/{name} not Ready within {timeout:.0f}s:\n{described[-3000:]}"
        ) from None


def exec_probe(cp: ControlPlane, namespace: str, pod: str, *args: str, check: bool = True) -> str:
    return cp.kubectl("exec", pod, "-n", namespace, "--", "/probe", *args, timeout=60, check=check).stdout


def node_address(cp: ControlPlane) -> str:
    """The real node's InternalIP: the bridge gateway pods reach the host on."""
    node = cp.get("nodes")["items"][0]
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (an http:// URL we built)
        return str(response.read().decode())


@contextmanager
def host_listener(address: str, greeting: bytes) -> Iterator[int]:
    """A TCP server on the HOST at `address` (e.g. the node address, where PostgreSQL would listen)
    that sends `greeting` to every connection; yields its port."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 0))
    server.listen(8)
    server.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
