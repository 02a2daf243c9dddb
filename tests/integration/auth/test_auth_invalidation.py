"""The LISTEN connection: losing it never lets L1 serve stale data, and it reconnects by itself."""

from __future__ import annotations

import asyncio
import time

import pytest

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"


async def test_listener_killed_caches_bypassed_then_reconnected(app_client, make_user, sql):
    app, client = app_client
    user = make_user(role="user")
    r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
    headers = {"Authorization": f"Bearer {r.json()['session']['sessionId']}"}
    client.cookies.clear()
    for _ in range(2):
        r = await client.get(SESSION, headers=headers)
    assert r.json()["performance"]["cacheHits"] == 2
    # Kill the listener's backend from outside, then change the user while it may be away.
    killed = sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'phoenix-auth-listener' AND datname = current_database()"
    )
    assert killed and all(row[0] for row in killed)
    sql("UPDATE users SET role = 'auditor' WHERE id = %s", (user.id,))
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        r = await client.get(SESSION, headers=headers)
        if r.json()["user"]["role"] == "auditor":
            break
        await asyncio.sleep(0.02)
    assert r.json()["user"]["role"] == "auditor", "stale role served after the listener was lost"
    # It reconnects on its own, and the caches serve again afterwards.
    for _ in range(200):
        if app.resources.listener.reconnects >= 1 and app.resources.listener.connected.is_set():
            break
        await asyncio.sleep(0.05)
    assert app.resources.listener.connected.is_set() and app.resources.listener.reconnects >= 1
    for _ in range(2):
        r = await client.get(SESSION, headers=headers)
    assert r.json()["performance"]["cacheHits"] == 2
    health = (await client.get("/api/phoenix/health")).json()
    assert health["cache"]["stats"]["listener"]["reconnects"] >= 1


async def test_while_the_listener_is_down_every_lookup_goes_to_postgresql(app_client, make_user, sql):
    app, client = app_client
    user = make_user(role="user")
    r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
    headers = {"Authorization": f"Bearer {r.json()['session']['sessionId']}"}
    client.cookies.clear()
    await client.get(SESSION, headers=headers)
    app.resources.cache.listener_down()  # what the listener does when its connection drops
    try:
        degraded_before = app.resources.metrics.stats.degraded
        r = await client.get(SESSION, headers=headers)
        assert r.status_code == 200 and r.json()["performance"]["cacheHits"] == 0
        assert app.resources.metrics.stats.degraded > degraded_before
        assert len(app.resources.cache.l1) == 0
        # Nothing is filled while down, so nothing stale can linger after.
        await client.get(SESSION, headers=headers)
        assert len(app.resources.cache.l1) == 0
    finally:
        app.resources.cache.listener_up()
