"""`python -m phoenix_bench.login_limits`: table 2's two login rows, fast and repeatable.

The full benchmark takes ~10 minutes per run; this measures only what the login rows need, in one
process run, so a change to the login path can be judged in a minute: one argon2id verify (one
thread) and all cores hashing, then Phoenix (same server stack as `scripts/bench`) at ~5 % of hash
capacity (open loop; p50 split into client-seen / server total / verify (the hash itself and the hop
to a hashing thread) / DB / throttle / the rest), then closed-loop login throughput with each
process group's CPU share over that phase (/proc deltas: server, PostgreSQL, Redis, this load
generator, everything else), so what bounds throughput is measured, not guessed. `--repeats N`
restarts the server each time and prints the median of every number. Run it under the shared lock
(`flock /tmp/phoenix-bench.lock ...`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import dataset, loadgen, profile, servers
from .runner import (
    DEFAULT_BASE_URL,
    _flush_redis,
    _settings_from,
    login_request,
    measure_verify,
    server_timing_ms,
)
from .zipf import ZipfSampler

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_ticks() -> dict[int, tuple[str, int, int]]:
    """{pid: (comm, ppid, utime + stime ticks)} for every process we can read."""
    out: dict[int, tuple[str, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        out[int(entry)] = (comm, int(rest[1]), int(rest[11]) + int(rest[12]))
    return out


def _descendants(root: int, table: dict[int, tuple[str, int, int]]) -> set[int]:
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, (_, ppid, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_shares(server_pid: int, redis_pid: int, before: Any, after: Any) -> dict[str, float]:
    """Cores used by each group between two snapshots (1.0 = one core busy the whole time)."""
    (t0, procs0, m0), (t1, procs1, m1) = before, after
    wall = t1 - t0
    server = _descendants(server_pid, procs1)
    groups = {"server": 0, "postgres": 0, "redis": 0, "loadgen": 0, "other": 0}
    for pid, (comm, _, ticks) in procs1.items():
        delta = ticks - procs0.get(pid, (comm, 0, 0))[2] if pid in procs0 else ticks
        if delta <= 0:
            continue
        if pid in server:
            groups["server"] += delta
        elif comm.startswith("postgres"):
            groups["postgres"] += delta
        elif pid == redis_pid or comm.startswith("redis"):
            groups["redis"] += delta
        elif pid == os.getpid():
            groups["loadgen"] += delta
        else:
            groups["other"] += delta
    shares = {k: v / CLK_TCK / wall for k, v in groups.items()}
    shares["machine_busy"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * (os.cpu_count() or 1)
    # processes that started and exited inside the window (e.g. test runs) are only seen here
    shares["unaccounted"] = max(0.0, shares["machine_busy"] - sum(shares[k] for k in groups))
    return shares


def _snapshot() -> tuple[float, dict[int, tuple[str, int, int]], tuple[int, int]]:
    return time.monotonic(), _proc_ticks(), _machine_ticks()


def _p50(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def login_breakdown(result: loadgen.RunResult) -> dict[str, Any]:
    """p50 of each part of a login, in ms, from the responses' Server-Timing and bodies."""
    ok = result.ok
    parts: dict[str, list[float]] = {
        "client": [loadgen.corrected_latency(s) * 1000 for s in ok],
        "client_service": [loadgen.service_time(s) * 1000 for s in ok],
        "lateness": [v * 1000 for v in (loadgen.dispatch_lateness(s) for s in ok) if v is not None],
    }
    for name in ("total", "verify", "hash", "db", "lookup", "throttle"):
        parts[name] = [v for v in (server_timing_ms(s.server_timing, name) for s in ok) if v is not None]
    # verify - hash: the hop to a hashing thread and back, and any wait for one.
    parts["verify_hop"] = [
        v - h
        for s in ok
        if (v := server_timing_ms(s.server_timing, "verify")) is not None
        and (h := server_timing_ms(s.server_timing, "hash")) is not None
    ]
    rest = []
    for s in ok:
        total = server_timing_ms(s.server_timing, "total")
        known = [server_timing_ms(s.server_timing, n) for n in ("verify", "db", "throttle")]
        if total is not None and all(k is not None for k in known[:2]):
            rest.append(total - sum(k or 0.0 for k in known))
    parts["server_rest"] = rest
    parts["client_minus_server"] = [
        loadgen.service_time(s) * 1000 - t
        for s in ok
        if (t := server_timing_ms(s.server_timing, "total")) is not None
    ]
    out: dict[str, Any] = {f"{k}_p50_ms": _p50(v) for k, v in parts.items()}
    out["ok"] = len(ok)
    out["errors"] = result.errors
    return out


