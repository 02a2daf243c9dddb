"""Table 3: the operator at scale on the real local control plane.

For each N (default 1, 50, 200): a fresh namespace, a fresh operator process watching only it
(standalone, its own metrics port), then N PhoenixAuth objects created at once. Measured: the
time from the create call to every object's `Ready` condition being True, the time until every
object has a status at all (the operator's first pass has applied all children: its own share,
apart from the control plane's pipeline of scheduling pods and marking them Ready), reconciles
per second and Kubernetes API requests per reconcile (the operator's own counters), and the
operator's peak RSS (VmHWM from /proc: the kernel's high-water mark, so no peak is missed).
Progress is followed with one watch (a polling `kubectl get` every 0.5 s cost the shared 2 cores
a process start and a full LIST each time, competing with what is measured).

    scripts/control-plane.sh up
    python -m phoenix_bench.operator_scale [--counts 1,50,200] [--timeout 120]

Needs `kubectl` and the kubeconfig from `scripts/control-plane.sh env`, and `phoenix-operator`.
Each step is bounded by --timeout; the operator is stopped and the namespace deleted after it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import BenchError
from .proc import cpu_by_command, cpu_s, cpu_since, cpu_text
from .report import machine_facts, markdown_table, verdict, write_json
from .servers import Process, free_port

REPO = Path(__file__).resolve().parents[2]  # a source checkout: tools/phoenix_bench/ -> the repo
CRD_DIR = REPO / "crds"
GROUP_PLURAL = "phoenixauths.auth.phoenix.dev"
TARGET_READY_S = {200: 60.0}
TARGET_RSS_MB = 150.0


@dataclass
class ScaleResult:
    count: int
    ready: int
    seconds_to_all_ready: float | None  # None: not all Ready within the timeout
    reconciles: float | None
    reconciles_per_s: float | None
    peak_rss_mb: float | None
    timed_out: bool
    seconds_to_all_status: float | None = None  # every object has a status: first pass done
    api_requests: float | None = None  # the reconciler's Kubernetes API requests
    seconds_to_half_ready: float | None = None  # half of them Ready: what most objects wait
    operator_cpu_s: float | None = None  # the operator's CPU seconds from the create to all Ready
    control_plane_cpu_s: dict[str, float] | None = None  # the same, per control-plane process


def phoenix_auth_manifest(name: str, namespace: str, secret: str) -> dict[str, Any]:
    """The smallest valid PhoenixAuth (as manifests/samples/minimal.yaml)."""
    return {
        "apiVersion": "auth.phoenix.dev/v1alpha1",
        "kind": "PhoenixAuth",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"database": {"secretRef": {"name": secret}, "connectionBudget": 50}},
    }


def count_ready(items: Sequence[Mapping[str, Any]]) -> int:
    """How many objects have a `Ready` condition with status "True"."""
    ready = 0
    for item in items:
        for cond in (item.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready += 1
                break
    return ready


def parse_reconciles(metrics_text: str) -> float:
    """Sum of phoenix_operator_reconciles_total over all results."""
    return _sum_counter(metrics_text, "phoenix_operator_reconciles_total")


def parse_api_requests(metrics_text: str) -> float:
    """Sum of phoenix_operator_api_requests_total over all verbs and kinds."""
    return _sum_counter(metrics_text, "phoenix_operator_api_requests_total")


def _sum_counter(metrics_text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})?\s+(\S+)$", metrics_text, re.M))


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class Kubectl:
    def __init__(self, kubeconfig: str, binary: str) -> None:
        self.kubeconfig, self.binary = kubeconfig, binary

    @classmethod
    def of(cls, env: Mapping[str, str]) -> Kubectl:
        """kubectl on env["PATH"] (else this process's PATH) for the cluster of env["KUBECONFIG"]."""
        binary = shutil.which("kubectl", path=env.get("PATH")) or shutil.which("kubectl")
        if not binary:
            raise BenchError("kubectl not found (scripts/control-plane.sh bin)")
        return cls(env["KUBECONFIG"], binary)

    def run(self, *args: str, stdin: str | None = None, timeout: float = 60, check: bool = True) -> str:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()[-500:]}")
        return proc.stdout


