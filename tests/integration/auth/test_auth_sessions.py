"""Sessions: validation by Bearer or cookie, logout, admin revocation, durability without Redis state."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis
from authtestkit import admin_client, running_app

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"
ADMIN_TOKEN = "s3cret-admin-token-value-of-32-bytes+"


async def _login(client, user) -> str:
    r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
    assert r.status_code == 200, r.text
    return r.json()["session"]["sessionId"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_session_by_bearer_and_by_cookie_then_served_from_l1(app_client, make_user, sql):
    app, client = app_client
    user = make_user(role="editor")
    token = await _login(client, user)
    # Only the SHA-256 of the token is stored.
    rows = sql("SELECT token_hash FROM phoenix_sessions WHERE user_id = %s", (user.id,))
    assert [bytes(r[0]) for r in rows] == [hashlib.sha256(token.encode()).digest()]
    r = await client.get(SESSION, headers=_bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["user"]["role"] == "editor" and r.json()["user"]["id"] == user.id
    # The login response set the cookie on the client: a cookie-only request works too.
    assert client.cookies.get("__Host-phoenix_session") == token
    r = await client.get(SESSION)
    assert r.status_code == 200
    client.cookies.clear()
    queries_before = app.resources.metrics.stats.db_queries
    for _ in range(20):
        r = await client.get(SESSION, headers=_bearer(token))
        assert r.status_code == 200
        assert r.json()["performance"]["cacheHits"] == 2  # session and user both from L1
    assert app.resources.metrics.stats.db_queries == queries_before  # the hot path did no database I/O


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "SESSION_REQUIRED"),
        ({"Authorization": "Bearer "}, "SESSION_REQUIRED"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "SESSION_REQUIRED"),
        ({"Authorization": "Bearer not-a-token"}, "INVALID_SESSION"),
        ({"Authorization": "Bearer " + "A" * 43}, "INVALID_SESSION"),  # well-formed but forged
        ({"Authorization": "Bearer " + "A" * 43 + "' OR 1=1 --"}, "INVALID_SESSION"),
    ],
)
async def test_missing_or_forged_tokens_are_401(app_client, headers, code):
    _, client = app_client
    r = await client.get(SESSION, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == code
    assert "www-authenticate" in r.headers


async def test_logout_revokes_and_clears_cookie(app_client, make_user):
    _, client = app_client
    user = make_user()
    token = await _login(client, user)
    assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200
    r = await client.post("/api/auth/logout", headers=_bearer(token))
    assert r.status_code == 200 and r.json() == {"revoked": True}
    cleared = r.headers["set-cookie"]
    assert cleared.startswith("__Host-phoenix_session=") and ('=""' in cleared or "Max-Age=0" in cleared)
    r = await client.get(SESSION, headers=_bearer(token))
    assert r.status_code == 401 and r.json()["error"] == "INVALID_SESSION"
    # Replaying the logout is harmless.
    r = await client.post("/api/auth/logout", headers=_bearer(token))
    assert r.status_code == 200 and r.json() == {"revoked": False}
    r = await client.post("/api/auth/logout")
    assert r.status_code == 401 and r.json()["error"] == "SESSION_REQUIRED"


async def test_expired_session_is_rejected(app_client, make_user, sql):
    _, client = app_client
    user = make_user()
    token = await _login(client, user)
    assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200
    sql("UPDATE phoenix_sessions SET expires_at = now() - interval '1 second' WHERE user_id = %s", (user.id,))
    await asyncio.sleep(0.3)  # the UPDATE's NOTIFY drops the cached copy
    r = await client.get(SESSION, headers=_bearer(token))
    assert r.status_code == 401 and r.json()["error"] == "INVALID_SESSION"


async def test_session_survives_redis_flushall(make_settings, make_user, private_redis):
    settings = make_settings(REDIS_URL=private_redis.url, l1_max_entries=0)  # force L2/PostgreSQL paths
    async with running_app(settings) as (app, client):
        user = make_user()
        token = await _login(client, user)
        assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200
        for _ in range(50):  # the L2 sweep after the listener connects must have finished
            if app.resources.cache.use_l2:
                break
            await asyncio.sleep(0.1)
        r = await client.get(SESSION, headers=_bearer(token))
        assert r.json()["performance"]["cacheHits"] >= 1  # served from Redis
        redis.Redis.from_url(private_redis.url).flushall()
        r = await client.get(SESSION, headers=_bearer(token))
        assert r.status_code == 200 and r.json()["user"]["id"] == user.id
        assert r.json()["performance"]["cacheHits"] == 0  # from PostgreSQL


async def test_admin_revokes_all_sessions_of_a_user(make_settings, make_user):
    settings = make_settings(admin_token=ADMIN_TOKEN)
    async with running_app(settings) as (app, client), admin_client(app) as admin:
        user = make_user()
        tokens = [await _login(client, user) for _ in range(3)]
        path = f"/api/auth/admin/users/{user.id}/revoke-sessions"
        r = await admin.post(path)
        assert r.status_code == 401 and r.json()["error"] == "ADMIN_UNAUTHORIZED"
        r = await admin.post(path, headers=_bearer(ADMIN_TOKEN[:-1] + "X"))
        assert r.status_code == 401
        r = await admin.post(
            "/api/auth/admin/users/no-such-user/revoke-sessions", headers=_bearer(ADMIN_TOKEN)
        )
        assert r.status_code == 404 and r.json()["error"] == "USER_NOT_FOUND"
        # The public port does not serve the admin API, even with the right token.
        r = await client.post(path, headers=_bearer(ADMIN_TOKEN))
        assert r.status_code == 404 and r.json()["error"] == "NOT_FOUND"
        r = await admin.post(path, headers=_bearer(ADMIN_TOKEN))
        assert r.status_code == 200 and r.json() == {"userId": user.id, "revoked": 3}
        await asyncio.sleep(0.3)
        for token in tokens:
            r = await client.get(SESSION, headers=_bearer(token))
            assert r.status_code == 401


async def test_revoked_sessions_are_refused_by_the_revoking_replica_at_once(make_settings, make_user):
    """The answer to revoke-sessions comes after this replica dropped the sessions from its caches:
    a check sent right after it is refused, without waiting for the NOTIFY to come round."""
    settings = make_settings(admin_token=ADMIN_TOKEN)
    async with running_app(settings) as (app, client), admin_client(app) as admin:
        user = make_user()
        tokens = [await _login(client, user) for _ in range(3)]
        for token in tokens:  # each now cached in L1
            assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200
        for token in tokens:
            r = await client.get(SESSION, headers=_bearer(token))
            assert r.json()["performance"]["cacheHits"] >= 1
        r = await admin.post(f"/api/auth/admin/users/{user.id}/revoke-sessions", headers=_bearer(ADMIN_TOKEN))
        assert r.status_code == 200 and r.json()["revoked"] == 3
        answers = [(await client.get(SESSION, headers=_bearer(token))).status_code for token in tokens]
        assert answers == [401, 401, 401]


async def test_admin_api_disabled_without_token(app_client):
    app, _ = app_client
    async with admin_client(app) as admin:
        r = await admin.post("/api/auth/admin/users/x/revoke-sessions", headers=_bearer("anything"))
    assert r.status_code == 403 and r.json()["error"] == "ADMIN_API_DISABLED"


async def test_disabling_or_deleting_a_user_invalidates_cached_sessions(app_client, make_user, sql):
    _, client = app_client
    a, b = make_user(), make_user()
    ta, tb = await _login(client, a), await _login(client, b)
    for t in (ta, tb):
        assert (await client.get(SESSION, headers=_bearer(t))).status_code == 200  # now cached in L1
    sql("UPDATE users SET disabled = true WHERE id = %s", (a.id,))
    sql("DELETE FROM users WHERE id = %s", (b.id,))
    await asyncio.sleep(0.3)
    assert (await client.get(SESSION, headers=_bearer(ta))).status_code == 401
    assert (await client.get(SESSION, headers=_bearer(tb))).status_code == 401


async def test_a_password_changed_by_another_app_ends_existing_sessions(app_client, make_user, sql):
    """Another app's plain UPDATE of the hash (it knows nothing of password_changed_at) must end
    sessions opened with the old password, even those cached in L1, while a login with the new
    password works."""
    _, client = app_client
    user = make_user(password="old password")
    token = await _login(client, user)
    assert (await client.get(SESSION, headers=_bearer(token))).status_code == 200  # cached in L1
    (new_hash,) = sql("SELECT hashed_password FROM users WHERE id = %s", (make_user(password="new pw").id,))[
        0
    ]
    sql("UPDATE users SET hashed_password = %s WHERE id = %s", (new_hash, user.id))
    await asyncio.sleep(0.3)
    r = await client.get(SESSION, headers=_bearer(token))
    assert r.status_code == 401 and r.json()["error"] == "INVALID_SESSION"
    r = await client.post(LOGIN, json={"email": user.email, "password": "new pw"})
    assert r.status_code == 200
    fresh = r.json()["session"]["sessionId"]
    assert (await client.get(SESSION, headers=_bearer(fresh))).status_code == 200


def test_phoenix_rehash_is_not_a_password_change(make_user, sql):
    """The bcrypt -> argon2id upgrade keeps password_changed_at (sessions live on); any other
    change of the hash moves it."""
    from phoenix_auth.db import SQL_REHASH

    user = make_user()
    (before, old_hash) = sql(
        "SELECT password_changed_at, hashed_password FROM users WHERE id = %s", (user.id,)
    )[0]
    sql(SQL_REHASH, ("$argon2id$rehashed", user.id, old_hash))
    (after, stored) = sql("SELECT password_changed_at, hashed_password FROM users WHERE id = %s", (user.id,))[
        0
    ]
    assert stored == "$argon2id$rehashed" and after == before
    sql("UPDATE users SET hashed_password = 'other' WHERE id = %s", (user.id,))
    (moved,) = sql("SELECT password_changed_at FROM users WHERE id = %s", (user.id,))[0]
    assert moved > before