class PairedVerify:
    """One argon2id verify every `interval` s on a thread of this process, while a low-load step runs.

    The verify alone measured before a step and the step's logins can be seconds and a different
    machine load apart (other tenants come and go; on this shared machine one verify has ranged
    25-58 ms between runs). Sampled during the step, it sees the same machine as the logins;
    at ~3 logins/s both are mostly alone on the cores (each busy ~10 % of the time)."""

    def __init__(self, env: dict[str, str], interval: float = 0.25) -> None:
        import threading

        from phoenix_auth.passwords import PasswordHasher

        self._hasher = PasswordHasher(_settings_from(env))
        self._stored = self._hasher.hash("paired-verify")
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[float] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            t = time.perf_counter()
            self._hasher.verify(self._stored, "paired-verify")
            self.samples.append((time.perf_counter() - t) * 1000)

    def __enter__(self) -> PairedVerify:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._hasher.close()


def _mid_summary(result: loadgen.RunResult) -> dict[str, Any]:
    lat = sorted(loadgen.corrected_latency(s) * 1000 for s in result.ok)
    return {
        "offered_per_s": result.offered_rate,
        "p50_ms": _p50(lat),
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        "errors": result.errors,
    }


def one_repeat(
    env: dict[str, str], password: str, redis_port: int, log_dir: Path, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    verify_s, parallel_rate = measure_verify(env)
    cores = os.cpu_count() or 1
    capacity = cores / verify_s
    sampler = ZipfSampler(args.users, 1.1, seed=seed)
    profiled: dict[str, Any] = {}
    _flush_redis(redis_port)
    proc = servers.start_app("phoenix", env, log_dir)
    port = proc.port
    try:

        def emails(n: int) -> list[bytes]:
            return [login_request(dataset.email_at_rank(r), password) for r in sampler.samples(n)]

        def open_run(reqs: Sequence[bytes], rate: float, duration: float) -> loadgen.RunResult:
            return loadgen.run(
                lambda: loadgen.open_loop(
                    "127.0.0.1", port, reqs, rate=rate, duration=duration, connections=8, keep_bodies=True
                )
            )

        # warm-up (discarded): pools, hashing threads, caches
        open_run(emails(int(capacity * 0.3 * 3)), capacity * 0.3, 3.0)
        time.sleep(0.5)
        rate = args.fraction * capacity
        low_before = _snapshot()
        with PairedVerify(env) as paired:
            low = open_run(emails(max(10, round(rate * args.low_s))), rate, args.low_s)
        low_shares = cpu_shares(proc.pid, -1, low_before, _snapshot())
        mid = None
        if args.mid_fraction:
            time.sleep(0.5)
            mid_rate = args.mid_fraction * capacity
            mid = open_run(emails(max(10, round(mid_rate * args.low_s))), mid_rate, args.low_s)
        time.sleep(0.5)
        # the harness + server-stack floor at the same rate: a no-op route, no work behind it
        noop = open_run([loadgen.encode_request("GET", "/noop")], rate, min(args.low_s, 5.0))
        time.sleep(0.5)
        before = _snapshot()
        profiling = (
            profile.record(proc.pid, args.closed_s, args.profile / f"login-closed-{seed}.txt", profiled)
            if args.profile
            else contextlib.nullcontext()
        )
        with profiling:
            closed = loadgen.run(
                lambda: loadgen.closed_loop(
                    "127.0.0.1",
                    port,
                    emails(max(200, round(capacity * args.closed_s * 2))),
                    duration=args.closed_s,
                    connections=4 * args.workers,
                    keep_bodies=True,
                )
            )
        after = _snapshot()
        shares = cpu_shares(proc.pid, -1, before, after)
        closed_parts = login_breakdown(closed)
    finally:
        proc.stop()
    throughput = len(closed.ok) / args.closed_s
    low_parts = login_breakdown(low)
    return {
        "verify_ms": verify_s * 1000,
        "limit_per_s": capacity,
        "all_cores_hashing_per_s": parallel_rate,
        "low_rate_per_s": rate,
        "low": low_parts,
        "low_p50_minus_verify_ms": (low_parts["client_p50_ms"] or 0) - verify_s * 1000,
        "paired_verify_ms": _p50(paired.samples),
        "low_p50_minus_paired_verify_ms": (low_parts["client_p50_ms"] or 0) - (_p50(paired.samples) or 0),
        "noop_client_p50_ms": _p50([loadgen.corrected_latency(s) * 1000 for s in noop.ok]),
        "low_cpu_cores": low_shares,
        "mid": _mid_summary(mid) if mid is not None else None,
        "closed_per_s": throughput,
        "closed_errors": closed.errors,
        "closed_ratio_vs_limit": throughput / capacity,
        "closed_ratio_vs_all_cores": throughput / parallel_rate,
        "closed_server_parts": closed_parts,
        "closed_cpu_cores": shares,
        "closed_profile": profiled or None,
    }


def _median_tree(items: Sequence[Any]) -> Any:
    first = items[0]
    if isinstance(first, dict):
        return {k: _median_tree([i[k] for i in items if isinstance(i, dict) and k in i]) for k in first}
    nums = [i for i in items if isinstance(i, int | float)]
    return statistics.median(nums) if nums else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m phoenix_bench.login_limits", description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--users", type=int, default=1_000_000, help="the seeded benchmark database's size")
    p.add_argument("--database", default="phoenix_bench")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--fraction", type=float, default=0.05, help="low load as a share of hash capacity")
    p.add_argument("--low-s", type=float, default=15.0, help="seconds of the low-load step")
    p.add_argument("--mid-fraction", type=float, help="also an open-loop step at this share of capacity")
    p.add_argument("--closed-s", type=float, default=8.0, help="seconds of the closed-loop phase")
    p.add_argument("--profile", type=Path, help="py-spy the server in the closed loop; files go here")
    p.add_argument("--json", type=Path, help="write every repeat and the medians here")
    p.add_argument("--env", action="append", default=[], help="extra server env NAME=VALUE (repeatable)")
    args = p.parse_args(argv)
    url = dataset.with_database(os.environ.get("DATABASE_URL", DEFAULT_BASE_URL), args.database)
    log_dir = Path(tempfile.mkdtemp(prefix="phoenix-login-limits-"))
    redis_proc, redis_port = servers.start_redis(log_dir)
    extra = {name: value for name, _, value in (item.partition("=") for item in args.env)}
    env = servers.app_env(url, redis_port, args.workers, **extra)
    repeats = []
    try:
        password = dataset.ensure_seeded(url, args.users, env, None, lambda m: print(m, file=sys.stderr))
        for i in range(args.repeats):
            r = one_repeat(env, password, redis_port, log_dir, args, seed=100 + i)
            repeats.append(r)
            low = r["low"]
            print(
                f"[{i + 1}/{args.repeats}] verify {r['verify_ms']:.1f} ms  low {r['low_rate_per_s']:.1f}/s: "
                f"client p50 {low['client_p50_ms']:.1f} (+{r['low_p50_minus_verify_ms']:.1f}; paired verify "
                f"{r['paired_verify_ms']:.1f} -> +{r['low_p50_minus_paired_verify_ms']:.1f}) "
                f"late {low['lateness_p50_ms'] or 0:.2f} "
                f"server {low['total_p50_ms']:.1f} verify {low['verify_p50_ms']:.1f} "
                f"(hash {low['hash_p50_ms'] or float('nan'):.2f} "
                f"hop {low['verify_hop_p50_ms'] or float('nan'):.2f}) "
                f"db {low['db_p50_ms']:.2f} "
                f"(lookup {low['lookup_p50_ms'] or float('nan'):.2f}) "
                f"throttle {low['throttle_p50_ms'] or float('nan'):.2f} "
                f"rest {low['server_rest_p50_ms'] or float('nan'):.2f} client-server "
                f"{low['client_minus_server_p50_ms']:.2f} noop {r['noop_client_p50_ms']:.2f} "
                f"other-cpu {r['low_cpu_cores']['other'] + r['low_cpu_cores']['unaccounted']:.2f} "
                f"| closed {r['closed_per_s']:.1f}/s = "
                f"{r['closed_ratio_vs_limit']:.2f} x {r['limit_per_s']:.1f} "
                f"({r['closed_ratio_vs_all_cores']:.2f} x all-cores {r['all_cores_hashing_per_s']:.1f}) "
                f"errors {r['closed_errors']} cpu "
                + " ".join(f"{k} {v:.2f}" for k, v in r["closed_cpu_cores"].items()),
                file=sys.stderr,
                flush=True,
            )
    finally:
        redis_proc.stop()
    median = _median_tree(repeats)
    print(json.dumps({"median": median}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"repeats": repeats, "median": median}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
