"""Fixtures for migration and admin-CLI tests: a private PostgreSQL database per test.

Each test gets `phoenix_t_h2_<random>` (created from template0, dropped WITH (FORCE) after), so
tests of other engineers running at the same time never see these tables, locks or NOTIFYs.
The maintenance connection only runs CREATE/DROP DATABASE; it never touches a shared table.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from phoenix_testkit.databases import drop_database

ADMIN_URL = os.environ.get("PHOENIX_TEST_PG_URL", "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix")


def _url_for(dbname: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture
def db_url() -> Iterator[str]:
    """URL of a fresh, empty, uniquely named database; dropped after the test."""
    name = f"phoenix_t_h2_{secrets.token_hex(5)}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at PHOENIX_TEST_PG_URL (run scripts/services.sh up): {exc}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield _url_for(name)
    finally:
        drop_database(ADMIN_URL, name)


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Environment for `phoenix_auth.cli.main`: this test's database, cheap argon2 parameters."""
    for key in list(os.environ):
        if key.startswith("PHOENIX_") and key != "PHOENIX_TEST_PG_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PHOENIX_ARGON2_MEMORY_KIB", "8192")
    monkeypatch.setenv("PHOENIX_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("PHOENIX_HASH_THREADS", "1")
    return db_url


@pytest.fixture
def migrated(cli_env: str) -> str:
    """A database on which `phoenix-auth migrate` has run once."""
    from phoenix_auth.cli import main

    assert main(["migrate"]) == 0
    return cli_env
