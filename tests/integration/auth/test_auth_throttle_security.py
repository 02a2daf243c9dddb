"""Throttle findings of the security review (issue 12, findings 1, 2, 6, 7), against real Redis.

1. A wrong-password flood from one address never refuses accounts that log in from there.
2. Concurrent guesses cannot all pass a check made before any of them is recorded.
6. Every X-Forwarded-For line is read.
7. IPv6 clients are counted per /64.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from authtestkit import running_app

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"


@contextlib.asynccontextmanager
async def client_at(app, peer: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another client of the same app, connecting from `peer`."""
    transport = httpx.ASGITransport(app=app, client=(peer, 41000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        yield client


def _ghost(tag: str) -> str:
    return f"{tag}-{time.time_ns()}@x.io"


async def test_a_flood_from_a_shared_address_never_refuses_accounts_that_logged_in_from_it(
    make_settings, make_user
):
    """Everyone behind one proxy shares its address. A wrong-password flood from it (brute force
    on one account plus stuffing across many) locks the address for accounts never seen there,
    but a user who has logged in from there before still logs in; the flood's targets are locked."""
    settings = make_settings(throttle_ip_free_failures=5, throttle_free_failures=3, throttle_base_delay=30.0)
    async with running_app(settings, peer="10.20.30.40") as (app, proxy):
        regular, target = make_user(), make_user()
        for user in (regular, target):
            assert (
                await proxy.post(LOGIN, json={"email": user.email, "password": user.password})
            ).status_code == 200
        statuses = []
        for i in range(60):
            email = target.email if i % 2 else _ghost(f"flood-{i}")
            statuses.append(
                (await proxy.post(LOGIN, json={"email": email, "password": f"guess-{i}"})).status_code
            )
        assert statuses.count(429) > 40, statuses  # the flood itself is throttled
        r = await proxy.post(LOGIN, json={"email": regular.email, "password": regular.password})
        assert r.status_code == 200, r.text  # not targeted, known here: never refused
        r = await proxy.post(LOGIN, json={"email": target.email, "password": target.password})
        assert r.status_code == 429  # the flood's target is locked (from everywhere, for now)
        # Stuffing stays throttled: an account never seen from this address waits, right
        # password or not, while the same account logs in from another address.
        newcomer = make_user()
        r = await proxy.post(LOGIN, json={"email": newcomer.email, "password": newcomer.password})
        assert r.status_code == 429 and r.json()["error"] == "THROTTLED"
        async with client_at(app, "198.51.100.10") as elsewhere:
            r = await elsewhere.post(LOGIN, json={"email": newcomer.email, "password": newcomer.password})
            assert r.status_code == 200, r.text


async def test_typos_that_end_in_a_login_do_not_push_a_shared_address_over_its_limit(
    make_settings, make_user
):
    """A busy day behind one proxy: every user mistypes once, then logs in. Those failures are
    given back to the address, so a first-time user behind the same proxy is not refused."""
    settings = make_settings(throttle_ip_free_failures=5, throttle_base_delay=30.0)
    async with running_app(settings, peer="10.21.31.41") as (_, proxy):
        for _ in range(12):
            user = make_user()
            assert (
                await proxy.post(LOGIN, json={"email": user.email, "password": "typo"})
            ).status_code == 401
            assert (
                await proxy.post(LOGIN, json={"email": user.email, "password": user.password})
            ).status_code == 200
        first_timer = make_user()
        r = await proxy.post(LOGIN, json={"email": first_timer.email, "password": first_timer.password})
        assert r.status_code == 200, r.text


async def _concurrent_wrong_guesses(client: httpx.AsyncClient, email: str, n: int) -> list[int]:
    results = await asyncio.gather(
        *(client.post(LOGIN, json={"email": email, "password": f"guess-{i}"}) for i in range(n))
    )
    return [r.status_code for r in results]


async def test_concurrent_wrong_guesses_verify_at_most_the_free_budget(make_settings, make_user):
    """40 simultaneous wrong guesses at one account with 3 free failures: at most 3 + 1 are
    verified (401), every other one is refused before hashing (429); then the account is locked."""
    settings = make_settings(
        throttle_free_failures=3, throttle_base_delay=30.0, max_pending_logins=100, max_hash_wait_verifies=0
    )
    async with running_app(settings) as (_, client):
        user = make_user()
        statuses = await _concurrent_wrong_guesses(client, user.email, 40)
        assert statuses.count(401) <= 4, statuses
        assert statuses.count(401) + statuses.count(429) == 40, statuses
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 429


async def test_with_redis_down_each_process_still_verifies_at_most_the_free_budget(make_settings, make_user):
    """Breaking Redis does not buy unlimited parallel guesses: the in-process fallback reserves
    atomically too (the guarantee is per process)."""
    settings = make_settings(
        REDIS_URL="redis://127.0.0.1:1/0",
        throttle_free_failures=3,
        throttle_base_delay=30.0,
        max_pending_logins=100,
        max_hash_wait_verifies=0,
    )
    async with running_app(settings) as (_, client):
        user = make_user()
        statuses = await _concurrent_wrong_guesses(client, user.email, 40)
        assert statuses.count(401) <= 4, statuses
        assert statuses.count(401) + statuses.count(429) == 40, statuses


async def test_counts_seen_before_a_redis_outage_still_hold_during_it(
    make_settings, make_user, private_redis
):
    settings = make_settings(REDIS_URL=private_redis.url, throttle_free_failures=3, throttle_base_delay=30.0)
    async with running_app(settings) as (app, client):
        user = make_user()
        for i in range(3):
            r = await client.post(LOGIN, json={"email": user.email, "password": f"guess-{i}"})
            assert r.status_code == 401
        private_redis.stop()
        r = await client.post(LOGIN, json={"email": user.email, "password": "guess-3"})
        assert r.status_code == 401  # the 4th failure, counted in-process from the 3 Redis reported
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 429
        assert app.resources.redis.healthy is False


async def test_an_answer_without_a_verdict_is_not_counted_as_a_failure(
    make_settings, make_user, database_url
):
    """503s (database unreachable) refund their reservation: the user is not locked out by an
    outage. (A guard for the reservation, which counts an attempt before its verdict.)"""
    user = make_user()
    broken = make_settings(
        DATABASE_URL="postgresql://phoenix:phoenix@127.0.0.1:1/nowhere", throttle_free_failures=1
    )
    async with running_app(broken) as (_, client):
        for _ in range(4):
            r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
            assert r.status_code == 503
    async with running_app(make_settings(throttle_free_failures=1)) as (_, client):
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        assert r.status_code == 200, r.text
        assert r.json()["session"]["securityRisk"] == 0


async def test_every_forwarded_for_line_is_read(make_settings):
    """Behind a trusted proxy, a client's own X-Forwarded-For line comes first and the proxy's
    second: the client is the proxy's line's address, so it cannot pick its throttle key."""
    proxy = "10.77.0.1"
    settings = make_settings(
        throttle_ip_free_failures=2, throttle_base_delay=30.0, trusted_proxies="10.77.0.0/16"
    )
    async with running_app(settings, peer=proxy) as (_, client):
        for i in range(3):
            headers = [("X-Forwarded-For", f"192.0.2.{i}"), ("X-Forwarded-For", "203.0.113.50")]
            r = await client.post(LOGIN, json={"email": _ghost("xff"), "password": "p"}, headers=headers)
            assert r.status_code == 401
        throttled = await client.post(
            LOGIN,
            json={"email": _ghost("xff"), "password": "p"},
            headers=[("X-Forwarded-For", "192.0.2.99"), ("X-Forwarded-For", "203.0.113.50")],
        )
        assert throttled.status_code == 429
        # Another client behind the proxy that claims the attacker's spoofed address is not blocked.
        other = await client.post(
            LOGIN,
            json={"email": _ghost("xff"), "password": "p"},
            headers=[("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "203.0.113.51:4711")],
        )
        assert other.status_code == 401


async def test_ipv6_clients_are_counted_per_64(make_settings):
    """Rotating through the addresses of one /64 is one client; another /64 is another client."""
    settings = make_settings(throttle_ip_free_failures=3, throttle_base_delay=30.0)
    async with running_app(settings) as (app, _):
        for i in range(4):
            async with client_at(app, f"2001:db8:7:1::{i + 1:x}") as client:
                r = await client.post(LOGIN, json={"email": _ghost("v6"), "password": "p"})
                assert r.status_code == 401
        async with client_at(app, "2001:db8:7:1:ffff::99") as client:
            r = await client.post(LOGIN, json={"email": _ghost("v6"), "password": "p"})
            assert r.status_code == 429
        async with client_at(app, "::ffff:192.0.2.200") as mapped, client_at(app, "192.0.2.200") as plain:
            for _ in range(2):
                assert (
                    await mapped.post(LOGIN, json={"email": _ghost("v4"), "password": "p"})
                ).status_code == 401
                assert (
                    await plain.post(LOGIN, json={"email": _ghost("v4"), "password": "p"})
                ).status_code == 401
            assert (await plain.post(LOGIN, json={"email": _ghost("v4"), "password": "p"})).status_code == 429
        async with client_at(app, "2001:db8:7:2::1") as client:
            r = await client.post(LOGIN, json={"email": _ghost("v6"), "password": "p"})
            assert r.status_code == 401


async def test_logins_from_private_peers_without_trusted_proxies_are_counted(make_settings, make_user):
    """What the operator needs to warn that throttling sees a proxy, not the clients."""
    async with running_app(make_settings(), peer="10.96.0.12") as (app, client):
        user = make_user()
        await client.post(LOGIN, json={"email": user.email, "password": user.password})
        await client.post(LOGIN, json={"email": user.email, "password": "wrong"})
        async with client_at(app, "1.0.0.1") as public:  # (documentation ranges count as private)
            await public.post(LOGIN, json={"email": user.email, "password": user.password})
        health = (await client.get("/api/phoenix/health")).json()
        assert health["throttle"] == {"trustedProxies": 0, "untrustedPrivatePeerLogins": 2}
        metrics, _ = app.resources.metrics.render()  # what /metrics serves (on whichever listener)
        assert b"phoenix_login_untrusted_private_peer_total 2.0" in metrics
    settings = make_settings(trusted_proxies="10.96.0.0/16")
    async with running_app(settings, peer="10.96.0.12") as (_, client):
        await client.post(LOGIN, json={"email": _ghost("p"), "password": "p"})
        health = (await client.get("/api/phoenix/health")).json()
        assert health["throttle"] == {"trustedProxies": 1, "untrustedPrivatePeerLogins": 0}


async def test_the_redis_scripts_back_off_exactly_like_the_python_schedule(make_settings, redis_server):
    import redis.asyncio as aioredis

    from phoenix_auth.throttle import _BACKOFF_LUA, backoff_ms

    client = aioredis.Redis.from_url(redis_server.url)
    try:
        for free, lockout, base, cap in ((5, 20, 1000, 900_000), (3, 10, 50, 30_000), (50, 0, 1000, 900_000)):
            for n in range(0, 80):
                lua = await client.eval(
                    _BACKOFF_LUA + "return math.floor(backoff(tonumber(ARGV[1]), tonumber(ARGV[2]), "
                    "tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])))",
                    0,
                    n,
                    free,
                    lockout,
                    base,
                    cap,
                )
                assert lua == int(backoff_ms(n, free, lockout, base, cap)), (n, free, lockout)
    finally:
        await client.aclose()
