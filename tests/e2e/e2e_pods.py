"""Helpers for end-to-end tests of Phoenix itself in real pods: images built and pushed by the repo's
own script, PostgreSQL on the host opened to the node's pods, and client traffic through the auth
Service (ClusterIP, routed by kube-proxy) that counts every failure.

The images are pulled by their default names (`ghcr.io/phoenix-dev/...:<VERSION>`) through the
node's registry mirrors, so a test exercises exactly the references the chart and the CRD default to.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from e2e_kube import REPO, SCRIPTS, ControlPlane, ControlPlaneUnavailable, wait_until

VERSION = (REPO / "VERSION").read_text().strip()
SEED_EMAIL = "test@example.com"
SEED_PASSWORD = "testpassword"


def script(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def build_images() -> list[str]:
    """`scripts/images.sh build` (a no-op for images whose inputs did not change); the references."""
    result = script("images.sh", "build")
    if result.returncode != 0:
        raise ControlPlaneUnavailable(f"scripts/images.sh build failed:\n{result.stderr[-3000:]}")
    return script("images.sh", "refs").stdout.split()


def push_images(registry_addr: str) -> None:
    result = script("images.sh", "push", registry_addr)
    if result.returncode != 0:
        raise ControlPlaneUnavailable(f"scripts/images.sh push failed:\n{result.stderr[-3000:]}")


@dataclass
class PodDatabase:
    """A database of its own on the host's PostgreSQL, owned by a role of its own, reachable from pods."""

    name: str
    role: str
    password: str
    node_ip: str

    def url(self, host: str | None = None, password: str | None = None) -> str:
        return f"postgresql://{self.role}:{password or self.password}@{host or self.node_ip}:5432/{self.name}"

    def admin(self, sql: str) -> None:
        """Run `sql` as PostgreSQL's superuser (roles: the demo's `phoenix` role may not create them)."""
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )


def pod_network(node_ip: str) -> str:
    """The pods' subnet: the network of the bridge that carries the node address."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        cidr = line.split()[3]
        if cidr.split("/")[0] == node_ip:
            return str(ipaddress.ip_interface(cidr).network)
    raise ControlPlaneUnavailable(f"no interface carries the node address {node_ip}")


def open_database_to_pods(node_ip: str) -> PodDatabase:
    pod_cidr = pod_network(node_ip)
    result = script("services.sh", "pod-access", node_ip, pod_cidr, timeout=120)
    if result.returncode != 0:
        raise ControlPlaneUnavailable(f"scripts/services.sh pod-access failed:\n{result.stderr[-2000:]}")
    suffix = uuid.uuid4().hex[:8]
    db = PodDatabase(
        name=f"phoenix_pods_{suffix}", role=f"phx_pods_{suffix}", password=uuid.uuid4().hex, node_ip=node_ip
    )
    db.admin(f"CREATE ROLE {db.role} LOGIN PASSWORD '{db.password}'")
    db.admin(f"CREATE DATABASE {db.name} OWNER {db.role}")
    return db


def drop_database(db: PodDatabase) -> None:
    db.admin(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")
    db.admin(f"DROP ROLE IF EXISTS {db.role}")


def service_url(cp: ControlPlane, namespace: str, name: str) -> str:
    svc = cp.get("service", name, namespace)
    port = svc["spec"]["ports"][0]["port"]
    return f"http://{svc['spec']['clusterIP']}:{port}"


def ready_pods(cp: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods matching `selector` that are Ready and not terminating."""
    out = []
    for pod in json_pods(cp, namespace, selector):
        cond = cp.condition(pod, "Ready")
        if cond and cond["status"] == "True" and not pod["metadata"].get("deletionTimestamp"):
            out.append(pod)
    return out


