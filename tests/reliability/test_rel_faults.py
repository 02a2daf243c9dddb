"""Faults with real processes: Redis killed, PostgreSQL crashed and restarted, pool exhausted.

Each test runs `phoenix-auth serve` as a subprocess against a PostgreSQL cluster and a Redis of
its own, drives bounded login and session-check load with httpx, breaks a dependency in the
middle, and then checks what users saw (status codes, error codes, Retry-After) and what is left
in PostgreSQL (nothing lost, nothing half-written).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import bcrypt
import httpx
import psycopg
import pytest
from argon2 import PasswordHasher as Argon2
from argon2.exceptions import VerificationError
from reltestkit import CLIENT_LIMITS, LoadRecorder, base_env, make_users, metric_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"
CLIENT_TIMEOUT = 10.0  # a request slower than this counts as a hang


def _client(server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT, limits=CLIENT_LIMITS)


def _bcrypt(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


async def _login(client: httpx.AsyncClient, rec: LoadRecorder, email: str, password: str) -> str | None:
    r = await rec.call("login", client.post(LOGIN, json={"email": email, "password": password}))
    if r is not None and r.status_code == 200:
        return r.json()["session"]["sessionId"]
    return None


async def _drive(
    client: httpx.AsyncClient,
    rec: LoadRecorder,
    users: list[tuple[str, str, str]],
    tokens: list[str],
    stop: asyncio.Event,
    worker: int,
    logins_every: int = 4,
) -> None:
    """One closed-loop client: mostly session checks, a login every `logins_every` requests."""
    rng = random.Random(worker)
    i = worker
    while not stop.is_set():
        i += 1
        if i % logins_every == 0:
            _, email, password = rng.choice(users)
            token = await _login(client, rec, email, password)
            if token:
                tokens.append(token)
        else:
            token = rng.choice(tokens)
            await rec.call("session", client.get(SESSION, headers={"Authorization": f"Bearer {token}"}))
        await asyncio.sleep(0.005)


async def test_redis_killed_under_load_serves_from_postgresql_and_refills(
    pg_database, private_redis, start_server
):
    # A small L1 (LRU) so most session checks go past it to L2: we can watch L2 stop and resume.
    server = start_server(base_env(pg_database, private_redis.url, PHOENIX_L1_MAX_ENTRIES="8"))
    users = make_users(pg_database, 12)
    rec = LoadRecorder()
    async with _client(server) as client:
        tokens = [t for _, e, p in users if (t := await _login(client, rec, e, p))]
        assert len(tokens) == len(users)
        stop = asyncio.Event()
        workers = [asyncio.create_task(_drive(client, rec, users, tokens, stop, w)) for w in range(6)]
        try:
            await asyncio.sleep(2.0)
            before = (await client.get(server.admin_url + "/metrics")).text
            l2_hits_before_kill = metric_value(
                before, "phoenix_cache_requests_total", layer="l2", result="hit"
            )
            t_kill = time.monotonic()
            private_redis.stop()  # SIGKILL
            await asyncio.sleep(3.0)
            health_down = (await client.get("/api/phoenix/health")).json()
            ready_down = await client.get("/readyz")
            down_metrics = (await client.get(server.admin_url + "/metrics")).text
            t_back = time.monotonic()
            private_redis.start()  # empty: no persistence
            # Load goes on; health must turn "healthy" again by itself (at most 10 s).
            healthy_after = None
            flaps = 0
            while time.monotonic() - t_back < 10:
                await asyncio.sleep(0.2)
                status = (await client.get("/api/phoenix/health")).json()["status"]
                if status == "healthy" and healthy_after is None:
                    healthy_after = time.monotonic() - t_back
                elif status != "healthy" and healthy_after is not None:
                    flaps += 1  # degraded again with Redis up: stale pooled connections
                if healthy_after is not None and time.monotonic() - t_back >= 4:
                    break
        finally:
            stop.set()
            await asyncio.gather(*workers)
        after = (await client.get(server.admin_url + "/metrics")).text
        health_after = (await client.get("/api/phoenix/health")).json()

        # Nobody noticed: every login and session check succeeded before, during and after.
        assert rec.by_status() == {200: len(rec.samples)}, [s for s in rec.samples if s.status != 200][:5]
        during = rec.between(t_kill, t_back)
        assert len(rec.between(t_kill, t_back, "login")) >= 5
        assert len(rec.between(t_kill, t_back, "session")) >= 20, len(during)
        # ...while the service knew it was degraded and stayed ready.
        assert ready_down.status_code == 200
        assert health_down["status"] == "degraded"
        assert health_down["cache"]["stats"]["redis"]["healthy"] is False
        assert metric_value(down_metrics, "phoenix_dependency_up", dependency="redis") == 0.0
        assert metric_value(down_metrics, "phoenix_degraded_operations_total", component="redis") > 0
        # The cache refilled once Redis returned: L2 hits resumed past the pre-kill count.
        assert l2_hits_before_kill > 0
        l2_hits_down = metric_value(down_metrics, "phoenix_cache_requests_total", layer="l2", result="hit")
        l2_hits_after = metric_value(after, "phoenix_cache_requests_total", layer="l2", result="hit")
        assert l2_hits_after > l2_hits_down + 10, (l2_hits_before_kill, l2_hits_down, l2_hits_after)
        assert healthy_after is not None, "health did not return to healthy within 10 s of Redis returning"
        assert healthy_after < 3.0 and flaps == 0, (healthy_after, flaps)
        assert health_after["status"] == "healthy"
        assert metric_value(after, "phoenix_dependency_up", dependency="redis") == 1.0

        # No session lost: every token ever issued is still valid, and PostgreSQL holds exactly them.
        for token in tokens:
            r = await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
    with psycopg.connect(pg_database) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM phoenix_sessions WHERE revoked_at IS NULL").fetchone()
    assert rows == len(tokens) == len(rec.samples) - len([s for s in rec.samples if s.kind == "session"])
    print(
        f"\nredis kill: {len(rec.samples)} requests, {len(during)} during the outage, all 200; "
        f"L2 hits before kill/down/after = {l2_hits_before_kill:.0f}/{l2_hits_down:.0f}/{l2_hits_after:.0f}; "
        f"healthy again {healthy_after:.1f}s after Redis returned; "
        f"{len(tokens)} sessions, all valid"
    )


async def test_postgresql_crash_restart_under_load_gives_clear_503s_and_recovers(
    private_pg, pg_database, private_redis, start_server
):
    server = start_server(base_env(pg_database, private_redis.url, PHOENIX_DB_POOL_TIMEOUT="1.0"))
    # Half the users have bcrypt hashes (a Prisma table): their first login rewrites the hash,
    # so a crash mid-load may interrupt password updates too.
    users = make_users(pg_database, 8) + make_users(pg_database, 8, hashed=_bcrypt, prefix="b")
    rec = LoadRecorder()
    async with _client(server) as client:
        tokens = [t for _, e, p in users[:4] if (t := await _login(client, rec, e, p))]
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(_drive(client, rec, users, tokens, stop, w, logins_every=2)) for w in range(6)
        ]
        try:
            await asyncio.sleep(2.0)
            t_down = time.monotonic()
            private_pg.stop("immediate")  # like a crash: no shutdown checkpoint, recovery on start
            await asyncio.sleep(3.0)
            ready_down = await client.get("/readyz")
            live_down = await client.get("/healthz")
            t_up = time.monotonic()
            private_pg.start()
            t_started = time.monotonic()
            # Automatic recovery: logins succeed again without touching the service.
            recovered_at = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                ok = [s for s in rec.between(t_started, time.monotonic(), "login") if s.status == 200]
                if ok:
                    recovered_at = ok[0].started
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            await asyncio.gather(*workers)
        ready_after = await client.get("/readyz")

        statuses = rec.by_status()
        failures = [s for s in rec.samples if s.status != 200]
        # Only clear, retryable 503s; no 500, no transport error, no hang.
        assert set(statuses) <= {200, 503}, statuses
        assert failures, "the outage was not visible at all: was PostgreSQL really stopped?"
        for s in failures:
            assert s.error in {"DATABASE_UNAVAILABLE", "POOL_EXHAUSTED"}, s
            assert s.message and s.retry_after and int(s.retry_after) >= 1, s
        assert max(s.latency for s in rec.samples) < 5.0
        # 503s only around the outage.
        assert all(t_down - 0.5 <= s.started <= (recovered_at or time.monotonic()) + 1 for s in failures)
        assert ready_down.status_code == 503 and ready_down.json()["ready"] is False
        assert live_down.status_code == 200
        assert recovered_at is not None, "logins did not recover within 20 s of PostgreSQL's restart"
        assert ready_after.status_code == 200
        recovery = recovered_at - t_started

        # Nothing lost: every session handed out is valid after the restart.
        for token in tokens:
            r = await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text

    # Nothing half-written: one session row per successful login, each joined to a user, and every
    # user's hash (rewritten or not) still verifies with that user's password.
    logins_ok = len([s for s in rec.samples if s.kind == "login" and s.status == 200])
    with psycopg.connect(pg_database) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM phoenix_sessions").fetchone()
        (orphans,) = conn.execute(
            "SELECT count(*) FROM phoenix_sessions s LEFT JOIN users u ON u.id = s.user_id WHERE u.id IS NULL"
        ).fetchone()
        hashes = dict(conn.execute("SELECT email, hashed_password FROM users").fetchall())
    assert rows == logins_ok, (rows, logins_ok)
    assert orphans == 0
    argon2 = Argon2()
    rehashed = 0
    for _, email, password in users:
        digest = hashes[email]
        if digest.startswith("$2"):
            assert bcrypt.checkpw(password.encode(), digest.encode()), email
        else:
            with contextlib.suppress(VerificationError):
                assert argon2.verify(digest, password), email
            rehashed += email.startswith("b-")
    assert rehashed > 0  # bcrypt users logged in and were rewritten to argon2id
    log = server.output()
    assert "database unreachable" in log and "database reachable" in log
    print(
        f"\npostgres crash: {len(rec.samples)} requests, {len(failures)} clear 503s "
        f"({ {s.error for s in failures} }), outage {t_up - t_down:.1f}s, logins back "
        f"{recovery:.2f}s after pg_ctl start returned; {rows} sessions == {logins_ok} successful logins; "
        f"{rehashed} bcrypt users rewritten, every hash verifies"
    )


async def test_pool_exhausted_gives_bounded_503_pool_exhausted_never_a_hang(
    pg_database, private_redis, start_server
):
    server = start_server(
        base_env(
            pg_database,
            private_redis.url,
            PHOENIX_MAX_DB_CONNECTIONS="2",
            PHOENIX_MIN_DB_CONNECTIONS="2",
            PHOENIX_DB_POOL_TIMEOUT="0.5",
            PHOENIX_DB_STATEMENT_TIMEOUT_MS="8000",
            PHOENIX_MAX_HASH_WAIT_VERIFIES="0",  # 18 logins at once must all reach the pool
        )
    )
    users = make_users(pg_database, 20)
    rec = LoadRecorder()
    async with _client(server) as client:
        for _, e, p in users[:2]:
            assert await _login(client, rec, e, p)
        # A slow database: another application holds a lock on the sessions table, so each
        # login's INSERT holds its pooled connection while it waits.
        with psycopg.connect(pg_database) as locker:
            locker.execute("LOCK TABLE phoenix_sessions IN ACCESS EXCLUSIVE MODE")
            t_lock = time.monotonic()
            burst = [
                asyncio.create_task(_login(client, rec, e, p))
                for _, e, p in users[2:]  # 18 concurrent logins for 2 connections
            ]
            await asyncio.sleep(0.3)
            during = (await client.get(server.admin_url + "/metrics")).text
            health = (await client.get("/api/phoenix/health")).json()
            await asyncio.sleep(1.5)
            locker.rollback()  # release the lock
            t_release = time.monotonic()
        await asyncio.gather(*burst)
        after_release = [await _login(client, rec, e, p) for _, e, p in users[2:6]]

    burst_samples = rec.between(t_lock, t_release, "login")
    exhausted = [s for s in burst_samples if s.status == 503]
    assert exhausted, rec.by_status(burst_samples)
    for s in exhausted:
        assert s.error == "POOL_EXHAUSTED" and s.message, s
        assert s.retry_after is not None and int(s.retry_after) >= 1
        assert 0.4 <= s.latency < 2.0, s.latency  # waited the pool timeout (0.5 s), then answered
    # The two logins holding connections finished once the lock was released: slow, not lost.
    assert {s.status for s in burst_samples} <= {200, 503}
    assert max(s.latency for s in rec.samples) < CLIENT_TIMEOUT
    assert metric_value(during, "phoenix_db_pool_connections", state="in_use") == 2.0
    assert metric_value(during, "phoenix_db_pool_connections", state="waiting") >= 1.0
    assert health["database"]["metrics"]["waitingRequests"] >= 1
    assert all(after_release), "logins did not recover after the pool drained"
    print(
        f"\npool exhausted: {len(burst_samples)} concurrent logins on 2 connections -> "
        f"{rec.by_status(burst_samples)}; 503 latency {min(s.latency for s in exhausted):.2f}-"
        f"{max(s.latency for s in exhausted):.2f}s; waiting gauge "
        f"{metric_value(during, 'phoenix_db_pool_connections', state='waiting'):.0f}"
    )


async def test_statement_timeout_is_a_clear_503_and_does_not_mark_the_database_down(
    pg_database, private_redis, start_server
):
    """A slow query (here: a table locked by another application) is cancelled by
    PHOENIX_DB_STATEMENT_TIMEOUT_MS and answered 503 with Retry-After; the database is reachable
    all along, so it must not be reported as down (log, metric) and nothing else is refused."""
    server = start_server(base_env(pg_database, private_redis.url, PHOENIX_DB_STATEMENT_TIMEOUT_MS="300"))
    users = make_users(pg_database, 3)
    rec = LoadRecorder()
    async with _client(server) as client:
        token = await _login(client, rec, users[0][1], users[0][2])
        assert token
        with psycopg.connect(pg_database) as locker:
            locker.execute("LOCK TABLE phoenix_sessions IN ACCESS EXCLUSIVE MODE")
            assert await _login(client, rec, users[1][1], users[1][2]) is None
            during = (await client.get(server.admin_url + "/metrics")).text
            ready = await client.get("/readyz")
            locker.rollback()
        assert await _login(client, rec, users[2][1], users[2][2])
    timed_out = rec.samples[1]
    assert timed_out.status == 503 and timed_out.error == "DATABASE_UNAVAILABLE", timed_out
    assert timed_out.message and timed_out.retry_after and int(timed_out.retry_after) >= 1
    assert 0.25 <= timed_out.latency < 2.0, timed_out.latency
    assert ready.status_code == 200
    assert metric_value(during, "phoenix_dependency_up", dependency="database") == 1.0
    assert "database unreachable" not in server.output()


async def test_outside_expiry_and_disable_leave_no_stale_cache_entry(
    pg_database, private_redis, start_server
):
    """Another application expires a session (or disables its user) and a check arrives together with
    the NOTIFY: the check may still see the old state, but 0.3 s later the session must be refused,
    and stay refused. (A check that read L2 between the NOTIFY's L1 drop and its queued L2 delete used
    to refill L1 with the stale record, valid for the whole cache TTL: fixed in cache.delete_l2.)"""
    server = start_server(base_env(pg_database, private_redis.url))
    users = make_users(pg_database, 12)
    rec = LoadRecorder()
    stale: list[str] = []
    async with _client(server) as client:
        tokens = [t for _, e, p in users if (t := await _login(client, rec, e, p))]
        with psycopg.connect(pg_database, autocommit=True) as conn:
            for i, token in enumerate(tokens):
                bearer = {"Authorization": f"Bearer {token}"}
                assert (await client.get(SESSION, headers=bearer)).status_code == 200  # cached in L1 and L2
                if i % 3 == 0:
                    conn.execute("UPDATE users SET disabled = true WHERE id = %s", (users[i][0],))
                else:
                    # Every earlier session too: several NOTIFYs arrive in one batch.
                    conn.execute(
                        "UPDATE phoenix_sessions SET expires_at = now() - interval '1 s' WHERE user_id = ANY(%s)",  # noqa: E501
                        ([u[0] for u in users[: i + 1]],),
                    )
                await client.get(SESSION, headers=bearer)  # races the NOTIFY
                await asyncio.sleep(0.3)
                for _ in range(3):
                    if (await client.get(SESSION, headers=bearer)).status_code != 401:
                        stale.append(token)
                        break
    assert not stale, f"{len(stale)} of {len(tokens)} expired/disabled sessions still valid from cache"
