"""A bounded soak at ~70 % of the capacity measured at the start of the test.

1. Start `phoenix-auth serve` with 2 workers (private PostgreSQL and Redis), 200 users.
2. Capacity probe: a closed loop (16 clients, no think time) for `PROBE_SECONDS` of the same mix
   the soak uses: 1 login in 10, the rest session checks (the hot path), random users and random
   tokens out of a fixed-size pool of 200 live sessions (each login's new session replaces one).
3. Soak: an open loop at 70 % of the probed throughput for `PHOENIX_SOAK_SECONDS` (default 60);
   latency counts from each request's scheduled start, so a stall is not hidden by the generator
   waiting (coordinated omission). The load comes from `loadgen.ConnectionPool` (128 keep-alive
   connections): httpx's pool could not drain a backlog after a stall, and capped the probe.
4. Assert: no error at all; the generator kept its schedule; RSS of each server process grew less
   than `RSS_BOUND_MIB`; the p99 of a typical second (median of the 1-second p99s) in the last
   third <= 2 x that of the first third (+ `P99_SLACK_MS`, one scheduling quantum on a shared
   2-core machine); no request slower than `P_MAX_MS`. Raw p99 per third is printed as well.

Latency, schedule and client-side timeouts are only judged when the machine was ours: if other
processes used more than `NEIGHBOUR_LIMIT` of its CPU in any third of the soak, or more than
`BURST_LIMIT` in any `BURST_SECONDS` (from /proc), the run says so and checks only that every
answer was a 200 or a 503 (shedding) and the memory bound. Figures are
printed; with `PHOENIX_SOAK_REPORT=path.json` they are also written as JSON (docs/reliability.md
records a longer run).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path

import pytest
from reltestkit import (
    base_env,
    cpu_jiffies,
    machine_jiffies,
    make_users,
    percentile,
    process_tree,
)

from phoenix_bench.loadgen import ConnectionPool, HttpProtocolError, encode_request
from phoenix_bench.runner import session_request

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

SOAK_SECONDS = float(os.environ.get("PHOENIX_SOAK_SECONDS", "60"))
PROBE_SECONDS = 6.0
PROBE_CLIENTS = 16
LOAD_FACTOR = 0.70
LOGIN_SHARE = 0.10
RSS_BOUND_MIB = 40.0  # per server process, from the start of the soak to its end
P99_SLACK_MS = 5.0
P_MAX_MS = 2000.0  # no single request slower than this
MAX_IN_FLIGHT = 4096  # a guard against a runaway generator; waiting requests cost the client nothing
NEIGHBOUR_LIMIT = 0.15  # share of the machine's CPU other processes may use for the run to count
# ...and in any few seconds: a neighbour (or the hypervisor's steal) taking the machine for 3 s
# stalls an open loop by as much while hardly moving a 20-second third's share.
BURST_SECONDS, BURST_LIMIT = 3.0, 0.35

LOGIN = "/api/auth/phoenix"
CLIENT_ERRORS = (OSError, TimeoutError, asyncio.IncompleteReadError, HttpProtocolError)


def login_request(email: str, password: str) -> bytes:
    body = json.dumps({"email": email, "password": password}).encode()
    return encode_request("POST", LOGIN, headers=[("Content-Type", "application/json")], body=body)


class Mix:
    """The request mix shared by the probe and the soak."""

    def __init__(self, users: list[tuple[str, str, str]], tokens: list[str], seed: int) -> None:
        self.users, self.tokens, self.rng = users, tokens, random.Random(seed)

    async def one(self, client: ConnectionPool) -> tuple[str, int]:
        if self.rng.random() < LOGIN_SHARE:
            _, email, password = self.rng.choice(self.users)
            r = await client.request(login_request(email, password))
            if r.status == 200:
                # The new session replaces a random one: the pool of live tokens keeps its size, so
                # the share of never-seen tokens (cache misses) stays the same from start to end.
                self.tokens[self.rng.randrange(len(self.tokens))] = json.loads(r.body)["session"]["sessionId"]
            return "login", r.status
        token = self.rng.choice(self.tokens)
        r = await client.request(session_request(token))
        return "session", r.status


async def probe_capacity(client: ConnectionPool, mix: Mix, server) -> float:
    """Successful requests per second of a closed loop with PROBE_CLIENTS clients."""
    done = 0
    errors: list[str] = []
    end = time.monotonic() + PROBE_SECONDS

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < end:
            try:
                _, status = await mix.one(client)
            except CLIENT_ERRORS as exc:
                errors.append(type(exc).__name__)
                continue
            if status == 200:
                done += 1
            else:
                errors.append(str(status))

    start = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(PROBE_CLIENTS)))
    assert not errors, f"errors during the capacity probe: {errors}\n{server.output()[-3000:]}"
    return done / (time.monotonic() - start)


class Ours:
    """CPU used by everything this test runs (service, PostgreSQL, Redis, this process) versus the
    whole machine, so a neighbour's burst can be told apart from the service slowing down."""

    def __init__(self, server, pg, redis_server) -> None:
        self._roots = [server.proc.pid, os.getpid(), redis_server.proc.pid]
        self._pg = pg
        self._last: dict[int, int] = {}
        self._used = 0

    def _pids(self) -> list[int]:
        pids = list(self._pg.pids())
        for root in self._roots:
            pids += process_tree(root)
        return pids

    def begin(self) -> None:
        self._start = time.monotonic()
        self._last = {pid: cpu_jiffies(pid) for pid in self._pids()}
        self._marks = [(0.0, *machine_jiffies(), 0)]  # (offset s, machine busy, machine total, ours)

    def sample(self) -> None:
        """Account CPU of our processes (short-lived PostgreSQL backends are caught when sampled)."""
        for pid in self._pids():
            now = cpu_jiffies(pid)
            self._used += max(0, now - self._last.get(pid, now))
            self._last[pid] = now
        self._marks.append((time.monotonic() - self._start, *machine_jiffies(), self._used))

    def busiest_burst(self, seconds: float) -> tuple[float, float]:
        """(offset, share) of the `seconds`-long stretch in which other processes used the most."""
        ends = [m[0] for m in self._marks]
        shares = [(t, self.neighbour_share(t - seconds, t)) for t in ends if t >= seconds]
        return max(shares, key=lambda x: x[1], default=(0.0, 0.0))

    def neighbour_share(self, start: float = 0.0, end: float = float("inf")) -> float:
        """Share of the machine's CPU used by other processes between two offsets (seconds)."""
        marks = [m for m in self._marks if start - 0.5 <= m[0] <= end + 0.5]
        if len(marks) < 2:
            return 0.0
        (_, busy0, total0, ours0), (_, busy1, total1, ours1) = marks[0], marks[-1]
        total = total1 - total0
        return max(0.0, (busy1 - busy0 - (ours1 - ours0)) / total) if total else 0.0


