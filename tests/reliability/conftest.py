"""Fixtures of the reliability tests (faults, load, hostile input); helpers live in reltestkit.py.

- `private_pg` (session): a PostgreSQL cluster of our own (initdb in a temp dir, free port), so
  tests may stop and restart it while others use the shared cluster on 5432.
- `pg_database` (per test): a fresh migrated database in that cluster, as a URL.
- `private_redis` (per test): a redis-server of our own on a free port (kill/restart allowed).
- `start_server(env)`: a real `phoenix-auth serve` subprocess; always stopped at the end.
- `ensure_pg_running` (autouse): a test that stopped PostgreSQL and failed halfway does not
  break the next test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from reltestkit import PhoenixServer, PostgresUnavailable, PrivatePostgres, RedisServer


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        pg.start()
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture(autouse=True)
def ensure_pg_running(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "private_pg" in request.fixturenames:
        pg: PrivatePostgres = request.getfixturevalue("private_pg")
        if not pg.running():
            pg.start()


@pytest.fixture
def pg_database(private_pg: PrivatePostgres) -> str:
    return private_pg.create_database()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def start_server() -> Iterator[Callable[..., PhoenixServer]]:
    started: list[PhoenixServer] = []

    def start(env: dict[str, str], wait: bool = True) -> PhoenixServer:
        server = PhoenixServer(env)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.cleanup()
