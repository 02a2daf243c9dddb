"""Throttling against a real Redis: backoff to 429 + Retry-After, unlock, per-IP limit, securityRisk."""

from __future__ import annotations

import asyncio
import time

import pytest
from authtestkit import running_app

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"


async def test_account_backoff_then_unlock(make_settings, make_user):
    settings = make_settings(
        throttle_free_failures=2,
        throttle_lockout_failures=10,
        throttle_base_delay=1.0,
        throttle_max_delay=2.0,
    )
    async with running_app(settings) as (_, client):
        user = make_user()
        for _ in range(2):
            r = await client.post(LOGIN, json={"email": user.email, "password": "bad"})
            assert r.status_code == 401
        # The third failure locks the account for base_delay; the right password is refused meanwhile.
        r = await client.post(LOGIN, json={"email": user.email, "password": "bad"})
        assert r.status_code == 401
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "THROTTLED"
        retry_after = int(r.headers["retry-after"])
        assert 1 <= retry_after <= 2
        # Unknown accounts are throttled the same way (no enumeration through 429s).
        ghost = "ghost-" + user.email
        for _ in range(3):
            await client.post(LOGIN, json={"email": ghost, "password": "bad"})
        assert (await client.post(LOGIN, json={"email": ghost, "password": "bad"})).status_code == 429
        await asyncio.sleep(retry_after + 0.1)
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 200, r.text
        # securityRisk reflects the 3 failures seen before this success (3 / lockout 10).
        assert r.json()["session"]["securityRisk"] == pytest.approx(0.3)
        # The success cleared the account counter.
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 200, r.text
        assert r.json()["session"]["securityRisk"] < 0.3, r.text


async def test_lockout_well_under_100_failures(make_settings, make_user):
    settings = make_settings(
        throttle_free_failures=2, throttle_lockout_failures=4, throttle_base_delay=0.05, throttle_max_delay=30
    )
    async with running_app(settings) as (_, client):
        user = make_user()
        statuses = []
        for _ in range(8):
            r = await client.post(LOGIN, json={"email": user.email, "password": "bad"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
            await asyncio.sleep(0.2)  # outwait the short backoff, so only the lockout stops us
        assert statuses[-1] == 429
        assert int(r.headers["retry-after"]) >= 29  # locked for the maximum delay
        assert statuses.count(401) == 4


async def test_per_ip_limit_stops_credential_stuffing(make_settings, make_user):
    settings = make_settings(throttle_ip_free_failures=3, throttle_base_delay=5.0)
    async with running_app(settings) as (_, client):
        for i in range(4):
            r = await client.post(LOGIN, json={"email": f"stuff-{i}-{time.time_ns()}@x.io", "password": "p"})
            assert r.status_code == 401
        user = make_user()
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 429 and r.json()["error"] == "THROTTLED"


async def test_x_forwarded_for_only_from_trusted_proxies(make_settings):
    # Untrusted peer: X-Forwarded-For is ignored, so rotating it cannot dodge the per-IP limit.
    settings = make_settings(throttle_ip_free_failures=2, throttle_base_delay=5.0)
    async with running_app(settings) as (_, client):
        for i in range(3):
            await client.post(
                LOGIN,
                json={"email": f"xff-{i}-{time.time_ns()}@x.io", "password": "p"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
        r = await client.post(
            LOGIN, json={"email": "other@x.io", "password": "p"}, headers={"X-Forwarded-For": "198.51.100.99"}
        )
        assert r.status_code == 429
    # Trusted proxy: the forwarded client address is the throttled one; another client behind it is not.
    async with running_app(make_settings()) as (_, probe):
        proxy = probe.peer_ip
    settings = make_settings(throttle_ip_free_failures=2, throttle_base_delay=5.0, trusted_proxies=proxy)
    async with running_app(settings, peer=proxy) as (_, client):
        for i in range(3):
            await client.post(
                LOGIN,
                json={"email": f"xff2-{i}-{time.time_ns()}@x.io", "password": "p"},
                headers={"X-Forwarded-For": "198.51.100.20"},
            )
        blocked = await client.post(
            LOGIN, json={"email": "o1@x.io", "password": "p"}, headers={"X-Forwarded-For": "198.51.100.20"}
        )
        other = await client.post(
            LOGIN, json={"email": "o2@x.io", "password": "p"}, headers={"X-Forwarded-For": "198.51.100.21"}
        )
        assert blocked.status_code == 429
        assert other.status_code == 401


async def test_success_refunds_what_it_saw_and_keeps_failures_recorded_after_its_reservation(make_settings):
    """A success gives back its own reservation and the failures it saw; a failure of a
    concurrent attempt reserved after it stays counted."""
    from phoenix_auth.metrics import Metrics
    from phoenix_auth.redislink import RedisLink
    from phoenix_auth.throttle import Keys, Throttle

    settings = make_settings(throttle_free_failures=5)
    link = RedisLink(settings, Metrics())
    throttle = Throttle(settings, link)
    email, ip = f"t-{time.time_ns()}@x.io", "203.0.113.7"
    try:
        first = await throttle.reserve(Keys.of(email, ip))
        assert first.account_failures == 0
        other = await throttle.reserve(Keys.of(email, ip))  # a concurrent wrong password, reserved after ours
        await throttle.failed(other)
        await throttle.succeeded(first)
        await throttle.settled()
        seen = await throttle.reserve(Keys.of(email, ip))
        assert seen.account_failures == 1  # kept: never refunded by a login that did not see it
        await throttle.succeeded(seen)
        await throttle.settled()
        again = await throttle.reserve(Keys.of(email, ip))
        assert again.account_failures == 0
        # The address got back this account's failure from it too (the success proved the typo).
        assert again.address_failures == 0 and not again.counted_on_address  # now a known address
    finally:
        await link.close()


async def test_throttled_answers_leave_no_pending_login_behind(make_settings, make_user):
    """A 429 does not wait for the user lookup overlapped with the throttle check; that lookup
    still counts as a pending login until it ends, and then frees its slot: after a burst of
    throttled requests a real login is served, not shed as Overloaded."""
    settings = make_settings(throttle_free_failures=1, throttle_base_delay=5.0, max_pending_logins=2)
    async with running_app(settings) as (app, client):
        ghost = f"ghost-{time.time_ns()}@x.io"  # never in L1: every attempt overlaps a lookup
        for _ in range(2):
            assert (await client.post(LOGIN, json={"email": ghost, "password": "p"})).status_code == 401
        for _ in range(10):
            r = await client.post(LOGIN, json={"email": ghost, "password": "p"})
            assert r.status_code == 429 and r.json()["error"] == "THROTTLED"
            # The detached lookup frees its slot when it ends (it may still run after the 429:
            # a next request sent at once could then be shed as 503 OVERLOADED with this cap of 2).
            for _ in range(1000):  # at most ~5 s
                if not app.resources.login._in_flight:
                    break
                await asyncio.sleep(0.005)
            assert app.resources.login._in_flight == 0
        user = make_user()
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 200, r.text
        assert app.resources.login._in_flight == 0
