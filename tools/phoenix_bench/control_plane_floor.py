"""`python -m phoenix_bench.control_plane_floor`: the control plane alone, with the same objects
and no operator: the floor under table 3's "create to all Ready".

A PhoenixAuth is Ready once its children are: two Deployments available (auth, 2 pods; Redis,
1 pod) and the migration Job complete, which the API server, controller manager, scheduler and
kwok do, not the operator. This bench creates exactly the children an operator's first reconcile
applies (its own `Reconciler`, run against an in-memory API), without owner references (their
owner does not exist here, and the garbage collector would remove them), for N PhoenixAuths at
once, 32 requests at a time like the operator, and times the moment every Deployment is
available and every Job complete. It also reads the CPU the control plane's processes used over
that time (from /proc), and its own: on a machine the control plane saturates, that CPU over the
cores is the least time any operator can take. What table 3 takes beyond this is the operator's
share: spreading its creates over its reconciles, its watches, noticing readiness, writing status.

    scripts/control-plane.sh up
    python -m phoenix_bench.control_plane_floor [--count 200] [--runs 3] [--without KIND]

Needs `kubectl` (its proxy carries the requests) and the kubeconfig of `scripts/control-plane.sh`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiohttp

from phoenix_testkit.fake_kube import FakeKube

from .errors import BenchError
from .operator_scale import (
    Kubectl,
    clear_leftovers,
    control_plane_env,
    delete_namespace,
    median_none_worst,
    phoenix_auth_manifest,
)
from .proc import cpu_by_command, cpu_s, cpu_since, cpu_text
from .report import markdown_table
from .servers import free_port

CONCURRENCY = 32  # the operator's reconciles at once (daemon.Slots)
DB_URL = "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"


def children(
    count: int, namespace: str, without: frozenset[str] = frozenset()
) -> list[tuple[str, dict[str, Any]]]:
    """(owner's name, child) for what the operator's first reconcile of `count` minimal
    PhoenixAuths applies, owner references removed, kinds in `without` left out; the database
    Secret they all read is not among them."""
    from phoenix_operator.kube import KubeClient
    from phoenix_operator.reconcile import Reconciler

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "phoenix-db", "namespace": namespace},
        "data": {"DATABASE_URL": _b64(DB_URL)},
    }
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(count):
        kube = FakeKube()
        kube.put(copy.deepcopy(secret))
        body = phoenix_auth_manifest(f"pxa-{i}", namespace, "phoenix-db")
        body["metadata"] |= {"uid": str(uuid.uuid4()), "generation": 1}
        outcome = asyncio.run(Reconciler(cast(KubeClient, kube)).reconcile(body))
        if outcome.error is not None:
            raise BenchError(f"the reconcile of {body['metadata']['name']} failed: {outcome.error}")
        for (kind, _, name), obj in kube.objects.items():
            if (kind == "Secret" and name == "phoenix-db") or kind in without:
                continue
            obj["metadata"].pop("ownerReferences", None)
            obj["metadata"].pop("generation", None)  # the fake API's; the API server sets its own
            out.append((body["metadata"]["name"], obj))
    return out


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


@dataclass
class FloorResult:
    count: int
    objects: int
    created_s: float  # the last create answered
    half_ready_s: float | None  # the children of half of the PhoenixAuths ready
    all_ready_s: float | None  # every Deployment available, every Job complete
    control_plane_cpu_s: dict[str, float]  # CPU seconds per process, from the first create to all ready
    client_cpu_s: float = 0.0  # this bench's own and its kubectl proxy's over the same time


def _ready(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    if obj.get("kind") == "Job":
        return any(
            c.get("type") == "Complete" and c.get("status") == "True" for c in status.get("conditions") or []
        )
    wanted = (obj.get("spec") or {}).get("replicas", 1)
    return int(status.get("availableReplicas") or 0) >= int(wanted) and (
        status.get("observedGeneration") == (obj.get("metadata") or {}).get("generation")
    )


async def _watch(
    session: aiohttp.ClientSession,
    url: str,
    kind: str,
    ready: dict[tuple[str, str], bool],
    changed: asyncio.Event,
) -> None:
    """Follow one kind's objects (a watch from the start, re-opened when the server ends it)."""
    while True:
        async with session.get(
            url, params={"watch": "1"}, timeout=aiohttp.ClientTimeout(total=None)
        ) as response:
            async for line in response.content:
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") in ("ADDED", "MODIFIED"):
                    obj["kind"] = kind
                    ready[(kind, obj["metadata"]["name"])] = _ready(obj)
                    changed.set()


async def _run(
    base: str, namespace: str, objects: list[tuple[str, dict[str, Any]]], count: int, limit: float
) -> FloorResult:
    from phoenix_operator.kube import ApiSession, KubeClient

    owner_of = {
        (o["kind"], o["metadata"]["name"]): owner
        for owner, o in objects
        if o["kind"] in ("Deployment", "Job")
    }
    ready: dict[tuple[str, str], bool] = {}
    changed = asyncio.Event()

    def owners_ready() -> int:
        pending = {owner for key, owner in owner_of.items() if not ready.get(key)}
        return count - len(pending)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        api = ApiSession()
        api.set(session, base)
        kube = KubeClient(api)
        watches = [
            asyncio.create_task(
                _watch(session, f"{base}/apis/{path}/namespaces/{namespace}/{plural}", kind, ready, changed)
            )
            for path, plural, kind in (("apps/v1", "deployments", "Deployment"), ("batch/v1", "jobs", "Job"))
        ]
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for _, obj in objects:
            queue.put_nowait(obj)

        async def creator() -> None:
            while not queue.empty():
                await kube.apply(queue.get_nowait())

        cpu_before = cpu_by_command()
        started = time.monotonic()
        await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
        created = time.monotonic() - started
        half = None
        try:
            while (left := started + limit - time.monotonic()) > 0:
                done = owners_ready()
                if half is None and 2 * done >= count:
                    half = time.monotonic() - started
                if done == count:
                    elapsed = time.monotonic() - started
                    return FloorResult(count, len(objects), created, half, elapsed, cpu_since(cpu_before))
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=min(left, 5.0))
            return FloorResult(count, len(objects), created, half, None, cpu_since(cpu_before))
        finally:
            for task in watches:
                task.cancel()


