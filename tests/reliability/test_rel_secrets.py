"""Planted secrets never leak: not in the service's logs, /metrics, health JSON, or Redis.

We plant unique values — the database password (inside DATABASE_URL), PHOENIX_ADMIN_TOKEN,
PHOENIX_CACHE_SIGNING_KEY, a user's password, a wrong password an attacker tries, a forged admin
token, and the session tokens the service hands out — then drive every code path that logs:
logins good and bad, oversized passwords, session checks by header and cookie, logout, admin
revoke with good and bad tokens, Redis killed and back, PostgreSQL crashed and back, at DEBUG
log level with two workers. Then we grep everything the service wrote or serves (on both
listeners) for each secret.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
import redis
from reltestkit import CLIENT_LIMITS, base_env, make_users

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"


async def _wait(predicate, seconds: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


def _dump_redis(url: str) -> str:
    """Every key and its serialized value, one per line."""
    client = redis.Redis.from_url(url)
    try:
        return "\n".join(f"{key!r} {client.dump(key)!r}" for key in client.scan_iter(count=1000))
    finally:
        client.close()


async def test_planted_secrets_never_appear_in_logs_metrics_health_or_redis(
    private_pg, pg_database, private_redis, start_server
):
    admin_token = "planted-admin-" + secrets.token_hex(16)
    forged_admin = "planted-forged-" + secrets.token_hex(16)
    wrong_password = "planted-wrong-" + secrets.token_hex(8)
    signing_key = "planted-l2-key-" + secrets.token_hex(16)
    server = start_server(
        base_env(
            pg_database,
            private_redis.url,
            PHOENIX_ADMIN_TOKEN=admin_token,
            PHOENIX_CACHE_SIGNING_KEY=signing_key,
            PHOENIX_LOG_LEVEL="DEBUG",
            PHOENIX_WORKERS="2",
            PHOENIX_SUMMARY_INTERVAL="1",
            PHOENIX_DB_POOL_TIMEOUT="0.5",
        )
    )
    (_, email, password), (uid2, email2, password2) = make_users(pg_database, 2)
    planted = {
        "database password": private_pg.password,
        "admin token": admin_token,
        "L2 signing key": signing_key,
        "forged admin token": forged_admin,
        "user password": password,
        "second user password": password2,
        "attacker's password": wrong_password,
    }
    assert private_pg.password in pg_database

    scraped: list[str] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, limits=CLIENT_LIMITS) as c:

        async def scrape() -> None:
            for base in (server.base_url, server.admin_url):  # both listeners
                for path in ("/metrics", "/api/phoenix/health", "/readyz", "/healthz", "/openapi.json"):
                    scraped.append((await c.get(base + path)).text)

        tokens = []
        for _ in range(3):
            r = await c.post(LOGIN, json={"email": email, "password": password})
            assert r.status_code == 200
            tokens.append(r.json()["session"]["sessionId"])
        r = await c.post("/api/auth/login", json={"email": email2, "password": password2})
        tokens.append(r.json()["session"]["sessionId"])
        c.cookies.clear()
        for _ in range(3):
            r = await c.post(LOGIN, json={"email": email, "password": wrong_password})
            assert r.status_code in (401, 429)
        await c.post(LOGIN, json={"email": "ghost@example.com", "password": wrong_password})
        await c.post(LOGIN, json={"email": email, "password": wrong_password * 200})  # too long
        await c.post(
            LOGIN,
            content=f'{{"email":"{email}","password":"{wrong_password}"'.encode(),
            headers={"content-type": "application/json"},
        )  # truncated JSON
        for token in tokens:
            assert (await c.get(SESSION, headers={"Authorization": f"Bearer {token}"})).status_code == 200
            cookie = {"Cookie": f"__Host-phoenix_session={token}"}
            assert (await c.get(SESSION, headers=cookie)).status_code == 200
        await c.get(SESSION, headers={"Authorization": f"Bearer {forged_admin}"})
        r = await c.post(
            f"{server.admin_url}/api/auth/admin/users/{uid2}/revoke-sessions",
            headers={"Authorization": f"Bearer {forged_admin}"},
        )
        assert r.status_code == 401
        r = await c.post(
            f"{server.admin_url}/api/auth/admin/users/{uid2}/revoke-sessions",
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert r.status_code == 200
        assert (
            await c.post("/api/auth/logout", headers={"Authorization": f"Bearer {tokens[0]}"})
        ).status_code == 200
        await scrape()

        redis_dumps = [_dump_redis(private_redis.url)]
        # Failure paths log the most: Redis killed and back, PostgreSQL crashed and back.
        private_redis.stop()
        for token in tokens[1:3]:
            await c.get(SESSION, headers={"Authorization": f"Bearer {token}"})
        await c.post(LOGIN, json={"email": email, "password": password})
        await scrape()
        private_redis.start()
        private_pg.stop("immediate")
        for _ in range(3):
            await c.post(LOGIN, json={"email": email, "password": password})
            await c.get(SESSION, headers={"Authorization": f"Bearer {tokens[1]}"})
        await scrape()
        private_pg.start()

        async def logged_in() -> bool:
            r = await c.post(LOGIN, json={"email": email, "password": password})
            if r.status_code == 200:
                tokens.append(r.json()["session"]["sessionId"])
                return True
            return False

        assert await _wait(logged_in)
        await asyncio.sleep(1.2)  # one summary line
        await scrape()

    server.stop()
    logs = server.output()
    assert "database unreachable" in logs and "redis unreachable" in logs  # the failure paths ran
    assert "phoenix summary" in logs
    planted.update({f"session token {i}": t for i, t in enumerate(tokens)})
    redis_dumps.append(_dump_redis(private_redis.url))
    redis_dump = "\n".join(redis_dumps)
    assert redis_dumps[0].count("\n") >= 3  # the cache and the throttle counters were in Redis
    assert "phoenix:c:s:" in redis_dumps[0]  # sealed L2 values were there to leak the key
    assert uid2 in logs  # the workers' logs were captured (the admin revoke logs the user id)
    places = {"service logs": logs, "scraped endpoints": "\n".join(scraped), "redis": redis_dump}
    leaks = [
        (what, where)
        for what, secret in planted.items()
        for where, text in places.items()
        if secret in text or secret.lower() in text.lower()
    ]
    assert not leaks, leaks
    print(
        f"\nsecrets: {len(planted)} planted values, {len(logs.splitlines())} log lines, "
        f"{sum(len(s) for s in scraped)} bytes scraped, {len(redis_dump.splitlines())} redis keys: no leak"
    )
