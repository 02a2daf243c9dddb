"""Table 2's session row on its own: session validation vs the no-op, closed loop, same server.

`python -m phoenix_bench.session_ratio [--rounds 3] [--seconds 5] [--profile DIR]` starts
the Phoenix app exactly as `scripts/bench` does (bench.serve on the service's server.run, 2
workers, a private Redis, the seeded bench database), logs in `--sessions` demo users, then
alternates wrk closed-loop rounds against GET /api/auth/session (Bearer, Zipf mix of the tokens)
and /noop, and finally measures session p99 at 1,000 req/s open loop. The session cache hit ratio
over the rounds comes from the server's own counters (its admin listener's /metrics). A quick loop
for working on the session path; the published numbers still come from `scripts/bench`. Needs a
seeded bench database (run `scripts/bench` once) and wrk. Run it under the shared benchmark lock.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from . import dataset, loadgen, profile, servers, wrk
from .proc import tree_cpu_s
from .runner import (
    DEFAULT_BASE_URL,
    NOOP_PATH,
    SESSION_PATH,
    _login_all,
    _pct,
    cache_delta,
    open_connections,
    point,
    require_l2_cache,
    scrape_cache_counters,
    session_request,
)
from .zipf import ZipfSampler


def _password(url: str) -> tuple[str, int]:
    """The stored demo password and the user count it was seeded with (never printed)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT key, value FROM bench_meta WHERE key LIKE 'seed_password_%' "
            "ORDER BY length(key) DESC, key DESC"
        ).fetchall()
    if not rows:
        raise SystemExit("the bench database is not seeded: run scripts/bench once")
    key, value = rows[0]
    return value, int(key.rsplit("_", 1)[1])


def _measured(pid: int, run) -> tuple[wrk.WrkResult, float]:
    """A wrk run and the server's CPU microseconds per completed request during it: a figure
    that CPU contention from other processes on the machine barely moves, unlike throughput."""
    before = tree_cpu_s(pid)
    result = run()
    used = tree_cpu_s(pid) - before
    return result, (used / result.requests * 1e6) if result.requests else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m phoenix_bench.session_ratio")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--open-rate", type=float, default=1000.0)
    p.add_argument("--open-seconds", type=float, default=4.0)
    p.add_argument("--profile", type=Path, help="also py-spy one session and one no-op phase into DIR")
    args = p.parse_args(argv)
    # a `timeout` around us must still stop the servers we start (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    url = dataset.with_database(DEFAULT_BASE_URL, "phoenix_bench")
    password, users = _password(url)
    log_dir = Path(tempfile.mkdtemp(prefix="phoenix-ratio-"))
    redis_proc, redis_port = servers.start_redis(log_dir)
    env = servers.app_env(
        url, redis_port, args.workers, PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="prom-", dir=log_dir)
    )
    proc = servers.start_app("phoenix", env, log_dir)
    port = proc.port
    out: dict[str, Any] = {"rounds": []}
    try:
        emails = [dataset.email_at_rank(r) for r in range(args.sessions)]
        bodies = loadgen.run(lambda: _login_all(port, emails, password, connections=2 * args.workers))
        tokens = [json.loads(b)["session"]["sessionId"] for b in bodies]
        if not tokens:
            raise SystemExit("no login succeeded")
        seq = ZipfSampler(len(tokens), 1.1, seed=1).samples(5000)
        sess = [wrk.WrkRequest("GET", SESSION_PATH, (("Authorization", f"Bearer {t}"),)) for t in tokens]
        noop = [wrk.WrkRequest("GET", NOOP_PATH)]
        base = f"http://127.0.0.1:{port}"
        wrk.run_wrk(base, sess, seq, duration=2, connections=args.connections)  # warm-up: fill L1
        wrk.run_wrk(base, noop, [0], duration=1, connections=args.connections)
        require_l2_cache(proc.admin_port)
        before = scrape_cache_counters(proc.admin_port)
        for i in range(args.rounds):
            s, s_cpu = _measured(
                proc.pid,
                lambda: wrk.run_wrk(base, sess, seq, duration=args.seconds, connections=args.connections),
            )
            n, n_cpu = _measured(
                proc.pid,
                lambda: wrk.run_wrk(base, noop, [0], duration=args.seconds, connections=args.connections),
            )
            ratio = s.ok_per_s / n.ok_per_s if n.ok_per_s else 0.0
            out["rounds"].append(
                {
                    "session": s.ok_per_s,
                    "noop": n.ok_per_s,
                    "ratio": ratio,
                    "errors": s.non_2xx,
                    "session_cpu_us": s_cpu,
                    "noop_cpu_us": n_cpu,
                    "cpu_ratio": n_cpu / s_cpu,
                }
            )
            print(
                f"round {i + 1}: session {s.ok_per_s:9,.0f}/s  no-op {n.ok_per_s:9,.0f}/s  "
                f"ratio {ratio:.3f}  (session non-2xx {s.non_2xx}); server CPU per request: "
                f"session {s_cpu:.1f} us, no-op {n_cpu:.1f} us, ratio {n_cpu / s_cpu:.3f}",
                flush=True,
            )
        cache = out["session_cache"] = cache_delta(before, scrape_cache_counters(proc.admin_port))
        counted = (cache or {}).get("counters", {})
        print(
            f"session cache over the rounds (the service's counters): hit ratio "
            f"{_pct((cache or {}).get('hit_ratio'))} of {(cache or {}).get('lookups', 0):,.0f} lookups; "
            + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(counted.items()) if v),
            flush=True,
        )
        out["median_ratio"] = statistics.median(r["ratio"] for r in out["rounds"])
        out["median_cpu_ratio"] = statistics.median(r["cpu_ratio"] for r in out["rounds"])
        print(
            f"median ratio {out['median_ratio']:.3f}; median CPU-per-request ratio (no-op / session) "
            f"{out['median_cpu_ratio']:.3f}",
            flush=True,
        )
        reqs = [session_request(tokens[i]) for i in seq]
        for label, r in (("session", reqs), ("no-op", [loadgen.encode_request("GET", NOOP_PATH)])):
            count = round(args.open_rate * args.open_seconds)
            res = loadgen.run(
                lambda r=r, count=count: loadgen.open_loop(
                    "127.0.0.1",
                    port,
                    [r[i % len(r)] for i in range(count)],
                    rate=args.open_rate,
                    duration=args.open_seconds,
                    connections=open_connections(args.open_rate),
                    drain_timeout=5.0,
                    keep_bodies=False,
                )
            )
            lat = point(res)["latency"] or {}
            out[f"{label}_open"] = lat
            print(
                f"{label} at {args.open_rate:.0f}/s open loop: p50 {lat.get('p50_ms', float('nan')):.2f} ms "
                f"p99 {lat.get('p99_ms', float('nan')):.2f} ms",
                flush=True,
            )
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for label, reqs_, seq_ in (("session", sess, seq), ("noop", noop, [0])):
                result: dict[str, Any] = {}
                with profile.record(proc.pid, args.seconds, args.profile / f"{label}.txt", result):
                    wrk.run_wrk(base, reqs_, seq_, duration=args.seconds, connections=args.connections)
                out[f"profile_{label}"] = result
                print(f"profile {label}: {json.dumps(result, indent=1)[:3000]}", flush=True)
    finally:
        proc.stop()
        redis_proc.stop()
    out["users"] = users
    out["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (log_dir / "ratio.json").write_text(json.dumps(out, indent=1))
    print(f"results: {log_dir / 'ratio.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