def run_once(
    kubectl: Kubectl, count: int, timeout: float, log: Any, without: frozenset[str] = frozenset()
) -> FloorResult:
    namespace = f"bench-floor-{count}-{secrets.token_hex(3)}"
    objects = children(count, namespace, without)
    kubectl.run("create", "namespace", namespace)
    port = free_port()
    proxy = subprocess.Popen(
        [kubectl.binary, "--kubeconfig", kubectl.kubeconfig, "proxy", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        log(f"N={count}: creating {len(objects)} objects in {namespace}")
        own_before = cpu_s(os.getpid()) + cpu_s(proxy.pid)
        result = asyncio.run(_run(f"http://127.0.0.1:{port}", namespace, objects, count, timeout))
        result.client_cpu_s = round(cpu_s(os.getpid()) + cpu_s(proxy.pid) - own_before, 1)
        log(
            f"N={count}: created in {result.created_s:.1f} s, half ready {_s(result.half_ready_s)}, "
            f"all ready {_s(result.all_ready_s)}; CPU s: {cpu_text(result.control_plane_cpu_s)}; "
            f"this client and its proxy {result.client_cpu_s:.1f}"
        )
        return result
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        delete_namespace(kubectl, namespace, log)


def _s(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.1f} s"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m phoenix_bench.control_plane_floor", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--count", type=int, default=200, help="PhoenixAuths whose children are created (default 200)"
    )
    p.add_argument("--runs", type=int, default=3, help="runs; the median is printed (default 3)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for all ready, per run")
    p.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="KIND",
        help="leave this kind of child out (repeatable), e.g. HorizontalPodAutoscaler to see what "
        "autoscalers without a metrics API cost the control plane",
    )
    args = p.parse_args(argv)

    def log(message: str) -> None:
        print(f"[control-plane-floor {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    try:
        kubectl = Kubectl.of(control_plane_env())
        clear_leftovers(kubectl, log)
        results = []
        for i in range(args.runs):
            log(f"run {i + 1}/{args.runs}")
            results.append(run_once(kubectl, args.count, args.timeout, log, frozenset(args.without)))
            time.sleep(20)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"control-plane-floor: error: {exc}", file=sys.stderr)
        return 1

    def median(values: list[float | None]) -> str:
        return _s(median_none_worst(values))

    rows = [
        [
            str(args.count),
            str(results[0].objects),
            median([r.created_s for r in results]),
            median([r.half_ready_s for r in results]),
            median([r.all_ready_s for r in results]),
            " / ".join(_s(r.all_ready_s) for r in results),
            f"{statistics.median(sum(r.control_plane_cpu_s.values()) for r in results):.0f} s",
            f"{statistics.median(r.client_cpu_s for r in results):.0f} s",
        ]
    ]
    headers = [
        "N PhoenixAuths",
        "Children",
        "All created",
        "Half ready",
        "All ready",
        "Every run",
        "Control plane CPU",
        "Client CPU",
    ]
    print(
        f"The control plane alone (no operator), medians of {len(results)} run(s), "
        f"load {os.getloadavg()[0]:.1f}:"
    )
    print()
    print(markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
