"""End-to-end helpers (used by conftest.py and the tests): a real local Kubernetes control plane,
the real kubectl/helm, the operator as a local process.

Why a private instance by default: other engineers run these tests on the same machine at the same
time, and the tests install cluster-scoped objects (the CRD, ClusterRoles, Kopf peering). Each test
session therefore starts its own etcd/kube-apiserver/controller-manager/scheduler/kwok on free
loopback ports with its own state dir (about 10 s and 600 MB), and stops it at the end.

Environment:
  PHOENIX_E2E_SHARED=1  use the default instance (`scripts/control-plane.sh up` with default ports/state)
                        instead of a private one; it is left running if it was running before. Stop
                        any other phoenix-operator using it first (e.g. `scripts/demo.sh`'s): a peer
                        with a higher priority would pause the tests' operators.
  PHOENIX_KEEP_CP=1     do not stop the control plane at the end (prints its kubeconfig).
  CI                    when set, a control plane that cannot start FAILS the tests instead of skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CHART = REPO / "helm" / "phoenix-operator"
MANIFESTS = REPO / "manifests"
CRD_NAME = "phoenixauths.auth.phoenix.dev"
OPERATOR_NS = "phoenix-system"
RELEASE = "phoenix-operator"
SERVICE_ACCOUNT = "phoenix-operator"


class ControlPlaneUnavailable(Exception):
    """The control plane could not be built or started; the message says why."""


class CommandFailed(Exception):
    """A kubectl/helm command exited non-zero; carries its output for assertions."""

    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.argv = argv
        self.result = result
        super().__init__(
            f"{' '.join(argv)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )


def unavailable(reason: str) -> None:
    """Never skip in CI: skipped end-to-end tests are not passing ones."""
    if os.environ.get("CI"):
        pytest.fail(f"control plane unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"control plane unavailable: {reason}")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (CommandFailed, KeyError, IndexError, TypeError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_exc}" if last_exc else "")
    )


@dataclass
class ControlPlane:
    """A running control plane and the tools to talk to it (the real kubectl and helm)."""

    kubeconfig: Path
    bin_dir: Path
    state: Path
    script_env: dict[str, str]
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            # helm keeps caches/config per user; keep them out of the user's home and per session.
            "HELM_CACHE_HOME": str(self.state / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.state / "helm" / "config"),
            "HELM_DATA_HOME": str(self.state / "helm" / "data"),
        }

    def run(
        self, tool: str, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / tool), *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandFailed([tool, *args], result)
        return result

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("timeout", 180)
        return self.run("helm", *args, **kw)

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        return json.loads(self.kubectl(*args).stdout)

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
        if namespace:
            args += ["-n", namespace]
        return bool(self.kubectl(*args).stdout.strip())

    def apply(self, obj: dict[str, Any] | str, namespace: str | None = None, check: bool = True):
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, input=text, check=check)

    def condition(self, obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
        for c in obj.get("status", {}).get("conditions", []) or []:
            if c.get("type") == ctype:
                return c
        return None


def crd_established(cp: ControlPlane) -> bool:
    crd = cp.get("crd", CRD_NAME)
    cond = cp.condition(crd, "Established")
    return bool(cond and cond["status"] == "True")


class OperatorProcess:
    """`phoenix-operator` running locally against the control plane; logs go to a file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        extra_args: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port, self.metrics_port = free_ports(2)

    def start(self) -> OperatorProcess:
        exe = shutil.which("phoenix-operator") or str(Path(sys.executable).parent / "phoenix-operator")
        env = {**os.environ, **self.extra_env}
        env.pop("KUBECONFIG", None)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                exe,
                f"--kubeconfig={self.kubeconfig}",
                "--all-namespaces",
                f"--liveness-port={self.health_port}",
                f"--metrics-port={self.metrics_port}",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        return self

    def healthy(self) -> bool:
        """Kopf's liveness endpoint answers 200 (the operator is up and its probes are fine)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def reconciles(self) -> float:
        """Reconciles this process has run (all results): proof of who acted, from its own metrics."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("phoenix_operator_reconciles_total"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup handlers run."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