def control_plane_env() -> dict[str, str]:
    """KUBECONFIG and PATH from `scripts/control-plane.sh env` (raises if it is not up)."""
    script = REPO / "scripts" / "control-plane.sh"
    if not script.exists():
        raise BenchError(
            "scripts/control-plane.sh is missing; the operator benchmark needs the control plane"
        )
    status = subprocess.run(
        ["bash", str(script), "status"], capture_output=True, text=True, timeout=30, check=False
    )
    if status.returncode != 0:
        raise BenchError(
            "the control plane is not running: scripts/control-plane.sh up\n" + status.stderr[-500:]
        )
    out = subprocess.run(
        ["bash", str(script), "env"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r"export KUBECONFIG=(\S+)", out.stdout)
    if not match:
        raise BenchError("scripts/control-plane.sh env printed no KUBECONFIG")
    bin_dir = subprocess.run(
        ["bash", str(script), "bin"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    return {"KUBECONFIG": match.group(1).strip("'\""), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


def run_scale(
    kubectl: Kubectl, count: int, timeout: float, log_dir: Path, env: Mapping[str, str], log
) -> ScaleResult:
    namespace = f"bench-op-{count}-{secrets.token_hex(3)}"
    kubectl.run("create", "namespace", namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "phoenix-db", "namespace": namespace},
        "type": "Opaque",
        "stringData": {"DATABASE_URL": "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"},
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(secret))
    port = free_port()
    operator = Process(
        f"operator-{count}",
        [
            "phoenix-operator",
            "--kubeconfig",
            env["KUBECONFIG"],
            "--namespace",
            namespace,
            "--standalone",
            "--metrics-port",
            str(port),
            "--liveness-port",
            "0",
        ],
        {**os.environ, **env},
        log_dir,
    )
    try:
        _wait_metrics(operator, port)
        items = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [phoenix_auth_manifest(f"pxa-{i}", namespace, "phoenix-db") for i in range(count)],
        }
        log(f"N={count}: creating {count} PhoenixAuth in {namespace}")
        cpu_before, operator_before = cpu_by_command(), cpu_s(operator.pid)
        started = time.monotonic()
        kubectl.run("create", "-f", "-", stdin=json.dumps(items), timeout=timeout)
        progress = wait_all_ready(env["KUBECONFIG"], namespace, count, started, timeout, operator, log)
        elapsed = time.monotonic() - started
        control_plane_cpu, operator_cpu = cpu_since(cpu_before), cpu_s(operator.pid) - operator_before
        text = _metrics_text(port)
        if text is not None:  # the per-verb/kind request counts, for a closer look
            (log_dir / f"operator-{count}.metrics").write_text(text)
        reconciles = parse_reconciles(text) if text is not None else None
        api_requests = parse_api_requests(text) if text is not None else None
        rss = peak_rss_mb(operator.pid)
        log(
            f"N={count}: {progress.ready}/{count} Ready after {elapsed:.1f} s (half after "
            f"{progress.half_ready_s} s, all with status after {progress.all_status_s} s); "
            f"reconciles {reconciles}; API requests {api_requests}; "
            f"peak RSS {rss} MB; CPU s: operator {operator_cpu:.1f}, {cpu_text(control_plane_cpu)}"
        )
        return ScaleResult(
            count=count,
            ready=progress.ready,
            seconds_to_all_ready=progress.all_ready_s,
            reconciles=reconciles,
            reconciles_per_s=(reconciles / elapsed) if reconciles is not None else None,
            peak_rss_mb=rss,
            timed_out=progress.all_ready_s is None,
            seconds_to_all_status=progress.all_status_s,
            api_requests=api_requests,
            seconds_to_half_ready=progress.half_ready_s,
            operator_cpu_s=round(operator_cpu, 1),
            control_plane_cpu_s=control_plane_cpu,
        )
    finally:
        cleanup(kubectl, namespace, operator, log)


def clear_leftovers(kubectl: Kubectl, log) -> None:
    """Delete the namespaces an interrupted benchmark left (`bench-*`), PhoenixAuths' finalizers
    stripped (no operator runs for them any more). Left in place they are not idle: each
    PhoenixAuth's HorizontalPodAutoscaler writes a warning Event every 15 s without a metrics
    API, so 440 of them cost the control plane a steady load that slowed every later run."""
    names = kubectl.run("get", "namespaces", "-o", "name").split()
    for ns in (n.split("/", 1)[1] for n in names if n.startswith("namespace/bench-")):
        log(f"deleting {ns}, left by an interrupted run")
        strip_finalizers(
            kubectl, ns, kubectl.run("get", GROUP_PLURAL, "-n", ns, "-o", "name", check=False).split()
        )
        kubectl.run("delete", "namespace", ns, "--timeout=300s", check=False, timeout=330)


@dataclass
class Progress:
    ready: int = 0
    all_ready_s: float | None = None
    all_status_s: float | None = None
    half_ready_s: float | None = None


def wait_all_ready(
    kubeconfig: str, namespace: str, count: int, started: float, timeout: float, operator: Process, log
) -> Progress:
    """Follow the PhoenixAuths with a watch (re-opened every few seconds to check the operator is
    alive) until all `count` are Ready or `timeout` seconds after `started` have passed."""
    from kubernetes import client, config, watch  # the operator's dependency; only this bench needs it

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    group, plural = GROUP_PLURAL.split(".", 1)[1], GROUP_PLURAL.split(".", 1)[0]
    state: dict[str, tuple[bool, bool]] = {}  # name -> (has status, Ready)
    progress = Progress()
    last_log = started
    while (left := started + timeout - time.monotonic()) > 0:
        if not operator.alive():
            raise BenchError(f"the operator exited:\n{operator.log_tail()}")
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            group,
            "v1alpha1",
            namespace,
            plural,
            timeout_seconds=max(1, min(5, int(left))),
            _request_timeout=15,
        )
        try:
            for event in stream:
                obj = event["object"]
                name = obj["metadata"]["name"]
                if event["type"] == "DELETED":
                    state.pop(name, None)
                    continue
                state[name] = (bool((obj.get("status") or {}).get("conditions")), count_ready([obj]) == 1)
                now = time.monotonic()
                if (
                    progress.all_status_s is None
                    and len(state) == count
                    and all(s for s, _ in state.values())
                ):
                    progress.all_status_s = round(now - started, 1)
                progress.ready = sum(1 for _, r in state.values() if r)
                if progress.half_ready_s is None and 2 * progress.ready >= count:
                    progress.half_ready_s = round(now - started, 1)
                if progress.ready == count:
                    progress.all_ready_s = now - started
                    return progress
                if now - last_log > 15:
                    log(f"N={count}: {progress.ready}/{count} Ready after {now - started:.0f} s")
                    last_log = now
                if now - started > timeout:
                    break
        except client.exceptions.ApiException as exc:  # e.g. 504 "Too large resource version" from
            log(f"N={count}: watch re-opened after HTTP {exc.status}")  # a busy API server: list again
    return progress


def cleanup(kubectl: Kubectl, namespace: str, operator: Process, log, timeout: float = 90.0) -> None:
    """Delete the objects while the operator still runs (it removes its finalizers), then the
    namespace; whatever is left after `timeout` has its finalizers stripped, so a benchmark
    never leaves a namespace stuck in Terminating on a shared control plane."""
    kubectl.run("delete", GROUP_PLURAL, "--all", "-n", namespace, "--wait=false", check=False, timeout=120)
    deadline = time.monotonic() + timeout
    remaining: list[str] = []
    while time.monotonic() < deadline:
        out = kubectl.run("get", GROUP_PLURAL, "-n", namespace, "-o", "name", check=False)
        remaining = [line for line in out.splitlines() if line.strip()]
        if not remaining or not operator.alive():
            break
        time.sleep(1.0)
    operator.stop()
    if remaining:
        log(f"{len(remaining)} objects still present in {namespace}: removing their finalizers")
        strip_finalizers(kubectl, namespace, remaining)
    delete_namespace(kubectl, namespace, log)


def strip_finalizers(kubectl: Kubectl, namespace: str, names: Sequence[str]) -> None:
    """Remove the finalizers of these PhoenixAuths (`kubectl get -o name` form): no operator will."""
    for name in names:
        kubectl.run(
            "patch",
            "-n",
            namespace,
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def delete_namespace(kubectl: Kubectl, namespace: str, log) -> None:
    """Delete a benchmark's namespace and wait until it is gone: its garbage collection (thousands
    of children and pods) would otherwise run on the same cores as the next step and slow it by
    10-20 s."""
    log(f"deleting namespace {namespace} (waiting for its garbage collection)")
    try:
        kubectl.run("delete", "namespace", namespace, "--timeout=300s", check=False, timeout=330)
    except subprocess.TimeoutExpired:
        log(f"namespace {namespace} still terminating after 300 s; going on")


def _wait_metrics(proc: Process, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"the operator exited at start:\n{proc.log_tail()}")
        if _reconciles(port) is not None:
            return
        time.sleep(0.3)
    raise BenchError(
        f"the operator's metrics port {port} did not answer in {timeout:.0f} s:\n{proc.log_tail()}"
    )


def _metrics_text(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            return resp.read().decode()
    except OSError:
        return None


def _reconciles(port: int) -> float | None:
    text = _metrics_text(port)
    return parse_reconciles(text) if text is not None else None


def median_none_worst(values: Sequence[float | None]) -> float | None:
    """Median where None (not measured / not all Ready in time) counts as worse than any number;
    None when the median itself falls on one."""
    ordered = sorted(values, key=lambda v: (v is None, v or 0.0))
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    lo, hi = ordered[mid - 1], ordered[mid]
    return None if lo is None or hi is None else (lo + hi) / 2


def median_results(runs: Sequence[Sequence[ScaleResult]]) -> list[ScaleResult]:
    """Per N, the median of each column over the runs (machines are noisy: one run proves little)."""
    out = []
    for first in runs[0]:
        same = [next(r for r in run if r.count == first.count) for run in runs]
        ready = median_none_worst([float(r.ready) for r in same])
        all_ready = median_none_worst([r.seconds_to_all_ready for r in same])
        out.append(
            ScaleResult(
                count=first.count,
                ready=int(ready or 0),
                seconds_to_all_ready=all_ready,
                reconciles=median_none_worst([r.reconciles for r in same]),
                reconciles_per_s=median_none_worst([r.reconciles_per_s for r in same]),
                peak_rss_mb=median_none_worst([r.peak_rss_mb for r in same]),
                timed_out=all_ready is None,
                seconds_to_all_status=median_none_worst([r.seconds_to_all_status for r in same]),
                api_requests=median_none_worst([r.api_requests for r in same]),
                seconds_to_half_ready=median_none_worst([r.seconds_to_half_ready for r in same]),
                operator_cpu_s=median_none_worst([r.operator_cpu_s for r in same]),
                control_plane_cpu_s=_median_cpu([r.control_plane_cpu_s for r in same]),
            )
        )
    return out


def _median_cpu(readings: Sequence[Mapping[str, float] | None]) -> dict[str, float] | None:
    known = [r for r in readings if r is not None]
    if len(known) < len(readings) or not known:
        return None
    return {name: round(statistics.median(r[name] for r in known), 1) for name in known[0]}


def render(results: Sequence[ScaleResult]) -> str:
    rows = []
    for r in results:
        target = TARGET_READY_S.get(r.count)
        met_ready = (
            None
            if target is None
            else (r.seconds_to_all_ready is not None and r.seconds_to_all_ready <= target)
        )
        met_rss = None if r.peak_rss_mb is None else r.peak_rss_mb <= TARGET_RSS_MB
        rows.append(
            [
                str(r.count),
                f"{r.ready}/{r.count}",
                "n/a" if r.seconds_to_half_ready is None else f"{r.seconds_to_half_ready:.1f} s",
                "not all Ready (timeout)"
                if r.seconds_to_all_ready is None
                else f"{r.seconds_to_all_ready:.1f} s",
                "n/a" if r.seconds_to_all_status is None else f"{r.seconds_to_all_status:.1f} s",
                "n/a" if r.reconciles_per_s is None else f"{r.reconciles_per_s:.1f}/s",
                "n/a"
                if not r.reconciles or r.api_requests is None
                else f"{r.api_requests / r.reconciles:.1f}",
                "n/a" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f} MB",
                "n/a"
                if r.control_plane_cpu_s is None or r.operator_cpu_s is None
                else f"{sum(r.control_plane_cpu_s.values()):.0f} / {r.operator_cpu_s:.0f} s",
                f"{verdict(met_ready)} (<= {target:.0f} s)" if target else "",
                f"{verdict(met_rss)} (<= {TARGET_RSS_MB:.0f} MB)",
            ]
        )
    return markdown_table(
        [
            "N PhoenixAuths",
            "Ready",
            "Create to half Ready",
            "Create to all Ready",
            "Operator's first pass done",
            "Reconciles",
            "API requests / reconcile",
            "Operator peak RSS",
            "CPU to all Ready: control plane / operator",
            "Ready target",
            "RSS target",
        ],
        rows,
    )


def run_all(env: Mapping[str, str], counts: Sequence[int], timeout: float, log) -> list[ScaleResult]:
    """Table 3 on the cluster of env["KUBECONFIG"] (kubectl found on env["PATH"])."""
    kubectl = Kubectl.of(env)
    if not shutil.which("phoenix-operator"):
        raise BenchError("phoenix-operator is not installed (bash scripts/test.sh sets up .venv)")
    # install the CRD only when absent: never take over one a Helm release owns
    if kubectl.run("get", "crd", GROUP_PLURAL, "--ignore-not-found", "-o", "name").strip() == "":
        kubectl.run("apply", "-f", str(CRD_DIR / f"{GROUP_PLURAL}.yaml"))
    kubectl.run("wait", "--for=condition=Established", f"crd/{GROUP_PLURAL}", "--timeout=60s", timeout=90)
    clear_leftovers(kubectl, log)
    log_dir = Path(tempfile.mkdtemp(prefix="phoenix-bench-operator-"))
    log(f"operator logs in {log_dir}")
    return [run_scale(kubectl, n, timeout, log_dir, env, log) for n in counts]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m phoenix_bench.operator_scale", description=__doc__.splitlines()[0]
    )
    p.add_argument("--counts", default="1,50,200", help="comma-separated N (default 1,50,200)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for all Ready, per N")
    p.add_argument("--out", type=Path, default=Path("docs/bench"), help="writes operator-scale.json there")
    p.add_argument("--kubeconfig", help="use this cluster instead of scripts/control-plane.sh's")
    p.add_argument("--runs", type=int, default=3, help="runs of every N; the median is published (default 3)")
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the step's cleanup (delete the PhoenixAuths while the operator
    # still runs to remove its finalizers, then stop it) is not skipped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def log(message: str) -> None:
        print(f"[bench-operator {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    try:
        counts = [int(c) for c in args.counts.split(",") if c]
        if args.kubeconfig:
            env = {"KUBECONFIG": args.kubeconfig, "PATH": os.environ.get("PATH", "")}
        else:
            env = control_plane_env()
        if args.runs < 1:
            raise ValueError("--runs must be at least 1")
        runs: list[list[ScaleResult]] = []
        for i in range(args.runs):
            log(f"run {i + 1}/{args.runs}")
            runs.append(run_all(env, counts, args.timeout, log))
    except (BenchError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"bench-operator: error: {exc}", file=sys.stderr)
        return 1
    results = median_results(runs)
    table = render(results)
    lines = [f"Medians of {len(runs)} run(s), each N in a fresh namespace with a fresh operator.", "", table]
    if len(runs) > 1:
        lines += ["", "Every run (create to all Ready / peak RSS):", ""]
        for r in results:
            per_run = [next(x for x in run if x.count == r.count) for run in runs]
            cells = ", ".join(
                f"{'timeout' if x.seconds_to_all_ready is None else f'{x.seconds_to_all_ready:.1f} s'}"
                f" / {'n/a' if x.peak_rss_mb is None else f'{x.peak_rss_mb:.0f} MB'}"
                for x in per_run
            )
            lines.append(f"* N={r.count}: {cells}")
    text = "\n".join(lines)
    print(text)
    write_json(
        args.out / "operator-scale.json",
        {
            "machine": machine_facts(),
            "runs": [[asdict(r) for r in run] for run in runs],
            "results": [asdict(r) for r in results],
        },
    )
    (args.out / "operator-scale.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
