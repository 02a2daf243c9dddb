"""Throw-away PostgreSQL databases with the service's schema, uniquely named per test or session,
so tests of other engineers on the same server never see their tables, locks or NOTIFYs."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def url_for(server_url: str, database: str) -> str:
    """`server_url` pointing at another database of the same server."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def migrate(url: str) -> None:
    """`phoenix-auth migrate` on `url`, quietly: the schema and the seed's indexes."""
    from phoenix_auth.migrations import run_migrate

    run_migrate(url, log=lambda _line: None)


def create_migrated_database(admin_url: str, prefix: str = "phoenix_t_") -> str:
    """A new database named `prefix` + random, migrated; returns its URL."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = url_for(admin_url, name)
    try:
        migrate(url)
    except BaseException:
        drop_database(admin_url, name)
        raise
    return url


def drop_database(admin_url: str, name: str, attempts: int = 5) -> None:
    """DROP DATABASE ... WITH (FORCE) as a non-superuser, which PostgreSQL 15 refuses with
    InsufficientPrivilege when an autovacuum worker is in the database (its backend has no role
    the caller may signal); a plain DROP DATABASE cancels autovacuum itself, so after ending this
    role's own sessions that is tried, a few times, before giving up."""
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for attempt in range(attempts):
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
                return
            except psycopg.errors.InsufficientPrivilege:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()",
                    (name,),
                )
                try:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
                    return
                except (psycopg.errors.ObjectInUse, psycopg.errors.InsufficientPrivilege):
                    if attempt == attempts - 1:
                        raise
                    time.sleep(0.5 * (attempt + 1))


@contextlib.contextmanager
def migrated_database(admin_url: str, prefix: str = "phoenix_t_") -> Iterator[str]:
    """`with migrated_database(url) as db_url:` a migrated database, dropped at the end."""
    url = create_migrated_database(admin_url, prefix)
    try:
        yield url
    finally:
        drop_database(admin_url, urlsplit(url).path.lstrip("/"))
