"""`python -m phoenix_bench.login_grid`: login throughput against the hashing limit, per worker layout.

Issue 14 asks for >= 0.9 of the hashing limit (cores / one verify, measured in the same run) with
any number of worker processes and any connection pattern. This measures that grid in minutes:
for each worker count W and client connection count N, a fresh Phoenix server (same server stack
as `scripts/bench`, production argon2id parameters, default hashing threads) takes a closed loop
of correct logins for `--seconds`; the verify time is measured before each grid pass. Prints one
table per repeat and the medians.

Each cell is also given against what this machine's cores do hashing and nothing else (one thread
per core verifying flat out, measured with the verify): two verifies at once run slower than one
alone here, so "cores / one verify" is a ceiling no login reaches, and the second ratio says how
much of the gap is the login's own work. The flood reports the admitted logins' p99 twice: as the
flood's client on the same cores sees it, and as the server measured it (Server-Timing `total`).

Data: its own database `phoenix_bench_grid` with `--users` demo users whose stored hash is one
hash made with the server's parameters (so a login never re-hashes).

Shed logins (503 OVERLOADED, the service's admission: login.py) are retried by the closed loop
after the Retry-After they carry, as an HTTP client (and the Phoenix TypeScript client's users)
would; `--ignore-retry-after` sends the next login at once instead, a client that busy-loops on
503s, which on this machine's shared cores takes CPU from hashing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from . import dataset, loadgen, servers
from . import proc as proc_cpu
from .runner import _settings_from, login_request, measure_verify, server_timing_ms
from .stats import percentile

DATABASE = "phoenix_bench_grid"
DEFAULT_URL = "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"


def prepare(url: str, users: int, env: dict[str, str]) -> tuple[str, list[str]]:
    from phoenix_auth.passwords import PasswordHasher

    password = dataset.ensure_seeded(
        url, users, {**env, "DATABASE_URL": url}, None, lambda m: print(m, file=sys.stderr)
    )
    hasher = PasswordHasher(_settings_from(env))
    try:
        stored = hasher.hash(password)
    finally:
        hasher.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE users SET hashed_password = %s", (stored,))
        emails = [row[0] for row in conn.execute("SELECT email FROM users ORDER BY email")]
    return password, emails


def _jobs_per_worker(admin_port: int) -> dict[str, float]:
    """Hash jobs per worker process (pid) so far, from the server's /metrics (empty with one worker)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^phoenix_hash_jobs_total\{worker="(\d+)"\} (\S+)$', text, re.M)
    }


def cell(
    env: dict[str, str],
    workers: int,
    connections: int,
    emails: Sequence[str],
    password: str,
    seconds: float,
    log_dir: Path,
    honour_retry_after: bool = True,
) -> dict[str, float]:
    proc = servers.start_app("phoenix", {**env, "PHOENIX_WORKERS": str(workers)}, log_dir)
    try:
        warm = [login_request(e, password) for e in emails[:16]]
        loadgen.run(lambda: loadgen.closed_loop("127.0.0.1", proc.port, warm, duration=1.0, connections=4))
        requests = [login_request(e, password) for e in emails]
        jobs_before = _jobs_per_worker(proc.admin_port)
        cpu_before = proc_cpu.tree_cpu_s(proc.pid)
        supervisor_before = proc_cpu.cpu_s(proc.pid)
        run = loadgen.run(
            lambda: loadgen.closed_loop(
                "127.0.0.1",
                proc.port,
                requests,
                duration=seconds,
                connections=connections,
                honour_retry_after=honour_retry_after,
            )
        )
        cpu = proc_cpu.tree_cpu_s(proc.pid) - cpu_before
        supervisor = proc_cpu.cpu_s(proc.pid) - supervisor_before
        jobs = [n - jobs_before.get(pid, 0.0) for pid, n in _jobs_per_worker(proc.admin_port).items()]
    finally:
        proc.stop()
    latencies = [loadgen.service_time(s) * 1000 for s in run.ok]
    shed = sum(1 for s in run.samples if s.status == 503)
    return {
        "per_s": len(run.ok) / seconds,
        "p50_ms": percentile(latencies, 50) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99) if latencies else float("nan"),
        "shed": float(shed),
        "errors": float(run.errors - shed),
        "server_cpu_ms_per_login": cpu * 1000 / max(1, len(run.ok)),
        # With several workers the supervisor runs the hashing threads (hashpool.py), so the rest
        # of the tree is the workers' own work per login: HTTP, PostgreSQL, Redis, the hop.
        "workers_cpu_ms_per_login": (cpu - supervisor) * 1000 / max(1, len(run.ok))
        if workers > 1
        else float("nan"),
        # The least served worker's share of the hash jobs (1/W when perfectly even; 1 with one worker).
        "min_worker_share": min(jobs) / sum(jobs) if len(jobs) > 1 and sum(jobs) else 1.0,
    }


