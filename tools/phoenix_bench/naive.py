"""The "before" path of the seed's table, as a small ASGI app on the same server stack.

What a typical NextAuth/Prisma login did before Phoenix, written down so it can be measured:
- a new PostgreSQL connection for every request (no pool, so nothing is ever prepared);
- the user looked up case-insensitively in a copy of the users table that has no index on
  email (only its primary key on id), as `mode: "insensitive"` / ILIKE lookups do: a scan;
- no cache of any kind; session validation is one plain query per request on a new connection;
- the SAME argon2id hashing as Phoenix (same `PasswordHasher`, same parameters, same thread
  pool), so the difference measured is the data path, not the hash.

The tables (`bench_naive_users`, `bench_naive_sessions`) are prepared by `dataset.py`; this app
never touches Phoenix's own tables.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from phoenix_auth.passwords import PasswordHasher
from phoenix_auth.settings import Settings

USERS_TABLE = "bench_naive_users"
SESSIONS_TABLE = "bench_naive_sessions"

# Table names are literals (not interpolated) so the SQL is plainly constant.
LOGIN_SQL = (
    "SELECT id, email, name, role, hashed_password, team_name, disabled "
    "FROM bench_naive_users WHERE lower(email) = lower(%s)"
)
INSERT_SESSION_SQL = "INSERT INTO bench_naive_sessions (token_hash, user_id, expires_at) VALUES (%s, %s, %s)"
SESSION_SQL = (
    "SELECT u.id, u.email, u.name, u.role, u.team_name FROM bench_naive_sessions s "
    "JOIN bench_naive_users u ON u.id = s.user_id "
    "WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > now() AND NOT u.disabled"
)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def login(request: Request) -> Response:
    started = time.perf_counter()
    try:
        payload = json.loads(await request.body())
        email, password = payload["email"], payload["password"]
        if not isinstance(email, str) or not isinstance(password, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return _error(400, "INVALID_REQUEST", "body must be JSON with string email and password")
    settings: Settings = request.app.state.settings
    hasher: PasswordHasher = request.app.state.hasher
    db_time = 0.0
    t = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(settings.database_url.get_secret_value()) as conn:
        row = await (await conn.execute(LOGIN_SQL, (email,))).fetchone()
        db_time += time.perf_counter() - t
        t_verify = time.perf_counter()
        ok = await hasher.verify_async(row[4] if row else None, password)
        verify_ms = (time.perf_counter() - t_verify) * 1000
        if not ok or row is None or row[6]:
            return _error(401, "INVALID_CREDENTIALS", "invalid email or password")
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=settings.session_ttl)
        t = time.perf_counter()
        await conn.execute(INSERT_SESSION_SQL, (token_hash(token), row[0], expires))
        await conn.commit()
        db_time += time.perf_counter() - t
    total_ms = (time.perf_counter() - started) * 1000
    db_ms = db_time * 1000
    return JSONResponse(
        {
            "user": {"id": row[0], "email": row[1], "name": row[2], "role": row[3], "teamName": row[5]},
            "session": {"sessionId": token, "expiresAt": int(expires.timestamp() * 1000), "securityRisk": 0},
            "performance": {"totalTime": round(total_ms, 3), "databaseTime": round(db_ms, 3), "cacheHits": 0},
        },
        headers={
            "Server-Timing": f"db;dur={db_ms:.2f}, verify;dur={verify_ms:.2f}, total;dur={total_ms:.2f}"
        },
    )


async def session(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return _error(401, "NO_SESSION", "missing bearer token")
    settings: Settings = request.app.state.settings
    async with await psycopg.AsyncConnection.connect(settings.database_url.get_secret_value()) as conn:
        row = await (await conn.execute(SESSION_SQL, (token_hash(auth[7:].strip()),))).fetchone()
    if row is None:
        return _error(401, "INVALID_SESSION", "session unknown, expired or revoked")
    return JSONResponse(
        {"user": {"id": row[0], "email": row[1], "name": row[2], "role": row[3], "teamName": row[4]}}
    )


async def noop(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_naive_app(settings: Settings | None = None) -> Starlette:
    """The naive app; `settings` defaults to one read from the environment (uvicorn factory use)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.hasher = PasswordHasher(settings)
        try:
            yield
        finally:
            app.state.hasher.close()

    return Starlette(
        routes=[
            Route("/api/auth/login", login, methods=["POST"]),
            Route("/api/auth/phoenix", login, methods=["POST"]),
            Route("/api/auth/session", session, methods=["GET"]),
            Route("/noop", noop, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
