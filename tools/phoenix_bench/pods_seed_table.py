"""The seed's before/after rows with Phoenix in pods, next to the same service on loopback.

The seed promises auth API 25-45 ms and session validation 10-20 ms "after". docs/benchmarks.md
measures them on loopback; a team meets them through a Service, kube-proxy and a pod. This
benchmark measures both paths in one run, against the same database, users and Redis kind, so
the difference is what the pod path adds:

* **pod**: the demo's PhoenixAuth `phoenix` (`bash scripts/demo.sh up`: 2 auth pods on the real
  node, 1 worker each, the managed Redis), through its ClusterIP Service from this machine;
* **loopback**: `phoenix-auth serve` as a local process (1 worker, the same argon2 parameters
  and hashing threads as a pod here), against the same PostgreSQL database, with a private
  redis-server, on 127.0.0.1.

Per target and repeat (alternating, so drift hits both): logins at low load (open loop, each a
different demo user; client latency and the server's own `Server-Timing` verify and db parts),
then session checks of those sessions at 500/s (open loop). Each user logs in once before the
measured login (the demo's seeded hashes are re-hashed to the service's parameters on a first
login), so the measured login is the steady state: the user's record cached (L1 or L2), one
verify, the session written to PostgreSQL. Medians of the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from phoenix_auth.seed_demo import demo_email
from phoenix_testkit.redis import RedisServer
from phoenix_testkit.service import ServiceProcess, service_env

from . import loadgen
from .pods_sizing import DEFAULT_NAMESPACE, kubectl, login_request, session_request, warm_up
from .runner import server_timing_ms
from .stats import percentile

SEED_AFTER_MS = {"login": (25.0, 45.0), "session": (10.0, 20.0)}
DEFAULT_URL = "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"


def pod_target(ns: str) -> tuple[str, int, dict[str, str]]:
    """The demo Service's address and the environment its pods run with (argon2, workers)."""
    out = kubectl(
        "-n", ns, "get", "service", "phoenix", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].port}"
    )
    ip, port = out.split()
    pod = kubectl(
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=auth",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    )
    env_lines = kubectl("-n", ns, "exec", pod, "-c", "auth", "--", "env").splitlines()
    wanted = ("PHOENIX_ARGON2_", "PHOENIX_HASH_THREADS", "PHOENIX_WORKERS", "PHOENIX_MAX_DB_CONNECTIONS")
    env = dict(line.split("=", 1) for line in env_lines if line.startswith(wanted))
    return ip, int(port), env


def measure(
    host: str, port: int, emails: Sequence[str], login_rate: float, seconds: float
) -> dict[str, float]:
    # Every user logs in once first (not measured): the demo's stored hashes are re-hashed to the
    # service's parameters on a first login, which is a migration cost, not a login's.
    loadgen.run(lambda: warm_up(host, port, emails, connections=4))
    logins = [login_request(host, e) for e in emails]
    count = max(1, round(login_rate * seconds))
    login_run = loadgen.run(
        lambda: loadgen.open_loop(
            host, port, logins[:count], rate=login_rate, duration=seconds, connections=8, keep_bodies=True
        )
    )
    ok = login_run.ok
    if login_run.errors or not ok:
        raise RuntimeError(
            f"{host}:{port}: {login_run.errors} logins failed ({loadgen.status_summary(login_run)})"
        )
    tokens = [json.loads(s.body or b"{}")["session"]["sessionId"] for s in ok]
    latencies = [loadgen.corrected_latency(s) * 1000 for s in ok]
    verify = [v for s in ok if (v := server_timing_ms(s.server_timing, "verify")) is not None]
    db = [v for s in ok if (v := server_timing_ms(s.server_timing, "db")) is not None]
    checks = [session_request(host, t) for t in tokens]
    session_run = loadgen.run(
        lambda: loadgen.open_loop(host, port, checks, rate=500, duration=seconds, connections=8)
    )
    if session_run.errors:
        raise RuntimeError(f"{host}:{port}: {session_run.errors} session checks failed")
    sessions = [loadgen.corrected_latency(s) * 1000 for s in session_run.ok]
    return {
        "login_p50": percentile(latencies, 50),
        "login_p99": percentile(latencies, 99),
        "verify_p50": statistics.median(verify) if verify else float("nan"),
        "db_p50": statistics.median(db) if db else float("nan"),
        "session_p50": percentile(sessions, 50),
        "session_p99": percentile(sessions, 99),
    }


ROWS = (
    ("Auth API (login) p50 / p99, ms", "login_p50", "login_p99", "login"),
    ("  of which argon2id verify (server), p50 ms", "verify_p50", None, None),
    ("  of which database (server), p50 ms", "db_p50", None, None),
    ("Session validation p50 / p99 at 500/s, ms", "session_p50", "session_p99", "session"),
)


def table(medians: dict[str, dict[str, float]]) -> str:
    lines = [
        '| | seed\'s "after" | loopback | pod (Service) | the pod path adds |',
        "|---|---|---|---|---|",
    ]
    lo, pod = medians["loopback"], medians["pod"]
    for label, p50, p99, seed in ROWS:
        target = "{:.0f}-{:.0f}".format(*SEED_AFTER_MS[seed]) if seed else ""
        if p99:
            cells = [f"{lo[p50]:.1f} / {lo[p99]:.1f}", f"{pod[p50]:.1f} / {pod[p99]:.1f}"]
            added = f"{pod[p50] - lo[p50]:+.1f} / {pod[p99] - lo[p99]:+.1f}"
        else:
            cells = [f"{lo[p50]:.1f}", f"{pod[p50]:.1f}"]
            added = f"{pod[p50] - lo[p50]:+.1f}"
        lines.append(f"| {label} | {target} | {cells[0]} | {cells[1]} | {added} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--namespace", default=os.environ.get("PHOENIX_DEMO_NAMESPACE", DEFAULT_NAMESPACE))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--login-rate", type=float, default=5.0, help="logins/s of the low-load step")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/pods-seed-table.json"))
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[pods-seed-table] {message}", file=sys.stderr, flush=True)

    host, port, pod_env = pod_target(args.namespace)
    log(f"pod target {host}:{port}, pods run with {pod_env}")
    per_repeat = max(1, round(args.login_rate * args.seconds))
    users = per_repeat * args.repeats * 2
    emails = [demo_email(i + 1) for i in range(users)]
    runs: dict[str, list[dict[str, float]]] = {"loopback": [], "pod": []}
    redis = RedisServer()
    redis.start()
    env = service_env(
        os.environ.get("DATABASE_URL", DEFAULT_URL),
        redis.url,
        PHOENIX_WORKERS=pod_env.get("PHOENIX_WORKERS", "1"),
        PHOENIX_ARGON2_MEMORY_KIB=pod_env.get("PHOENIX_ARGON2_MEMORY_KIB", str(19 * 1024)),
        PHOENIX_ARGON2_TIME_COST=pod_env.get("PHOENIX_ARGON2_TIME_COST", "2"),
        PHOENIX_HASH_THREADS=pod_env.get("PHOENIX_HASH_THREADS", str(os.cpu_count() or 1)),
        PHOENIX_MAX_DB_CONNECTIONS=pod_env.get("PHOENIX_MAX_DB_CONNECTIONS", "5"),
    )
    local = ServiceProcess(["phoenix-auth", "serve"], env, log_prefix="phoenix-seedtable-")
    try:
        local.wait_until("/readyz", lambda status, _body: status == 200, timeout=60)
        targets = {"loopback": ("127.0.0.1", local.port), "pod": (host, port)}
        for repeat in range(args.repeats):
            for i, name in enumerate(("loopback", "pod") if repeat % 2 == 0 else ("pod", "loopback")):
                start = (repeat * 2 + i) * per_repeat
                result = measure(
                    *targets[name], emails[start : start + per_repeat], args.login_rate, args.seconds
                )
                runs[name].append(result)
                log(f"repeat {repeat + 1} {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))
    finally:
        local.cleanup()
        redis.stop()
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    print(table(medians))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"pod_env": pod_env, "runs": runs, "medians": medians}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