async def test_soak_at_70_percent_of_measured_capacity(private_pg, pg_database, private_redis, start_server):
    server = start_server(
        base_env(
            pg_database,
            private_redis.url,
            PHOENIX_WORKERS="2",
            PHOENIX_MAX_DB_CONNECTIONS="8",
            PHOENIX_THROTTLE_IP_FREE_FAILURES="100000",
            # 16 closed-loop clients can have more logins at once than the admission bound lets
            # wait (login.py); the soak measures leaks and latency, not shedding.
            PHOENIX_MAX_HASH_WAIT_VERIFIES="0",
        )
    )
    users = make_users(pg_database, 200)
    client = ConnectionPool("127.0.0.1", server.port, size=128, timeout=10)
    try:
        tokens: list[str] = []
        for _, email, password in users:
            r = await client.request(login_request(email, password))
            assert r.status == 200
            tokens.append(json.loads(r.body)["session"]["sessionId"])
        mix = Mix(users, tokens, seed=6)
        capacity = await probe_capacity(client, mix, server)
        rate = capacity * LOAD_FACTOR
        interval = 1.0 / rate

        rss_start = server.rss_kib()
        assert len(rss_start) >= 3, rss_start  # the supervisor, two workers (and a resource tracker)
        rss_peak = dict(rss_start)
        results: list[tuple[float, float, str, int]] = []  # (scheduled offset, latency, kind, status)
        in_flight = 0
        overflow = 0
        tasks: set[asyncio.Task[None]] = set()

        async def fire(offset: float, scheduled: float) -> None:
            nonlocal in_flight
            try:
                kind, status = await mix.one(client)
            except CLIENT_ERRORS as exc:
                kind, status = type(exc).__name__, 0
            finally:
                in_flight -= 1
            results.append((offset, time.monotonic() - scheduled, kind, status))

        ours = Ours(server, private_pg, private_redis)
        ours.begin()
        start = time.monotonic()
        n = 0
        next_rss = start + 5
        next_cpu = start + 1
        while True:
            scheduled = start + n * interval
            if scheduled - start >= SOAK_SECONDS:
                break
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= MAX_IN_FLIGHT:
                overflow += 1
            else:
                in_flight += 1
                task = asyncio.create_task(fire(scheduled - start, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            n += 1
            if time.monotonic() >= next_rss:
                for pid, kib in server.rss_kib().items():
                    rss_peak[pid] = max(rss_peak.get(pid, 0), kib)
                next_rss += 5
            if time.monotonic() >= next_cpu:
                ours.sample()
                next_cpu += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        ours.sample()
        neighbours = ours.neighbour_share()
        busiest_third = max(
            ours.neighbour_share(SOAK_SECONDS * i / 3, SOAK_SECONDS * (i + 1) / 3) for i in range(3)
        )
        burst_at, burst = ours.busiest_burst(BURST_SECONDS)
        rss_end = server.rss_kib()
        health = json.loads((await client.request(encode_request("GET", "/api/phoenix/health"))).body)
    finally:
        client.close()

    statuses: dict[int, int] = {}
    for *_, status in results:
        statuses[status] = statuses.get(status, 0) + 1
    thirds = []
    for i in range(3):
        lo, hi = SOAK_SECONDS * i / 3, SOAK_SECONDS * (i + 1) / 3
        part = [r for r in results if lo <= r[0] < hi]
        lat = [r[1] * 1000 for r in part]
        seconds: dict[int, list[float]] = {}
        for offset, latency, *_ in part:
            seconds.setdefault(int(offset), []).append(latency * 1000)
        window_p99 = [percentile(v, 99) for v in seconds.values() if len(v) >= 20]
        thirds.append(
            {
                "requests": len(lat),
                "p50_ms": round(percentile(lat, 50), 2),
                "p99_ms": round(percentile(lat, 99), 2),
                "max_ms": round(max(lat), 2),
                "median_1s_p99_ms": round(statistics.median(window_p99), 2),
            }
        )
    growth_mib = {pid: (rss_end.get(pid, 0) - kib) / 1024 for pid, kib in rss_start.items()}
    figures = {
        "soak_seconds": SOAK_SECONDS,
        "capacity_rps": round(capacity, 1),
        "target_rps": round(rate, 1),
        "achieved_rps": round(len(results) / elapsed, 1),
        "requests": len(results),
        "logins": sum(1 for r in results if r[2] == "login"),
        "statuses": statuses,
        "overflow": overflow,
        "thirds": thirds,
        "rss_start_mib": {str(p): round(k / 1024, 1) for p, k in rss_start.items()},
        "rss_peak_mib": {str(p): round(k / 1024, 1) for p, k in rss_peak.items()},
        "rss_end_mib": {str(p): round(k / 1024, 1) for p, k in rss_end.items()},
        "rss_growth_mib": {str(p): round(g, 1) for p, g in growth_mib.items()},
        "cache_hit_ratio_one_worker": health["cache"]["metrics"]["hitRatio"],
        "neighbour_cpu_share": round(neighbours, 3),
        "neighbour_cpu_share_busiest_third": round(busiest_third, 3),
        f"neighbour_cpu_share_busiest_{BURST_SECONDS:g}s": [round(burst_at, 1), round(burst, 3)],
    }
    print("\nsoak figures: " + json.dumps(figures))
    per_second: dict[int, list[float]] = {}
    for offset, latency, *_ in results:
        per_second.setdefault(int(offset), []).append(latency * 1000)
    figures["per_second"] = [
        {"s": sec, "n": len(v), "p50_ms": round(percentile(v, 50), 2), "p99_ms": round(percentile(v, 99), 2)}
        for sec, v in sorted(per_second.items())
    ]
    if os.environ.get("PHOENIX_SOAK_REPORT"):
        Path(os.environ["PHOENIX_SOAK_REPORT"]).write_text(json.dumps(figures, indent=2))  # noqa: ASYNC240

    # The service answered every request it received with a 200, or shed one with 503 (a burst
    # after a stall of the machine); never an error of its own.
    assert set(statuses) <= {0, 200, 503}, statuses
    assert all(g < RSS_BOUND_MIB for g in growth_mib.values()), growth_mib
    if busiest_third > NEIGHBOUR_LIMIT or burst > BURST_LIMIT:
        # The capacity was measured on a machine that other processes then took: "70 %" no longer
        # holds, so schedule and latency say nothing about the service. Say so instead of failing.
        print(
            f"soak: other processes used {busiest_third:.0%} of the machine's CPU in a third of the run "
            f"(limit {NEIGHBOUR_LIMIT:.0%}) and {burst:.0%} in {BURST_SECONDS:g} s at {burst_at:.0f} s "
            f"(limit {BURST_LIMIT:.0%}); client-side timeouts, schedule and latency criteria not "
            "checked on this run"
        )
        return
    worst = sorted(figures["per_second"], key=lambda x: -x["p99_ms"])[:5]
    # not even a client error, and the generator never had MAX_IN_FLIGHT requests unanswered
    assert statuses == {200: len(results)}, (statuses, figures, server.output()[-3000:])
    assert overflow == 0, (
        f"{overflow} requests not sent: {MAX_IN_FLIGHT} were unanswered",
        worst,
        figures["thirds"],
        server.output()[-2000:],
    )
    assert len(results) >= 0.95 * rate * SOAK_SECONDS, "the generator fell behind its schedule"
    # Latency stable: the typical p99 of a second (median over the third's 1-second windows) in the
    # last third is at most twice the first third's. Raw 20-second p99s are printed too, but on a
    # shared 2-core machine they are set by a few seconds when a neighbour's build takes the CPU,
    # which says nothing about the service; a real drift (a leak, a growing scan) raises every
    # window. And no request ever took longer than P_MAX_MS.
    first, last = thirds[0]["median_1s_p99_ms"], thirds[2]["median_1s_p99_ms"]
    assert last <= 2 * first + P99_SLACK_MS, thirds
    assert max(t["max_ms"] for t in thirds) < P_MAX_MS, thirds
