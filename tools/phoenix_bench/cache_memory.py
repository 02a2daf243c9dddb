"""What a pod weighs with many users cached: the auth service's memory at 100k cached users.

The real-pod sizing (`pods_sizing`) caches a few hundred users, because each login there pays the
production argon2 cost; its per-user slope, extrapolated 100-fold, says nothing about how Python's
dicts and allocator behave at scale. This benchmark caches the full count for real, with the
service as a local process (memory per cached user does not depend on where the process runs):

1. a database `phoenix_bench_mem` seeded with N demo users (`phoenix-auth seed-demo`, reused when
   it already holds them), every stored hash replaced by one made with the cheap argon2 parameters
   the service is started with, so a login costs ~1 ms instead of ~30 ms and never rehashes (a
   hash string has the same length at any cost, so the cached record weighs the same);
2. per configuration (workers x L1 size), a fresh service; every user logs in once and checks
   its new session once (each lands in L1 as three entries: by email, by id, the session);
3. the process tree's resident memory (RssAnon + RssShmem summed over the server and its workers,
   what a container's working set counts) fresh and after each step of users, and the L1 entries
   the health JSON reports.

Prints one table per configuration and a summary; writes JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from phoenix_testkit.hashes import fast_hash
from phoenix_testkit.redis import RedisServer
from phoenix_testkit.service import ServiceProcess, get_json, service_env

from . import dataset, loadgen
from .errors import SetupError
from .pods_sizing import session_request, warm_up

DATABASE = "phoenix_bench_mem"
DEFAULT_URL = "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out += [int(c) for c in children]
    return out


def tree_memory_mib(pid: int) -> float:
    """RssAnon + RssShmem over `pid` and its descendants, in MiB."""
    total_kib = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{current}/status").read_text().splitlines()
                if ":" in line
            )
            total_kib += int(fields["RssAnon"].split()[0]) + int(fields["RssShmem"].split()[0])
            todo += _children(current)
        except (FileNotFoundError, ProcessLookupError, KeyError):
            continue
    return total_kib / 1024


def prepare(url: str, users: int, log: Any) -> tuple[str, list[str]]:
    """The seeded bench database (cheap hashes), its password and its users' emails."""
    env = {**os.environ, "DATABASE_URL": url}
    password = dataset.ensure_seeded(url, users, env, None, log)
    cheap = fast_hash(password)
    with psycopg.connect(url, autocommit=True) as conn:
        changed = conn.execute(
            "UPDATE users SET hashed_password = %s WHERE hashed_password IS DISTINCT FROM %s", (cheap, cheap)
        ).rowcount
        if changed:
            log(f"{changed:,} stored hashes replaced by a cheap argon2id hash")
        emails = [row[0] for row in conn.execute("SELECT email FROM users ORDER BY email LIMIT %s", (users,))]
    return password, emails


async def _check_sessions(host: str, port: int, tokens: Sequence[str], connections: int = 8) -> int:
    """Each token's session checked once; returns the failures."""
    failures = 0
    queue = list(tokens)

    async def worker() -> None:
        nonlocal failures
        conn = loadgen.HttpConnection(host, port)
        try:
            while queue:
                response = await conn.request(session_request(host, queue.pop()))
                failures += response.status != 200
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return failures


def measure(
    url: str,
    redis_url: str,
    password: str,
    emails: Sequence[str],
    workers: int,
    l1_max: int,
    steps: Sequence[int],
    log: Any,
) -> dict[str, Any]:
    import phoenix_bench.pods_sizing as sizing

    sizing.DEMO_PASSWORD = password  # the login body the warm-up sends
    env = service_env(
        url,
        redis_url,
        PHOENIX_WORKERS=str(workers),
        PHOENIX_L1_MAX_ENTRIES=str(l1_max),
        PHOENIX_MAX_DB_CONNECTIONS="4",
        PHOENIX_LOG_FORMAT="json",
    )
    service = ServiceProcess(["phoenix-auth", "serve"], env, log_prefix="phoenix-mem-")
    try:
        service.wait_until("/readyz", lambda status, _body: status == 200, timeout=60)
        time.sleep(1.0)
        rows = [
            {"users": 0, "l1_entries": 0, "mib": round(tree_memory_mib(service.proc.pid), 1), "seconds": 0.0}
        ]
        done = 0
        for step in steps:
            batch = emails[done:step]
            started = time.monotonic()
            tokens = loadgen.run(lambda b=batch: warm_up("127.0.0.1", service.port, b, connections=16))
            failed = loadgen.run(lambda t=tokens: _check_sessions("127.0.0.1", service.port, t))
            if failed:
                raise SetupError(f"{failed} session checks failed")
            done = step
            _, health = get_json(service.base_url + "/api/phoenix/health")
            l1 = _find(health, "l1Entries")
            rows.append(
                {
                    "users": step,
                    "l1_entries": l1,
                    "mib": round(tree_memory_mib(service.proc.pid), 1),
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
            log(f"  workers={workers} l1={l1_max:,}: {step:,} users cached, {rows[-1]['mib']} MiB, L1 {l1}")
        return {"workers": workers, "l1_max_entries": l1_max, "steps": rows}
    finally:
        service.cleanup()


def _find(value: Any, key: str) -> Any:
    """The first `key` anywhere in a nested JSON value (the health JSON nests its cache block)."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        for inner in value.values():
            found = _find(inner, key)
            if found is not None:
                return found
    return None


def table(result: dict[str, Any]) -> str:
    lines = [
        f"workers {result['workers']}, L1 max {result['l1_max_entries']:,} entries (per worker)",
        "| users cached | L1 entries | memory MiB | KiB per user since previous step |",
        "|---|---|---|---|",
    ]
    previous = None
    for row in result["steps"]:
        slope = ""
        if previous is not None and row["users"] > previous["users"]:
            slope = f"{(row['mib'] - previous['mib']) * 1024 / (row['users'] - previous['users']):.2f}"
        lines.append(
            f"| {row['users']:,} | {row['l1_entries'] if row['l1_entries'] is not None else '-'} | "
            f"{row['mib']:.0f} | {slope} |"
        )
        previous = row
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--l1", default="100000,300000", help="L1 sizes to try (PHOENIX_L1_MAX_ENTRIES; default 100,000)"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/bench/cache-memory.json"))
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[cache-memory] {message}", file=sys.stderr, flush=True)

    base = os.environ.get("DATABASE_URL", DEFAULT_URL)
    url = dataset.with_database(base, DATABASE)
    steps = sorted({min(args.users, s) for s in (10_000, 25_000, 50_000, args.users)})
    password, emails = prepare(url, args.users, log)
    if len(emails) < args.users:
        raise SetupError(f"{DATABASE} holds {len(emails)} users, not {args.users}")
    results = []
    redis = RedisServer()
    redis.start()
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            for l1_max in (int(n) for n in args.l1.split(",")):
                results.append(measure(url, redis.url, password, emails, workers, l1_max, steps, log))
                print(table(results[-1]) + "\n", flush=True)
    finally:
        redis.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"users": args.users, "results": results}, indent=1) + "\n")
    summary = [
        f"workers {r['workers']}, L1 {r['l1_max_entries']:,}: fresh {r['steps'][0]['mib']:.0f} MiB, "
        f"{r['steps'][-1]['users']:,} users cached {r['steps'][-1]['mib']:.0f} MiB"
        for r in results
    ]
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