def flood(
    env: dict[str, str],
    workers: int,
    rate: float,
    emails: Sequence[str],
    password: str,
    seconds: float,
    log_dir: Path,
) -> dict[str, float]:
    """Logins offered at `rate` (beyond the limit) on 512 connections, the service's default
    admission (PHOENIX_MAX_PENDING_LOGINS): how many are shed with 503 and how fast, and the p99
    of the admitted ones."""
    server_env = {k: v for k, v in env.items() if k != "PHOENIX_MAX_PENDING_LOGINS"}
    proc = servers.start_app("phoenix", {**server_env, "PHOENIX_WORKERS": str(workers)}, log_dir)
    try:
        requests = [login_request(e, password) for e in emails]
        cpu_before, client_before, started = (
            proc_cpu.tree_cpu_s(proc.pid),
            time.process_time(),
            time.monotonic(),
        )
        run = loadgen.run(
            lambda: loadgen.open_loop(
                "127.0.0.1",
                proc.port,
                requests,
                rate=rate,
                duration=seconds,
                connections=512,
                drain_timeout=10.0,
                keep_bodies=True,
            )
        )
        cpu = proc_cpu.tree_cpu_s(proc.pid) - cpu_before
        client_cores = (time.process_time() - client_before) / (time.monotonic() - started)
    finally:
        proc.stop()
    ok = [loadgen.service_time(s) * 1000 for s in run.samples if s.status == 200]
    totals = (server_timing_ms(s.server_timing, "total") for s in run.samples if s.status == 200)
    served = [t for t in totals if t is not None]
    shed = [loadgen.service_time(s) * 1000 for s in run.samples if s.status == 503]
    parts = admitted_parts([s.server_timing for s in run.samples if s.status == 200])
    return {
        "offered_per_s": rate,
        "ok_per_s": len(ok) / seconds,
        "shed_share": len(shed) / max(1, len(run.samples)),
        "ok_p99_ms": percentile(ok, 99) if ok else float("nan"),
        "ok_server_p99_ms": percentile(served, 99) if served else float("nan"),
        "shed_p99_ms": percentile(shed, 99) if shed else float("nan"),
        "shed_max_ms": max(shed) if shed else float("nan"),
        "other_errors": float(sum(1 for s in run.samples if s.status not in (200, 503)) + run.unfinished),
        "server_cpu_s": cpu,
        "admitted": float(len(ok)),
        "shed": float(len(shed)),
        "client_cores": client_cores,  # the flood's client, on the same cores as the server
        **{
            f"{name}_p99_ms": percentile(values, 99) if values else float("nan")
            for name, values in parts.items()
        },
    }


def admitted_parts(headers: Sequence[str | None]) -> dict[str, list[float]]:
    """Each admitted login's time split from its Server-Timing (ms): the wait for a hashing
    thread and the hop to it (`verify` - `hash`), the hash itself, and the rest of the server's
    time (`total` - `verify`: lookup, throttle, session, the answer)."""
    parts: dict[str, list[float]] = {"wait": [], "hash": [], "rest": []}
    for header in headers:
        total, verify, hashed = (server_timing_ms(header, n) for n in ("total", "verify", "hash"))
        if total is None or verify is None or hashed is None:
            continue
        parts["wait"].append(verify - hashed)
        parts["hash"].append(hashed)
        parts["rest"].append(total - verify)
    return parts


def shed_cost_us(flood: dict[str, Any], cells: Sequence[dict[str, Any]]) -> float:
    """Server CPU per shed login (µs), estimated: the flood's server CPU less its admitted logins
    at the CPU per login of the closed-loop cell with the same workers (most connections)."""
    same = [c for c in cells if c["workers"] == flood["workers"]]
    if not same or not flood["shed"]:
        return float("nan")
    per_login_s = max(same, key=lambda c: c["connections"])["server_cpu_ms_per_login"] / 1000
    return max(0.0, flood["server_cpu_s"] - flood["admitted"] * per_login_s) / flood["shed"] * 1e6


