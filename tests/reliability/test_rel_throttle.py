"""Throttling against a real `phoenix-auth serve` with two workers (security review, issue 12,
findings 1 and 2): a flood from one shared address, and guesses sent all at once.

Every request comes from 127.0.0.1 with no trusted proxy, exactly what the service sees behind
an ingress whose X-Forwarded-For it does not believe: one address for everybody.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from reltestkit import PhoenixServer, base_env, make_users

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOGIN = "/api/auth/phoenix"


def _server(start_server, pg_database, redis_url: str, **extra: str) -> PhoenixServer:
    return start_server(
        base_env(
            pg_database,
            redis_url,
            PHOENIX_WORKERS="2",
            PHOENIX_MAX_PENDING_LOGINS="200",
            PHOENIX_MAX_HASH_WAIT_VERIFIES="0",  # no admission shedding: throttling is under test
            **extra,
        )
    )


async def _post_all(base_url: str, bodies: list[dict[str, str]], concurrency: int) -> list[int]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(body: dict[str, str]) -> int:
            async with gate:
                return (await client.post(LOGIN, json=body)).status_code

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def test_a_flood_behind_one_proxy_never_locks_out_users_who_log_in_there(
    start_server, pg_database, private_redis
):
    """300 wrong passwords, 16 at a time, from the one address everybody shares: stuffing across
    fresh emails plus brute force on two accounts. Afterwards every user who had logged in before
    still logs in at once; the two targets are locked; an account never seen there waits."""
    svc = _server(start_server, pg_database, private_redis.url, PHOENIX_THROTTLE_BASE_DELAY="30")
    users = make_users(pg_database, 22)
    regulars, targets = users[:20], users[20:]
    newcomer = make_users(pg_database, 1)[0]
    before = asyncio.run(
        _post_all(svc.base_url, [{"email": e, "password": p} for _, e, p in regulars + targets], 8)
    )
    assert before == [200] * 22
    flood = [
        {
            "email": targets[i % 2][1] if i % 3 == 0 else f"stuffed-{i}-{secrets.token_hex(4)}@example.com",
            "password": f"Winter{i}!",
        }
        for i in range(300)
    ]
    statuses = asyncio.run(_post_all(svc.base_url, flood, 16))
    print(f"flood: {statuses.count(401)} x 401, {statuses.count(429)} x 429")
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(429) > 200, statuses.count(429)  # the flood is throttled
    after = asyncio.run(_post_all(svc.base_url, [{"email": e, "password": p} for _, e, p in regulars], 8))
    assert after == [200] * 20, after
    with httpx.Client(base_url=svc.base_url, timeout=10) as c:
        for _, email, password in targets:
            r = c.post(LOGIN, json={"email": email, "password": password})
            assert r.status_code == 429 and r.json()["error"] == "THROTTLED"
        r = c.post(LOGIN, json={"email": newcomer[1], "password": newcomer[2]})
        assert r.status_code == 429  # credential stuffing stays throttled for accounts new here
        throttle = c.get("/api/phoenix/health").json()["throttle"]
        assert throttle["trustedProxies"] == 0 and throttle["untrustedPrivatePeerLogins"] > 0


@pytest.mark.parametrize("redis_down", [False, True], ids=["redis", "redis-killed"])
def test_guesses_sent_at_once_verify_at_most_the_free_budget(
    start_server, pg_database, private_redis, redis_down
):
    """60 wrong guesses at one account, all at once, over two worker processes, 3 free failures:
    with Redis at most 3 + 1 are verified in all; with Redis killed each worker falls back to its
    own atomic reservation, so at most 4 per worker."""
    svc = _server(
        start_server,
        pg_database,
        private_redis.url,
        PHOENIX_THROTTLE_FREE_FAILURES="3",
        PHOENIX_THROTTLE_BASE_DELAY="30",
    )
    (_, email, password) = make_users(pg_database, 1)[0]
    if redis_down:
        private_redis.stop()
    statuses = asyncio.run(
        _post_all(svc.base_url, [{"email": email, "password": f"g{i}"} for i in range(60)], 60)
    )
    where = "Redis killed" if redis_down else "Redis"
    print(f"60 guesses at once ({where}): {statuses.count(401)} verified (401)")
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) <= (8 if redis_down else 4), statuses.count(401)
    with httpx.Client(base_url=svc.base_url, timeout=10) as c:
        assert c.post(LOGIN, json={"email": email, "password": password}).status_code == 429