def json_pods(cp: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = cp.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def login(
    client: httpx.Client, base: str, email: str = SEED_EMAIL, password: str = SEED_PASSWORD
) -> httpx.Response:
    return client.post(f"{base}/api/auth/phoenix", json={"email": email, "password": password}, timeout=10)


@dataclass
class Traffic:
    """Steady client load through the Service while something happens to the pods.

    `session_threads` keep-alive clients each check the sessions created at start; one client logs
    in every `login_interval` seconds. A request that fails (connection error, timeout or 5xx) is
    retried once; `failures` counts first attempts that failed, `unabsorbed` those whose retry
    failed too. Sessions created during the run are re-checked at the end (none may be lost).
    """

    base: str
    sessions: list[str]
    session_threads: int = 2
    login_interval: float = 0.25
    checks: int = 0
    logins: int = 0
    failures: list[str] = field(default_factory=list)
    unabsorbed: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _attempt(self, client: httpx.Client, what: str, send: Any) -> httpx.Response | None:
        for attempt in (1, 2):
            try:
                response = send(client)
                if response.status_code < 500:
                    return response
                problem = f"{what}: HTTP {response.status_code} {response.text[:120]}"
            except httpx.HTTPError as exc:
                problem = f"{what}: {type(exc).__name__}: {exc}"
            with self._lock:
                (self.failures if attempt == 1 else self.unabsorbed).append(problem)
        return None

    def _check_sessions(self, index: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = index
            while not self._stop.is_set():
                token = self.sessions[i % len(self.sessions)]
                i += 1
                response = self._attempt(
                    client,
                    "session",
                    lambda c, t=token: c.get(
                        f"{self.base}/api/auth/session", headers={"Authorization": f"Bearer {t}"}
                    ),
                )
                with self._lock:
                    self.checks += 1
                if response is not None and response.status_code != 200:
                    with self._lock:
                        self.unabsorbed.append(
                            f"session refused: HTTP {response.status_code} {response.text[:120]}"
                        )

    def _log_in(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                response = self._attempt(client, "login", lambda c: login(c, self.base))
                with self._lock:
                    self.logins += 1
                if response is not None:
                    if response.status_code == 200:
                        with self._lock:
                            self.created.append(response.json()["session"]["sessionId"])
                    else:
                        with self._lock:
                            self.unabsorbed.append(
                                f"login refused: HTTP {response.status_code} {response.text[:120]}"
                            )
                self._stop.wait(self.login_interval)

    def __enter__(self) -> Traffic:
        self._threads = [
            threading.Thread(target=self._check_sessions, args=(i,), daemon=True)
            for i in range(self.session_threads)
        ]
        self._threads.append(threading.Thread(target=self._log_in, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def lost_sessions(self) -> list[str]:
        """Sessions (from before and during the run) the service no longer accepts."""
        lost = []
        with httpx.Client(timeout=5) as client:
            for token in [*self.sessions, *self.created]:
                r = client.get(f"{self.base}/api/auth/session", headers={"Authorization": f"Bearer {token}"})
                if r.status_code != 200:
                    lost.append(f"{token[:8]}…: HTTP {r.status_code}")
        return lost

    def report(self) -> str:
        return (
            f"{self.checks} session checks, {self.logins} logins; "
            f"{len(self.failures)} failed first attempts, {len(self.unabsorbed)} not absorbed by one retry"
        )


def wait_rollout(cp: ControlPlane, namespace: str, deployment: str, timeout: float = 180) -> None:
    cp.kubectl(
        "rollout",
        "status",
        f"deployment/{deployment}",
        "-n",
        namespace,
        f"--timeout={int(timeout)}s",
        timeout=timeout + 10,
    )


@contextlib.contextmanager
def timed(label: str, into: dict[str, float]) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    into[label] = time.monotonic() - t0


def wait_ready_pxa(cp: ControlPlane, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pxa = cp.get("phoenixauth", name, namespace)
        cond = cp.condition(pxa, "Ready")
        gen_ok = pxa.get("status", {}).get("observedGeneration") == pxa["metadata"]["generation"]
        return pxa if cond and cond["status"] == "True" and gen_ok else None

    try:
        return wait_until(ready, timeout, f"PhoenixAuth {namespace}/{name} Ready")
    except AssertionError:
        described = cp.kubectl("describe", "phoenixauth", name, "-n", namespace, check=False).stdout
        pods = cp.kubectl("get", "pods,jobs", "-n", namespace, "-o", "wide", check=False).stdout
        raise AssertionError(
            f"PhoenixAuth not Ready in {timeout:.0f}s:\n{described[-3000:]}\n{pods}"
        ) from None