def flood_table(result: dict[str, Any]) -> str:
    lines = [
        "| workers | offered/s | admitted/s | shed (503) | admitted p99 ms (verifies) "
        "| server-side p99 ms (verifies) | p99 of its parts, verifies: wait / hash / rest "
        "| 503 p99 / max ms | server CPU per 503 (est.) | flood client's CPU (cores) | other errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verify = result["verify_ms"]
    for f in result.get("floods", []):
        parts = " / ".join(
            f"{f.get(f'{n}_p99_ms', float('nan')) / verify:.1f}" for n in ("wait", "hash", "rest")
        )
        lines.append(
            f"| {f['workers']} | {f['offered_per_s']:.0f} | {f['ok_per_s']:.1f} | {f['shed_share']:.0%} | "
            f"{f['ok_p99_ms']:.0f} ({f['ok_p99_ms'] / result['verify_ms']:.1f}) | "
            f"{f['ok_server_p99_ms']:.0f} ({f['ok_server_p99_ms'] / result['verify_ms']:.1f}) | {parts} | "
            f"{f['shed_p99_ms']:.1f} / {f['shed_max_ms']:.1f} | "
            f"{shed_cost_us(f, result['cells']):.0f} µs | "
            f"{f.get('client_cores', float('nan')):.2f} | "
            f"{f['other_errors']:.0f} |"
        )
    return "\n".join(lines)


def table(result: dict[str, Any]) -> str:
    lines = [
        f"verify {result['verify_ms']:.1f} ms, limit {result['limit_per_s']:.1f} logins/s "
        f"({result['cores']} cores); all cores hashing only: {result['all_cores_per_s']:.1f} verifies/s "
        f"({result['all_cores_per_s'] / result['limit_per_s']:.2f} of the limit)",
        "| workers | connections | logins/s | of limit | of all cores hashing | p50 ms | p99 ms | shed (503) "
        "| server CPU ms/login | of it workers' (W > 1) | least worker's share | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cells"]:
        lines.append(
            f"| {c['workers']} | {c['connections']} | {c['per_s']:.1f} | {c['ratio']:.2f} | "
            f"{c['of_all_cores']:.2f} | "
            f"{c['p50_ms']:.0f} | {c['p99_ms']:.0f} | {c['shed']:.0f} | {c['server_cpu_ms_per_login']:.1f} | "
            f"{c['workers_cpu_ms_per_login']:.1f} | "
            f"{c['min_worker_share']:.2f} | {c['errors']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--connections", default="2,8,64")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--env", action="append", default=[], help="extra server env NAME=VALUE (repeatable)")
    p.add_argument("--flood", type=float, default=0.0, help="also offer this multiple of the limit (e.g. 3)")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="closed loop: send the next login at once after a 503 (a client that busy-loops on 503s)",
    )
    args = p.parse_args(argv)

    url = dataset.with_database(os.environ.get("DATABASE_URL", DEFAULT_URL), DATABASE)
    log_dir = Path(tempfile.mkdtemp(prefix="phoenix-login-grid-"))
    redis_proc, redis_port = servers.start_redis(log_dir)
    extra = {name: value for name, _, value in (item.partition("=") for item in args.env)}
    env = servers.app_env(url, redis_port, 1, PHOENIX_MAX_PENDING_LOGINS="100000", **extra)
    cores = os.cpu_count() or 1
    repeats: list[dict[str, Any]] = []
    try:
        password, emails = prepare(url, args.users, env)
        for i in range(args.repeats):
            verify_s, all_cores_per_s = measure_verify(env)
            result: dict[str, Any] = {
                "verify_ms": verify_s * 1000,
                "all_cores_per_s": all_cores_per_s,
                "limit_per_s": cores / verify_s,
                "cores": cores,
            }
            result["cells"] = []
            for w in (int(x) for x in args.workers.split(",")):
                for n in (int(x) for x in args.connections.split(",")):
                    c = cell(env, w, n, emails, password, args.seconds, log_dir, not args.ignore_retry_after)
                    c.update(
                        workers=w,
                        connections=n,
                        ratio=c["per_s"] / result["limit_per_s"],
                        of_all_cores=c["per_s"] / all_cores_per_s,
                    )
                    result["cells"].append(c)
                    print(
                        f"[{i + 1}/{args.repeats}] W={w} N={n}: {c['per_s']:.1f}/s = {c['ratio']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
            if args.flood:
                result["floods"] = []
                for w in (int(x) for x in args.workers.split(",")):
                    f = flood(
                        env, w, args.flood * result["limit_per_s"], emails, password, args.seconds, log_dir
                    )
                    f["workers"] = w
                    result["floods"].append(f)
            repeats.append(result)
            print(table(result) + "\n", flush=True)
            if args.flood:
                print(flood_table(result) + "\n", flush=True)
    finally:
        redis_proc.stop()
    medians: dict[str, Any] = {
        "verify_ms": statistics.median(r["verify_ms"] for r in repeats),
        "limit_per_s": statistics.median(r["limit_per_s"] for r in repeats),
        "all_cores_per_s": statistics.median(r["all_cores_per_s"] for r in repeats),
        "cores": cores,
        "cells": [
            {key: statistics.median(r["cells"][j][key] for r in repeats) for key in repeats[0]["cells"][j]}
            for j in range(len(repeats[0]["cells"]))
        ],
    }
    if args.flood:
        medians["floods"] = [
            {key: statistics.median(r["floods"][j][key] for r in repeats) for key in repeats[0]["floods"][j]}
            for j in range(len(repeats[0]["floods"]))
        ]
    print("medians of", len(repeats), "repeats\n" + table(medians))
    if args.flood:
        print(flood_table(medians))
    if args.json:
        args.json.write_text(json.dumps({"repeats": repeats, "median": medians}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
