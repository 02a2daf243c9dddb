"""The runtime role of docs/operator.md is all `phoenix-auth serve` needs, and it cannot undo the schema.

A database of its own, owned by an owner role that runs `phoenix-auth migrate`; a runtime role that
gets exactly the GRANT block docs/operator.md shows (read from the doc, so the doc is what is
tested) after the owner revoked PUBLIC's rights on the database and schema. The service then runs
as the runtime role through every path that touches PostgreSQL: start-up (pool, hash-kind census,
LISTEN), logins (argon2id, and bcrypt with its rehash), session checks, logout, the admin
revocation, and an invalidation NOTIFY from another writer. Then the runtime role tries what a
compromised auth pod would: drop or disable the password-change trigger, replace its function,
move password_changed_at, delete users, create tables. Each is refused.

Roles are cluster-wide in PostgreSQL and the test user may not create them, so they are made by
the `postgres` superuser (`runuser`, as tests/e2e do) under unique names, and dropped after.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import psycopg
import pytest
from authtestkit import ADMIN_URL, admin_client, fast_hash, running_app, session_count
from psycopg import errors, sql

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[3] / "docs" / "operator.md"
MARKER = "-- phoenix-auth runtime role"
DOC_ROLE = "phoenix_runtime"
LOGIN, SESSION, LOGOUT = "/api/auth/phoenix", "/api/auth/session", "/api/auth/logout"
ADMIN_TOKEN = "runtime-role-admin-token-" + secrets.token_hex(16)


def documented_grants(role: str) -> str:
    """The SQL block of docs/operator.md that starts with MARKER, for `role`."""
    text = DOCS.read_text()
    assert f"```sql\n{MARKER}" in text, "docs/operator.md has no runtime-role GRANT block"
    block = text.split(f"```sql\n{MARKER}", 1)[1].split("```", 1)[0]
    return (MARKER + block).replace(DOC_ROLE, role)


def as_postgres(statement: str) -> None:
    """Run `statement` as PostgreSQL's superuser (the test's own user may not create roles)."""
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qAtc", statement],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


@dataclass
class Roles:
    owner_url: str
    runtime_url: str
    runtime: str


def _url(role: str, password: str, database: str) -> str:
    base = ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]  # host:port of the test PostgreSQL
    return f"postgresql://{role}:{password}@{base}/{database}"


@pytest.fixture
def roles() -> Iterator[Roles]:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        reason = "needs root to run psql as the postgres superuser (roles cannot be created otherwise)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    suffix = secrets.token_hex(4)
    owner, runtime, database = f"phx_owner_{suffix}", f"phx_runtime_{suffix}", f"phoenix_t_roles_{suffix}"
    owner_pw, runtime_pw = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    try:
        as_postgres(f"CREATE ROLE {owner} LOGIN PASSWORD '{owner_pw}'")
        as_postgres(f"CREATE ROLE {runtime} LOGIN PASSWORD '{runtime_pw}'")
        as_postgres(f"CREATE DATABASE {database} OWNER {owner} TEMPLATE template0")
        owner_url = _url(owner, owner_pw, database)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            # Nothing by default: without this the runtime role would also have PUBLIC's rights.
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
            conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        from phoenix_auth import migrations

        migrations.run_migrate(owner_url, log=lambda _line: None)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute(documented_grants(runtime))
        yield Roles(owner_url, _url(runtime, runtime_pw, database), runtime)
    finally:
        as_postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        as_postgres(f"DROP ROLE IF EXISTS {runtime}; DROP ROLE IF EXISTS {owner};")


def add_user(owner_url: str, hashed: str) -> str:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO users (email, name, hashed_password) VALUES (%s, 'R', %s) RETURNING id",
            (f"r-{secrets.token_hex(6)}@example.com", hashed),
        ).fetchone()
    assert row is not None
    return str(row[0])


def email_of(owner_url: str, user_id: str) -> str:
    with psycopg.connect(owner_url) as conn:
        row = conn.execute("SELECT email FROM users WHERE id = %s", (user_id,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_the_service_runs_with_only_the_documented_grants(roles, make_settings, caplog):
    caplog.set_level(logging.WARNING, logger="phoenix_auth")
    password = "correct horse battery"
    argon_id = add_user(roles.owner_url, fast_hash(password))
    legacy_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    bcrypt_id = add_user(roles.owner_url, legacy_hash)
    revoked_id = add_user(roles.owner_url, fast_hash(password))
    disabled_id = add_user(roles.owner_url, fast_hash(password))
    settings = make_settings(DATABASE_URL=roles.runtime_url, admin_token=ADMIN_TOKEN)

    async def login(user_id: str) -> str:
        r = await client.post(LOGIN, json={"email": email_of(roles.owner_url, user_id), "password": password})
        assert r.status_code == 200, r.text
        client.cookies.clear()
        return str(r.json()["session"]["sessionId"])

    async def check(token: str) -> int:
        return (await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})).status_code

    async with running_app(settings) as (app, client):
        # Start-up ran the hash-kind census as the runtime role (it saw the bcrypt hash).
        assert "bcrypt$4" in app.resources.hasher.present_kinds
        # Login, session check, logout.
        token = await login(argon_id)
        assert await check(token) == 200
        r = await client.post(LOGOUT, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["revoked"] is True
        assert await check(token) == 401
        # A bcrypt user logs in and is rehashed to argon2id (UPDATE users, the trigger left alone).
        token = await login(bcrypt_id)
        with psycopg.connect(roles.owner_url) as conn:
            stored = conn.execute("SELECT hashed_password FROM users WHERE id = %s", (bcrypt_id,)).fetchone()
        assert stored is not None and stored[0].startswith("$argon2id$")
        assert await check(token) == 200  # the rehash is not a password change: the session lives
        # The admin API revokes every session of a user.
        token = await login(revoked_id)
        async with admin_client(app) as admin:
            r = await admin.post(
                f"/api/auth/admin/users/{revoked_id}/revoke-sessions",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        assert r.status_code == 200 and r.json()["revoked"] == 1, r.text
        assert await check(token) == 401
        # Another writer disables a user: the NOTIFY reaches the service's LISTEN connection.
        token = await login(disabled_id)
        assert await check(token) == 200
        with psycopg.connect(roles.owner_url, autocommit=True) as conn:
            conn.execute("UPDATE users SET disabled = true WHERE id = %s", (disabled_id,))
        for _ in range(50):
            if await check(token) == 401:
                break
            await asyncio.sleep(0.1)
        assert await check(token) == 401
        # A wrong password: its session was opened beside the hash and is discarded.
        assert app.resources.sessions.opens_early()
        before = session_count(roles.owner_url, argon_id)
        r = await client.post(LOGIN, json={"email": email_of(roles.owner_url, argon_id), "password": "wrong"})
        assert r.status_code == 401, r.text
        for _ in range(50):  # the discard runs after the answer
            if session_count(roles.owner_url, argon_id) == before:
                break
            await asyncio.sleep(0.05)
        assert session_count(roles.owner_url, argon_id) == before
        health = (await client.get("/api/phoenix/health")).json()
        assert health["database"]["healthy"] is True
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in problems if "census" in m or "permission" in m.lower() or "discard" in m], problems


def test_the_runtime_role_discards_only_a_young_live_session(roles):
    """The one DELETE it has: a row of a given token, not revoked, at most ten minutes old."""
    user_id = add_user(roles.owner_url, fast_hash("pw"))
    rows = {name: secrets.token_bytes(32) for name in ("young", "old", "revoked")}
    with psycopg.connect(roles.owner_url, autocommit=True) as conn:
        for name, digest in rows.items():
            conn.execute(
                "INSERT INTO phoenix_sessions (token_hash, user_id, created_at, expires_at, revoked_at) "
                "VALUES (%s, %s, now() - %s::interval, now() + interval '1 day', "
                "CASE WHEN %s THEN now() END)",
                (digest, user_id, "11 minutes" if name == "old" else "1 second", name == "revoked"),
            )
    with psycopg.connect(roles.runtime_url, autocommit=True) as conn:
        answers = {
            name: conn.execute("SELECT phoenix_discard_session(%s)", (digest,)).fetchone()
            for name, digest in rows.items()
        }
    assert answers == {"young": (True,), "old": (False,), "revoked": (False,)}
    assert session_count(roles.owner_url, user_id) == 2


REFUSED = [
    "DROP TRIGGER phoenix_users_password_changed ON users",
    "ALTER TABLE users DISABLE TRIGGER phoenix_users_password_changed",
    "ALTER TABLE users DISABLE TRIGGER ALL",
    "CREATE OR REPLACE FUNCTION phoenix_password_changed() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN NEW; END $$",
    "DROP FUNCTION phoenix_password_changed() CASCADE",
    "UPDATE users SET password_changed_at = now() - interval '1 day'",
    "DELETE FROM users",
    "DELETE FROM phoenix_sessions",
    "DROP FUNCTION phoenix_discard_session(bytea)",
    "CREATE OR REPLACE FUNCTION phoenix_discard_session(hash bytea) RETURNS boolean LANGUAGE sql "
    "AS $$ SELECT true $$",
    "TRUNCATE phoenix_sessions",
    "CREATE TABLE phoenix_x (id int)",
    "SELECT created_at FROM users",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_the_runtime_role_cannot_undo_the_schema(roles, statement):
    add_user(roles.owner_url, fast_hash("pw"))
    with (
        psycopg.connect(roles.runtime_url, autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute(statement)
    with psycopg.connect(roles.owner_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_trigger "
            "WHERE tgname = 'phoenix_users_password_changed' AND tgenabled = 'O'"
        ).fetchone()
    assert row == (1,)  # the trigger is still there and enabled
