"""A bounded soak at ~70 % of the capacity measured at the start of the test.

1. Start `phoenix-auth serve` with 2 workers (private PostgreSQL and Redis), 200 users.
2. Capacity probe: a closed loop (16 clients, no think time) for `PROBE_SECONDS` of the same mix
   the soak uses: 1 login in 10, the rest session checks (the hot path), random users/tokens.
3. Soak: an open loop at 70 % of the probed throughput for `PHOENIX_SOAK_SECONDS` (default 60);
   latency counts from each request's scheduled start, so a stall is not hidden by the generator
   waiting (coordinated omission).
4. Assert: no error at all; the generator kept its schedule; RSS of each server process grew less
   than `RSS_BOUND_MIB`; p99 of the last third <= 2 x p99 of the first third (+ `P99_SLACK_MS`, one
   scheduling quantum on a shared 2-core machine).

Figures are printed; with `PHOENIX_SOAK_REPORT=path.json` they are also written as JSON
(docs/reliability.md records a longer run).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import httpx
import pytest
from reltestkit import base_env, make_users, percentile

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

SOAK_SECONDS = float(os.environ.get("PHOENIX_SOAK_SECONDS", "60"))
PROBE_SECONDS = 6.0
PROBE_CLIENTS = 16
LOAD_FACTOR = 0.70
LOGIN_SHARE = 0.10
RSS_BOUND_MIB = 40.0  # per server process, from the start of the soak to its end
P99_SLACK_MS = 5.0
MAX_IN_FLIGHT = 512

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"


class Mix:
    """The request mix shared by the probe and the soak."""

    def __init__(self, users: list[tuple[str, str, str]], tokens: list[str], seed: int) -> None:
        self.users, self.tokens, self.rng = users, tokens, random.Random(seed)

    async def one(self, client: httpx.AsyncClient) -> tuple[str, int]:
        if self.rng.random() < LOGIN_SHARE:
            _, email, password = self.rng.choice(self.users)
            r = await client.post(LOGIN, json={"email": email, "password": password})
            if r.status_code == 200:
                self.tokens.append(r.json()["session"]["sessionId"])
                if len(self.tokens) > 2000:
                    del self.tokens[: len(self.tokens) - 2000]
            return "login", r.status_code
        token = self.rng.choice(self.tokens)
        r = await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})
        return "session", r.status_code


async def probe_capacity(client: httpx.AsyncClient, mix: Mix) -> float:
    """Successful requests per second of a closed loop with PROBE_CLIENTS clients."""
    done = 0
    errors = 0
    end = time.monotonic() + PROBE_SECONDS

    async def loop() -> None:
        nonlocal done, errors
        while time.monotonic() < end:
            _, status = await mix.one(client)
            if status == 200:
                done += 1
            else:
                errors += 1

    start = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(PROBE_CLIENTS)))
    assert errors == 0, f"{errors} errors during the capacity probe"
    return done / (time.monotonic() - start)


async def test_soak_at_70_percent_of_measured_capacity(pg_database, private_redis, start_server):
    server = start_server(
        base_env(
            pg_database,
            private_redis.url,
            PHOENIX_WORKERS="2",
            PHOENIX_MAX_DB_CONNECTIONS="8",
            PHOENIX_THROTTLE_IP_FREE_FAILURES="100000",
        )
    )
    users = make_users(pg_database, 200)
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, limits=limits) as client:
        tokens: list[str] = []
        for _, email, password in users[:50]:
            r = await client.post(LOGIN, json={"email": email, "password": password})
            assert r.status_code == 200
            tokens.append(r.json()["session"]["sessionId"])
        mix = Mix(users, tokens, seed=6)
        capacity = await probe_capacity(client, mix)
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
            except httpx.HTTPError as exc:
                kind, status = type(exc).__name__, 0
            finally:
                in_flight -= 1
            results.append((offset, time.monotonic() - scheduled, kind, status))

        start = time.monotonic()
        n = 0
        next_rss = start + 5
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
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        rss_end = server.rss_kib()
        health = (await client.get("/api/phoenix/health")).json()

    statuses: dict[int, int] = {}
    for *_, status in results:
        statuses[status] = statuses.get(status, 0) + 1
    thirds = []
    for i in range(3):
        lo, hi = SOAK_SECONDS * i / 3, SOAK_SECONDS * (i + 1) / 3
        lat = [r[1] * 1000 for r in results if lo <= r[0] < hi]
        thirds.append(
            {
                "requests": len(lat),
                "p50_ms": round(percentile(lat, 50), 2),
                "p99_ms": round(percentile(lat, 99), 2),
                "max_ms": round(max(lat), 2),
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
    }
    print("\nsoak figures: " + json.dumps(figures))
    if os.environ.get("PHOENIX_SOAK_REPORT"):
        Path(os.environ["PHOENIX_SOAK_REPORT"]).write_text(json.dumps(figures, indent=2))  # noqa: ASYNC240

    assert statuses == {200: len(results)}, statuses
    assert overflow == 0
    assert len(results) >= 0.95 * rate * SOAK_SECONDS, "the generator fell behind its schedule"
    assert all(g < RSS_BOUND_MIB for g in growth_mib.values()), growth_mib
    assert thirds[2]["p99_ms"] <= 2 * thirds[0]["p99_ms"] + P99_SLACK_MS, thirds
