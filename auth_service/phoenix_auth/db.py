"""PostgreSQL access: one psycopg_pool AsyncConnectionPool per process and every query the service runs.

- Pool size `PHOENIX_MAX_DB_CONNECTIONS`; a request waits at most `db_pool_timeout` for a
  connection and then gets a typed error: `PoolExhausted` (all connections busy) or
  `DatabaseUnavailable` (the pool cannot connect). Both become 503 with `Retry-After`.
- While the database is known to be down, waits are cut to `DOWN_WAIT` so clients get a fast
  503 instead of queueing; the pool keeps reconnecting in the background and recovers by itself.
- Every connection is autocommit, prepares statements on first use (`prepare_threshold=0`), and
  has `statement_timeout` set at connect time, so a stuck query cannot hold a connection forever.
- The statements themselves live in `queries.py`, where `phoenix-auth migrate` proves with EXPLAIN
  that the hot ones are answered from their indexes.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from .errors import DatabaseUnavailable, PhoenixError, PoolExhausted
from .metrics import Metrics
from .queries import (
    SQL_AUTH_RECORD,
    SQL_CAN_DISCARD,
    SQL_DISCARD_SESSION,
    SQL_HASH_KINDS,
    SQL_INSERT_SESSION,
    SQL_PING,
    SQL_REHASH,
    SQL_REVOKE_SESSION,
    SQL_REVOKE_USER_SESSIONS,
    SQL_SESSION,
    SQL_USER_BY_ID,
    SQL_USER_EXISTS,
)
from .records import SessionRecord, UserRecord
from .settings import Settings

log = logging.getLogger("phoenix_auth.db")

DOWN_WAIT = 0.25  # seconds a request waits for a connection while the database is known down

HASH_KINDS_TIMEOUT_MS = 120_000


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def _user(row: tuple[Any, ...]) -> UserRecord:
    return UserRecord(
        id=row[0],
        email=row[1],
        name=row[2],
        role=row[3],
        hashed_password=row[4],
        team_name=row[5],
        disabled=bool(row[6]),
        password_changed_at=_epoch(row[7]),
    )


class Database:
    """The process's connection pool plus typed query methods; opened and closed by the app lifespan."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self.healthy = False
        self.last_error: str | None = None
        db = self

        class _TrackedConnection(AsyncConnection):
            """Records connect success/failure so we know when the database is down."""

            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Any:
                try:
                    conn = await super().connect(*args, **kwargs)
                except psycopg.Error as exc:
                    db._mark_down(exc)
                    raise
                db._mark_up()
                return conn

        self.pool = AsyncConnectionPool(
            settings.database_url.get_secret_value(),
            min_size=settings.min_db_connections,
            max_size=settings.max_db_connections,
            timeout=settings.db_pool_timeout,
            open=False,
            name="phoenix",
            connection_class=_TrackedConnection,
            kwargs={
                "autocommit": True,
                "prepare_threshold": 0,
                "connect_timeout": 3,
                "application_name": "phoenix-auth",
                "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            },
            reconnect_timeout=float("inf"),
            max_idle=600,
        )

    def _mark_down(self, exc: BaseException) -> None:
        if self.healthy or self.last_error is None:
            log.warning("database unreachable", extra={"fields": {"error": type(exc).__name__}})
        self.healthy = False
        self.last_error = type(exc).__name__
        self._metrics.dependency_up.labels("database").set(0)

    def _mark_up(self) -> None:
        if not self.healthy:
            log.info("database reachable")
            self.healthy = True
            self._metrics.dependency_up.labels("database").set(1)

    async def open(self) -> None:
        """Start the pool without waiting: the service starts (and answers 503) even if PostgreSQL is down."""
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=2)

    def pool_stats(self) -> dict[str, int]:
        stats = self.pool.get_stats()
        size = stats.get("pool_size", 0)
        available = stats.get("pool_available", 0)
        return {
            "in_use": max(0, size - available),
            "idle": available,
            "waiting": stats.get("requests_waiting", 0),
            "size": size,
            "max": self._settings.max_db_connections,
            "requests": stats.get("requests_num", 0),
            "timeouts": stats.get("requests_errors", 0),
            "connection_errors": stats.get("connections_errors", 0),
        }

    def _timeout_error(self) -> PhoenixError:
        stats = self.pool.get_stats()
        if self.healthy and stats.get("pool_size", 0) >= self._settings.max_db_connections:
            return PoolExhausted(retry_after=self._settings.db_pool_timeout)
        return DatabaseUnavailable(retry_after=2)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection, or a typed 503 error within a bounded time."""
        wait = (
            self._settings.db_pool_timeout if self.healthy else min(DOWN_WAIT, self._settings.db_pool_timeout)
        )
        try:
            async with self.pool.connection(timeout=wait) as conn:
                yield conn
        except PoolTimeout:
            raise self._timeout_error() from None
        except PoolClosed:
            raise DatabaseUnavailable("The service is shutting down.", retry_after=1) from None
        except psycopg.errors.QueryCanceled:
            raise DatabaseUnavailable("The database did not answer in time.", retry_after=1) from None
        except psycopg.OperationalError as exc:
            self._mark_down(exc)
            raise DatabaseUnavailable(retry_after=2) from None

    async def _fetch(self, name: str, sql: str, params: tuple[Any, ...], many: bool = False) -> Any:
        start = time.perf_counter()
        ok = False
        try:
            async with self.connection() as conn:
                cur = await conn.execute(sql, params)
                result = (
                    (await cur.fetchall()) if many else (await cur.fetchone() if cur.description else None)
                )
                ok = True
                if not self.healthy:
                    self._mark_up()
                return result
        finally:
            self._metrics.db(name, time.perf_counter() - start, ok)

    async def _execute(self, name: str, sql: str, params: tuple[Any, ...]) -> int:
        start = time.perf_counter()
        ok = False
        try:
            async with self.connection() as conn:
                cur = await conn.execute(sql, params)
                ok = True
                return cur.rowcount
        finally:
            self._metrics.db(name, time.perf_counter() - start, ok)

    # --- queries ---
    async def auth_record(self, email_lower: str) -> UserRecord | None:
        row = await self._fetch("auth_record", SQL_AUTH_RECORD, (email_lower,))
        return _user(row) if row else None

    async def user_by_id(self, user_id: str) -> UserRecord | None:
        row = await self._fetch("user_by_id", SQL_USER_BY_ID, (user_id,))
        return _user(row) if row else None

    async def insert_session(
        self,
        token_hash: bytes,
        user_id: str,
        expected_hash: str,
        expires_at: float,
        client_ip: str | None,
        user_agent: str | None,
    ) -> tuple[str, str | None, str, str | None] | None:
        """Insert a session if the user is enabled and still has `expected_hash`; return fresh profile."""
        if client_ip is not None:
            try:
                ipaddress.ip_address(client_ip)
            except ValueError:
                client_ip = None  # e.g. a unix-socket peer
        user_agent = (user_agent or "").replace("\x00", "")[:512]
        row = await self._fetch(
            "insert_session",
            SQL_INSERT_SESSION,
            (user_id, expected_hash, token_hash, expires_at, client_ip, user_agent),
        )
        return (row[0], row[1], row[2], row[3]) if row else None

    async def discard_session(self, token_hash: bytes) -> bool:
        """Delete a session never handed out (`phoenix_discard_session`); True if it was there."""
        row = await self._fetch("discard_session", SQL_DISCARD_SESSION, (token_hash,))
        return bool(row and row[0])

    async def can_discard_sessions(self) -> bool:
        """Asked at start-up, like the census: not a request's query, not in the query metrics."""
        async with self.connection() as conn:
            cur = await conn.execute(SQL_CAN_DISCARD)
            row = await cur.fetchone()
        return bool(row and row[0])

    def idle_connections(self) -> int:
        """Connections in the pool that nobody holds right now."""
        return int(self.pool.get_stats().get("pool_available", 0))

    async def session(self, token_hash: bytes) -> tuple[SessionRecord, UserRecord] | None:
        row = await self._fetch("session", SQL_SESSION, (token_hash,))
        if not row:
            return None
        session = SessionRecord(
            user_id=row[0], expires_at=_epoch(row[1]), revoked=bool(row[2]), created_at=_epoch(row[3])
        )
        return session, _user((*row[4:8], None, *row[8:]))

    async def revoke_session(self, token_hash: bytes) -> bool:
        row = await self._fetch("revoke_session", SQL_REVOKE_SESSION, (token_hash,))
        return row is not None

    async def revoke_user_sessions(self, user_id: str) -> list[bytes] | None:
        """Revoke every live session of a user and return their token hashes; None when the user
        does not exist."""
        if "\x00" in user_id:  # PostgreSQL text cannot hold NUL (DataError): no user has such an id
            return None
        if await self._fetch("user_exists", SQL_USER_EXISTS, (user_id,)) is None:
            return None
        rows = await self._fetch("revoke_user_sessions", SQL_REVOKE_USER_SESSIONS, (user_id,), many=True)
        return [bytes(row[0]) for row in rows]

    async def rehash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        return await self._execute("rehash", SQL_REHASH, (new_hash, user_id, old_hash)) == 1

    async def hash_kinds(self) -> list[str]:
        """The distinct hash prefixes of enabled users (see SQL_HASH_KINDS)."""
        async with self.connection() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL statement_timeout = {HASH_KINDS_TIMEOUT_MS}")
            cur = await conn.execute(SQL_HASH_KINDS)
            return [row[0] for row in await cur.fetchall() if row[0]]

    async def reachable(self, wait: float = 1.0) -> bool:
        """For probes: a fresh `SELECT 1`, unless every connection is busy and the last query worked.

        A saturated pool is a reason to queue, not to be marked unready (which would move the
        load onto the other replicas and cascade); while all connections are in use, the outcome
        of those very queries keeps `healthy` current."""
        if (
            self.healthy
            and self.pool.get_stats().get("pool_available", 0) == 0
            and self.pool_stats()["in_use"] > 0
        ):
            return True
        return await self.ping(wait)

    async def ping(self, wait: float = 1.0) -> bool:
        """True when a `SELECT 1` succeeds after at most `wait` seconds for a connection."""
        start = time.perf_counter()
        try:
            async with self.pool.connection(timeout=wait) as conn:
                await conn.execute(SQL_PING)
        except (PoolTimeout, PoolClosed, psycopg.Error) as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._mark_down(exc)
            return False
        finally:
            self._metrics.db("ping", time.perf_counter() - start)
        self._mark_up()
        return True
