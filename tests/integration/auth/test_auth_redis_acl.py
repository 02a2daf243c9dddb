"""The Redis ACL the operator documents (`redislink.acl_rule()`) is all the service needs, and no more.

The service runs as an ACL user with exactly that rule against a real redis-server and goes
through every path that touches Redis (logins good and bad up to a lock, session checks filling
and reading L2, logout deleting from it, a full sweep, health); Redis's own ACL LOG, which
records every denied command and key, must stay empty. The same user cannot read a key outside
`phoenix:*`, and docs/auth-service.md shows this very rule.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
import redis
from authtestkit import running_app, scrape

from phoenix_auth.redislink import acl_rule

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[3] / "docs" / "auth-service.md"
LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"


async def test_the_documented_acl_is_all_the_service_needs(make_settings, make_user, private_redis):
    admin = redis.Redis.from_url(private_redis.url)
    password = secrets.token_urlsafe(18)
    admin.execute_command("ACL", "SETUSER", "phoenix-auth", "on", ">" + password, *acl_rule().split())
    admin.acl_log_reset()
    url = f"redis://phoenix-auth:{password}@127.0.0.1:{private_redis.port}/0"
    settings = make_settings(REDIS_URL=url, l1_max_entries=0, throttle_free_failures=2)
    async with running_app(settings) as (app, client):
        cache = app.resources.cache
        for _ in range(100):
            if cache.use_l2:
                break
            await asyncio.sleep(0.05)
        user = make_user()
        good = {"email": user.email, "password": user.password}
        bad = {"email": user.email, "password": "wrong"}
        assert (await client.post(LOGIN, json=bad)).status_code == 401  # throttle script, pipeline
        r = await client.post(LOGIN, json=good)  # refund and known-address mark
        assert r.status_code == 200
        token = r.json()["session"]["sessionId"]
        client.cookies.clear()
        bearer = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # L2 fills, then L2 reads
            assert (await client.get(SESSION, headers=bearer)).status_code == 200
        assert (await client.get(SESSION, headers=bearer)).json()["performance"]["cacheHits"] == 2
        assert (await client.post("/api/auth/logout", headers=bearer)).status_code == 200  # UNLINK
        cache.require_sweep()  # SCAN + UNLINK
        for _ in range(100):
            if cache.use_l2:
                break
            await asyncio.sleep(0.05)
        assert cache.use_l2
        statuses = [(await client.post(LOGIN, json=bad)).status_code for _ in range(6)]
        assert 429 in statuses  # the lock was set and read in Redis
        health = (await client.get("/api/phoenix/health")).json()
        assert health["cache"]["stats"]["redis"] == {"configured": True, "healthy": True}
        assert 'phoenix_degraded_operations_total{component="redis"} 0.0' in await scrape(app)
    assert admin.acl_log(count=50) == []
    limited = redis.Redis.from_url(url)
    admin.set("other-app:secret", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.get("other-app:secret")
    limited.close()
    admin.close()
    assert acl_rule() in DOCS.read_text()
