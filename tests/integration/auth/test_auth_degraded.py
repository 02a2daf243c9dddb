"""Degradation: Redis killed, PostgreSQL unreachable and back, pool exhausted."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from authtestkit import TcpProxy, free_port, running_app, scrape

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def test_redis_killed_logins_and_sessions_continue_from_postgresql(
    make_settings, make_user, private_redis
):
    async with running_app(make_settings(REDIS_URL=private_redis.url)) as (app, client):
        user = make_user()
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        token = r.json()["session"]["sessionId"]
        private_redis.stop()
        app.resources.cache.l1.clear()  # make the next checks go past L1
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 200, r.text
        token2 = r.json()["session"]["sessionId"]
        for t in (token, token2):
            r = await client.get(SESSION, headers=_bearer(t))
            assert r.status_code == 200, r.text
        r = await client.post(LOGIN, json={"email": user.email, "password": "wrong"})
        assert r.status_code == 401  # throttling falls back to in-process counters
        assert (await client.get("/readyz")).status_code == 200
        health = (await client.get("/api/phoenix/health")).json()
        assert health["status"] == "degraded"
        assert health["cache"]["stats"]["redis"] == {"configured": True, "healthy": False}
        assert health["cache"]["stats"]["degraded"] is True
        assert health["cache"]["stats"]["degradedOperations"] > 0
        metrics = await scrape(app)
        assert 'phoenix_degraded_operations_total{component="redis"}' in metrics
        assert 'phoenix_dependency_up{dependency="redis"} 0.0' in metrics
        # Redis comes back: the breaker closes and health turns healthy again.
        private_redis.start()
        await asyncio.sleep(1.1)
        for _ in range(30):
            health = (await client.get("/api/phoenix/health")).json()
            if health["status"] == "healthy":
                break
            await asyncio.sleep(0.2)
        assert health["cache"]["stats"]["redis"]["healthy"] is True


async def test_postgresql_unreachable_gives_503_then_recovers(make_settings, make_user, database_url):
    target = urlsplit(database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    settings = make_settings(DATABASE_URL=_with_port(database_url, proxy.port), db_pool_timeout=1.0)
    try:
        async with running_app(settings) as (app, client):
            user = make_user()
            r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
            assert r.status_code == 200
            token = r.json()["session"]["sessionId"]
            await proxy.stop()
            app.resources.cache.l1.clear()
            start = time.monotonic()
            r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "DATABASE_UNAVAILABLE" and r.json()["message"]
            assert int(r.headers["retry-after"]) >= 1
            assert time.monotonic() - start < 3
            r = await client.get(SESSION, headers=_bearer(token))
            assert r.status_code == 503 and r.json()["error"] == "DATABASE_UNAVAILABLE"
            # Known down: later requests fail fast.
            start = time.monotonic()
            r = await client.post(LOGIN, json={"email": "x" + user.email, "password": "p"})
            assert r.status_code == 503 and time.monotonic() - start < 1.0
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200
            health = await client.get("/api/phoenix/health")
            assert health.status_code == 503 and health.json()["database"]["healthy"] is False
            # PostgreSQL is back: the pool and the listener reconnect by themselves.
            await proxy.start()
            deadline = time.monotonic() + 15
            status = None
            while time.monotonic() < deadline:
                r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
                status = r.status_code
                if status == 200:
                    break
                await asyncio.sleep(0.2)
            assert status == 200
            assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            for _ in range(50):
                if app.resources.listener.connected.is_set():
                    break
                await asyncio.sleep(0.2)
            assert app.resources.listener.connected.is_set()
    finally:
        await proxy.stop()


async def test_database_url_on_a_closed_port_answers_503_not_a_hang(make_settings):
    settings = make_settings(DATABASE_URL=f"postgresql://phoenix:phoenix@127.0.0.1:{free_port()}/none")
    async with running_app(settings) as (_, client):
        start = time.monotonic()
        r = await client.post(LOGIN, json={"email": "a@b.co", "password": "p"})
        assert r.status_code == 503 and r.json()["error"] == "DATABASE_UNAVAILABLE"
        assert "retry-after" in r.headers
        assert time.monotonic() - start < 2.5


async def test_pool_exhausted_gives_503_with_retry_after_quickly(make_settings, make_user):
    settings = make_settings(max_db_connections=1, min_db_connections=1, db_pool_timeout=0.3)
    async with running_app(settings) as (app, client):
        user = make_user()
        await client.post(LOGIN, json={"email": user.email, "password": user.password})  # warm the pool
        async with app.resources.db.pool.connection():  # hold the only connection
            start = time.monotonic()
            r = await client.post(LOGIN, json={"email": "nobody-" + user.email, "password": "p"})
            elapsed = time.monotonic() - start
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "POOL_EXHAUSTED"
            assert int(r.headers["retry-after"]) >= 1
            assert 0.25 <= elapsed < 1.5
            metrics = await scrape(app)
            assert 'phoenix_db_pool_connections{state="in_use"} 1.0' in metrics
            # A saturated pool is not a reason to leave the load balancer.
            start = time.monotonic()
            assert (await client.get("/readyz")).status_code == 200
            assert time.monotonic() - start < 0.2
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 200
