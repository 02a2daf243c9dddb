"""Fixtures of the auth integration tests; helpers live in authtestkit.py (see its docstring)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from authtestkit import (
    ADMIN_URL,
    FAST_ARGON2,
    TEST_SIGNING_KEY,
    AuthUser,
    RedisServer,
    ServiceProcess,
    fast_hash,
    migrated_database,
    running_app,
)

from phoenix_auth.settings import Settings


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with migrated_database(ADMIN_URL) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, for tests that kill or flush it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def make_settings(database_url: str, redis_server: RedisServer) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            "summary_interval": 0,
            "hash_threads": 2,
            "max_db_connections": 4,
            "min_db_connections": 1,
            "log_level": "INFO",
            "cache_signing_key": TEST_SIGNING_KEY,
            **FAST_ARGON2,
        }
        for alias, name in (("DATABASE_URL", "database_url"), ("REDIS_URL", "redis_url")):
            if name in overrides:
                values[alias] = overrides.pop(name)
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
async def app_client(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async with running_app(make_settings()) as pair:
        yield pair


@pytest.fixture
def make_user(database_url: str) -> Callable[..., AuthUser]:
    def create(
        password: str | None = None,
        hashed: str | None = None,
        email: str | None = None,
        role: str = "user",
        name: str | None = "Test User",
        team: str | None = "Team A",
        disabled: bool = False,
    ) -> AuthUser:
        password = password or secrets.token_urlsafe(12)
        email = email or f"u-{uuid.uuid4().hex[:12]}@example.com"
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO users (email, name, role, hashed_password, team_name, disabled) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (email, name, role, hashed or fast_hash(password), team, disabled),
            ).fetchone()
        assert row is not None
        return AuthUser(id=row[0], email=email, password=password)

    return create


@pytest.fixture
def sql(database_url: str) -> Callable[..., list[tuple[Any, ...]]]:
    """Run one statement as an outside application would (own connection, autocommit)."""

    def run(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    return run


# --------------------------------------------------------------------------- real server processes
@pytest.fixture
def start_service() -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(env: dict[str, str], workers: int = 1, wait: bool = True) -> ServiceProcess:
        svc = ServiceProcess(env, workers)
        started.append(svc)
        if wait:
            svc.wait_ready()
        return svc

    try:
        yield start
    finally:
        for svc in started:
            svc.cleanup()
