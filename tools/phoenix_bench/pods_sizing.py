"""Sizing measured on real pods: what one vCPU of the auth service serves, and what a pod weighs.

Platform teams size by numbers per core and per pod. This benchmark takes them where a team
would: an auth pod the operator made, on the real node of the local cluster, with its CPU limit
set, driven through its ClusterIP Service (kube-proxy) from this machine.

It runs against the demo's cluster (`bash scripts/demo.sh up`: the real node, the chart serving
the demo namespace, the demo database with its seeded users). For each configuration (argon2
profile x worker processes) it applies one PhoenixAuth `sizing` next to the demo's (1 replica,
CPU request = limit = `--cpu`), waits for its rollout, then measures in this order:

1. warm-up: every demo user logs in once (so each stored hash has the profile's parameters and
   later logins never pay a rehash) and checks its session once; the pod's memory working set
   after the first 64 users (every hashing thread has run) and after all gives bytes per cached
   user;
2. the verify time at low load (Server-Timing `verify`), and the login p50;
3. login capacity: closed loop, 16 keep-alive connections; per vCPU and as a fraction of the
   hashing limit (limit cores / verify time, both from this run);
4. session-check capacity: closed loop over the warm-up's tokens;
5. for the default configuration only, an open-loop sweep at fractions of the capacity: login
   p99 and the pod's CPU use (its cgroup's cpuacct, as the HPA's metric sees it) per step; the HPA
   target is the highest CPU use whose p99 stays within 2 verify times.

The load generator shares the machine's other core: a session-check capacity whose client used
most of a core is flagged "client-bound" (then it is a lower bound). Prints a table per run and
the medians; writes JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phoenix_auth.seed_demo import DEMO_PASSWORD, demo_email

from . import loadgen
from .stats import percentile

NAME = "sizing"
DEFAULT_NAMESPACE = "phoenix-demo"
PROFILES: dict[str, tuple[int, int]] = {  # name -> (memory KiB, time cost); parallelism 1
    "owasp": (19 * 1024, 2),  # the service's default: OWASP's second recommended profile
    "cheap": (12 * 1024, 1),  # about a third of the work: below OWASP's advice, a deliberate trade
}
DEFAULT_CONFIG = ("owasp", 1)  # the CRD's defaults: this profile, 1 worker
SWEEP = (0.3, 0.5, 0.7, 0.85, 0.95)
CONNECTIONS = 16
PRIME_LOGINS = 64  # first users' logins, 8 at a time: enough for every hashing thread to run one
_VERIFY_RE = re.compile(r"verify;dur=([0-9.]+)")
_TOTAL_RE = re.compile(r"total;dur=([0-9.]+)")


class SizingError(Exception):
    """The cluster or the pod is not in the state the benchmark needs; the message says which."""


# ------------------------------------------------------------------------------ cluster access
def kubectl(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SizingError(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()[-400:]}")
    return done.stdout


def phoenix_auth(ns: str, profile: str, workers: int, cpu: str) -> dict[str, Any]:
    """The PhoenixAuth of one configuration: one pod, CPU request = limit, the profile via extraEnv."""
    memory_kib, time_cost = PROFILES[profile]
    return {
        "apiVersion": "auth.phoenix.dev/v1alpha1",
        "kind": "PhoenixAuth",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {
            "database": {"secretRef": {"name": "phoenix-db"}, "connectionBudget": 20},
            "authService": {
                "replicas": {"min": 1, "max": 1},
                "workers": workers,
                "resources": {
                    "requests": {"cpu": cpu, "memory": "256Mi"},
                    "limits": {"cpu": cpu, "memory": "1Gi"},
                },
                "extraEnv": [
                    {"name": "PHOENIX_ARGON2_MEMORY_KIB", "value": str(memory_kib)},
                    {"name": "PHOENIX_ARGON2_TIME_COST", "value": str(time_cost)},
                ],
            },
        },
    }


def delete_and_wait(ns: str, timeout: float = 120) -> None:
    """No sizing objects left: each configuration starts from a fresh pod (and a rolling update of
    a 1-vCPU pod would not fit beside the demo's pods on a 2-core node)."""
    kubectl("-n", ns, "delete", "pxa", NAME, "--ignore-not-found", "--wait=true", timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not kubectl("-n", ns, "get", "pods", "-l", f"app.kubernetes.io/instance={NAME}", "-o", "name"):
            return
        time.sleep(1)
    raise SizingError(f"pods of {ns}/{NAME} still there {timeout:.0f} s after deleting it")


def apply_and_wait(ns: str, body: dict[str, Any], timeout: float = 300) -> None:
    delete_and_wait(ns)
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    deadline = time.monotonic() + timeout
    # The operator writes the Deployment; wait until it exists with this generation of the spec.
    while time.monotonic() < deadline:
        ready = kubectl(
            "-n", ns, "get", "pxa", NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        )
        if ready == "True" and _rollout_done(ns):
            return
        time.sleep(2)
    raise SizingError(f"PhoenixAuth {ns}/{NAME} not Ready with one updated pod after {timeout:.0f} s")


def _rollout_done(ns: str) -> bool:
    out = kubectl("-n", ns, "get", "deploy", NAME, "-o", "json")
    d = json.loads(out)
    s = d.get("status", {})
    want = d["spec"].get("replicas", 1)
    return (
        s.get("observedGeneration") == d["metadata"]["generation"]
        and s.get("updatedReplicas") == want
        and s.get("readyReplicas") == want
        and s.get("replicas") == want
    )


def pod_name(ns: str) -> str:
    out = kubectl(
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=auth",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    )
    names = out.split()
    if len(names) != 1:
        raise SizingError(f"expected one running auth pod of {NAME}, found {names}")
    return names[0]


_POD_PROBE = r"""
import os
def read(path):
    try:
        return open(path).read()
    except OSError:
        return None
def stat(text, key):
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0
if read("/sys/fs/cgroup/memory/memory.usage_in_bytes") is not None:  # cgroup v1
    usage = int(read("/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    inactive = stat(read("/sys/fs/cgroup/memory/memory.stat"), "total_inactive_file")
else:  # cgroup v2
    usage = int(read("/sys/fs/cgroup/memory.current") or 0)
    inactive = stat(read("/sys/fs/cgroup/memory.stat"), "inactive_file")
cpu = None
for path in ("/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"):
    if read(path):
        cpu = int(read(path)) / 1e9
if cpu is None:
    cpu = stat(read("/sys/fs/cgroup/cpu.stat"), "usage_usec") / 1e6 or None
print(usage - inactive, cpu)
"""


def pod_probe(ns: str, pod: str) -> tuple[float, float]:
    """(the auth container's memory working set in MiB, its cgroup's CPU seconds so far).

    The working set (usage minus inactive file pages) is what the kubelet's eviction and
    `kubectl top` count, and what a memory limit must hold; summing the processes' RSS would count
    the workers' shared pages once per process.
    """
    out = kubectl("-n", ns, "exec", pod, "-c", "auth", "--", "python3", "-c", _POD_PROBE).split()
    if out[1] == "None":
        raise SizingError("the auth container shows no cgroup CPU accounting")
    return int(out[0]) / 2**20, float(out[1])


def service_address(ns: str) -> tuple[str, int]:
    out = kubectl("-n", ns, "get", "service", NAME, "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].port}")
    ip, port = out.split()
    return ip, int(port)


# ------------------------------------------------------------------------------ requests
def login_request(host: str, email: str) -> bytes:
    body = json.dumps({"email": email, "password": DEMO_PASSWORD}).encode()
    return loadgen.encode_request(
        "POST", "/api/auth/phoenix", host=host, headers=[("Content-Type", "application/json")], body=body
    )


def session_request(host: str, token: str) -> bytes:
    return loadgen.encode_request(
        "GET", "/api/auth/session", host=host, headers=[("Authorization", f"Bearer {token}")]
    )


async def warm_up(host: str, port: int, emails: Sequence[str], connections: int = 8) -> list[str]:
    """Every user logs in once; returns their session tokens (the session check's working set)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for email in emails:
        queue.put_nowait(email)
    tokens: list[str] = []
    failures: list[int] = []

    async def worker() -> None:
        conn = loadgen.HttpConnection(host, port)
        try:
            while not queue.empty():
                email = queue.get_nowait()
                response = await conn.request(login_request(host, email))
                if response.status != 200:
                    failures.append(response.status)
                    continue
                tokens.append(json.loads(response.body or b"{}")["session"]["sessionId"])
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    if failures:
        raise SizingError(f"warm-up: {len(failures)} logins failed (statuses {sorted(set(failures))})")
    return tokens


def cache_users(host: str, port: int, emails: Sequence[str]) -> list[str]:
    """Log each user in and check each new session once: both land in the pod's caches."""
    tokens = loadgen.run(lambda: warm_up(host, port, emails))
    checks = [session_request(host, t) for t in tokens]
    run = loadgen.run(lambda: loadgen.open_loop(host, port, checks, rate=2000, duration=len(checks) / 2000))
    if run.errors:
        raise SizingError(f"warm-up: {run.errors} of {len(checks)} session checks failed")
    return tokens


class PodCpu:
    """The pod's CPU use over a `with` block, as a percentage of its limit (the HPA's view)."""

    def __init__(self, ns: str, pod: str, cpu: float) -> None:
        self.ns, self.pod, self.cpu = ns, pod, cpu
        self.percent = 0.0

    def __enter__(self) -> PodCpu:
        _, self._cpu0 = pod_probe(self.ns, self.pod)
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        _, cpu1 = pod_probe(self.ns, self.pod)
        elapsed = time.monotonic() - self._t0
        self.percent = round((cpu1 - self._cpu0) / elapsed / self.cpu * 100, 1)


def timings(result: loadgen.RunResult, pattern: re.Pattern[str]) -> list[float]:
    return [
        float(m.group(1)) for s in result.ok if s.server_timing and (m := pattern.search(s.server_timing))
    ]


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------ one configuration
@dataclass
class ConfigResult:
    profile: str
    workers: int
    cpu_limit: float
    verify_ms: float
    login_p50_ms: float
    login_per_s: float
    login_per_vcpu: float
    hashing_limit_fraction: float
    login_errors: int
    session_per_s: float
    session_per_vcpu: float
    session_client_cpu: float  # cores the load generator used during the session run
    mem_fresh_mib: float
    mem_primed_mib: float  # after the priming logins: every hashing thread's argon2 memory resident
    mem_warm_mib: float
    cached_users: int
    kib_per_cached_user: float  # slope from primed to warm (user record + session, L1 entries)
    login_cpu_percent: float  # the pod's CPU use during the capacity runs, % of its limit
    session_cpu_percent: float
    session_errors: int
    sweep: list[dict[str, float]] = field(default_factory=list)
    hpa_target_percent: float | None = None


def measure(
    ns: str, profile: str, workers: int, cpu: float, users: int, seconds: float, sweep: bool
) -> ConfigResult:
    apply_and_wait(ns, phoenix_auth(ns, profile, workers, _cpu_text(cpu)))
    pod = pod_name(ns)
    host, port = service_address(ns)
    time.sleep(2)  # the pod just became Ready: let its start-up work finish before the baseline
    mem_fresh, _ = pod_probe(ns, pod)

    # Every hashing thread first allocates its argon2 memory (glibc keeps it resident after the
    # first hash) with the first PRIME_LOGINS users; the slope over the others is the caches' alone.
    emails = [demo_email(i) for i in range(1, users + 1)]  # seed-demo numbers from 1
    tokens = cache_users(host, port, emails[:PRIME_LOGINS])
    mem_primed, _ = pod_probe(ns, pod)
    tokens += cache_users(host, port, emails[PRIME_LOGINS:])
    mem_warm, _ = pod_probe(ns, pod)

    logins = [login_request(host, e) for e in emails]
    low = loadgen.run(
        lambda: loadgen.open_loop(host, port, logins, rate=4, duration=8, connections=2, keep_bodies=True)
    )
    verify_ms = statistics.median(timings(low, _VERIFY_RE))
    login_p50 = statistics.median(s.done - s.sent for s in low.ok) * 1000

    with PodCpu(ns, pod, cpu) as login_cpu:
        cap = loadgen.run(
            lambda: loadgen.closed_loop(host, port, logins, duration=seconds, connections=CONNECTIONS)
        )
    login_rate = cap.achieved_rate()
    hashing_limit = cpu * 1000 / verify_ms

    sessions = [session_request(host, t) for t in tokens]
    c0 = _client_cpu()
    with PodCpu(ns, pod, cpu) as session_cpu:
        sess = loadgen.run(
            lambda: loadgen.closed_loop(host, port, sessions, duration=seconds, connections=CONNECTIONS)
        )
    client_cores = (_client_cpu() - c0) / seconds
    session_rate = sess.achieved_rate()

    result = ConfigResult(
        profile=profile,
        workers=workers,
        cpu_limit=cpu,
        verify_ms=round(verify_ms, 2),
        login_p50_ms=round(login_p50, 2),
        login_per_s=round(login_rate, 1),
        login_per_vcpu=round(login_rate / cpu, 1),
        hashing_limit_fraction=round(login_rate / hashing_limit, 3),
        login_errors=cap.errors,
        session_per_s=round(session_rate, 0),
        session_per_vcpu=round(session_rate / cpu, 0),
        session_client_cpu=round(client_cores, 2),
        mem_fresh_mib=round(mem_fresh, 1),
        mem_warm_mib=round(mem_warm, 1),
        cached_users=users,
        kib_per_cached_user=round((mem_warm - mem_primed) * 1024 / (users - PRIME_LOGINS), 2),
        mem_primed_mib=round(mem_primed, 1),
        login_cpu_percent=login_cpu.percent,
        session_cpu_percent=session_cpu.percent,
        session_errors=sess.errors,
    )
    if sweep:
        result.sweep = run_sweep(ns, pod, host, port, logins, login_rate, cpu)
        within = [s["cpu_percent"] for s in result.sweep if s["p99_ms"] <= 2 * verify_ms and s["errors"] == 0]
        result.hpa_target_percent = max(within) if within else None
    return result


def run_sweep(
    ns: str, pod: str, host: str, port: int, logins: Sequence[bytes], capacity: float, cpu: float
) -> list[dict[str, float]]:
    """Open-loop steps at fractions of the capacity: login p99 and the pod's CPU use (% of its limit)."""
    steps = []
    for fraction in SWEEP:
        rate = capacity * fraction
        with PodCpu(ns, pod, cpu) as used:
            run = loadgen.run(
                lambda rate=rate: loadgen.open_loop(
                    host, port, logins, rate=rate, duration=15, connections=64
                )
            )
        latencies = sorted(loadgen.corrected_latency(s) for s in run.ok)
        steps.append(
            {
                "fraction": fraction,
                "offered_per_s": round(rate, 1),
                "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else float("nan"),
                "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else float("nan"),
                "errors": run.errors,
                "cpu_percent": used.percent,
            }
        )
    return steps


def _cpu_text(cpu: float) -> str:
    return f"{int(cpu * 1000)}m"


# ------------------------------------------------------------------------------ report
def median_results(runs: list[list[ConfigResult]]) -> list[dict[str, Any]]:
    """Per configuration, the median of every number over the runs."""
    out = []
    for i, first in enumerate(runs[0]):
        row: dict[str, Any] = {
            "profile": first.profile,
            "workers": first.workers,
            "cpu_limit": first.cpu_limit,
        }
        for key, value in asdict(first).items():
            if isinstance(value, (int, float)) and key not in row and value is not None:
                values = [getattr(r[i], key) for r in runs if getattr(r[i], key) is not None]
                row[key] = statistics.median(values)
        targets = [r[i].hpa_target_percent for r in runs if r[i].hpa_target_percent is not None]
        row["hpa_target_percent"] = statistics.median(targets) if targets else None
        out.append(row)
    return out


def table(rows: Iterable[dict[str, Any]]) -> str:
    head = (
        "| argon2 | workers | verify ms | login p50 ms | logins/s per vCPU | of hashing limit | "
        "session checks/s per vCPU | pod CPU % (logins / sessions) | memory fresh / after logins / "
        "with users cached, MiB | "
        "KiB per cached user |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        client = " (client-bound)" if r["session_client_cpu"] >= 0.8 else ""
        lines.append(
            f"| {r['profile']} | {r['workers']} | {r['verify_ms']:.1f} | {r['login_p50_ms']:.1f} | "
            f"{r['login_per_vcpu']:.1f} | {r['hashing_limit_fraction']:.2f} | "
            f"{r['session_per_vcpu']:.0f}{client} | {r['login_cpu_percent']:.0f} / "
            f"{r['session_cpu_percent']:.0f} | {r['mem_fresh_mib']:.0f} / {r['mem_primed_mib']:.0f} / "
            f"{r['mem_warm_mib']:.0f} | "
            f"{r['kib_per_cached_user']:.1f} |"
        )
    return "\n".join(lines)


def sweep_table(steps: Sequence[dict[str, float]]) -> str:
    lines = [
        "| offered (of capacity) | logins/s | p50 ms | p99 ms | pod CPU (% of limit) | errors |",
        "|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['fraction']:.2f} | {s['offered_per_s']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
            f"{s['cpu_percent']:.0f} | {s['errors']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-pods", description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default=os.environ.get("PHOENIX_DEMO_NAMESPACE", DEFAULT_NAMESPACE))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu", type=float, default=1.0, help="the pod's CPU request and limit, in cores")
    parser.add_argument(
        "--users", type=int, default=1000, help="demo users logged in (cached) per configuration"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each capacity run")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/sizing.json"))
    parser.add_argument("--keep", action="store_true", help="leave the sizing PhoenixAuth in place")
    args = parser.parse_args(argv)
    if args.users < 2 * PRIME_LOGINS:
        parser.error(f"--users must be at least {2 * PRIME_LOGINS}")
    configs = [(p, int(w)) for p in args.profiles.split(",") for w in args.workers.split(",")]
    runs: list[list[ConfigResult]] = []
    try:
        for run in range(1, args.runs + 1):
            results = []
            for profile, workers in configs:
                print(
                    f"[sizing] run {run}/{args.runs}: {profile}, {workers} worker(s), {args.cpu:g} vCPU",
                    file=sys.stderr,
                )
                sweep = (profile, workers) == DEFAULT_CONFIG
                results.append(
                    measure(args.namespace, profile, workers, args.cpu, args.users, args.seconds, sweep)
                )
            runs.append(results)
            print(f"\nrun {run}\n" + table(asdict(r) for r in results) + "\n")
    except SizingError as exc:
        print(f"scripts/bench-pods: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            subprocess.run(
                [
                    "kubectl",
                    "-n",
                    args.namespace,
                    "delete",
                    "pxa",
                    NAME,
                    "--ignore-not-found",
                    "--wait=false",
                ],
                capture_output=True,
                check=False,
            )
    medians = median_results(runs)
    print(f"medians of {len(runs)} run(s)\n" + table(medians))
    for i, cfg in enumerate(configs):
        if cfg == DEFAULT_CONFIG:
            steps = runs[len(runs) // 2][i].sweep
            print(
                f"\nlogin load sweep ({cfg[0]}, {cfg[1]} worker, run {len(runs) // 2 + 1}); HPA target "
                f"(highest CPU use with p99 <= 2 verifies), median: {medians[i]['hpa_target_percent']}%\n"
                + sweep_table(steps)
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"runs": [[asdict(r) for r in rs] for rs in runs], "medians": medians}, indent=1)
    )
    print(f"\nwritten {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
