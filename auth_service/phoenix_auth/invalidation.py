"""LISTEN `phoenix_invalidate` on a dedicated connection and drop cache entries on every notification.

The schema's triggers NOTIFY on every UPDATE/DELETE of `users` (by Phoenix or any other app) and
of `phoenix_sessions`, so each replica learns of a password change, disable, role change,
delete or session revocation within milliseconds of the commit.

The connection is not from the pool (a pooled connection would be borrowed forever and could be
reset). It reconnects forever with capped exponential backoff plus jitter. While it is down the
caches are bypassed (`AuthCache.listener_down`), and on every (re)connect L1 is cleared and L2 swept
(`AuthCache.listener_up`), because notifications sent while nobody listened are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random

import psycopg

from .cache import AuthCache
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("phoenix_auth.invalidation")

CHANNEL = "phoenix_invalidate"
BACKOFF_START = 0.1
BACKOFF_MAX = 5.0
KEEPALIVE_SECONDS = 10.0  # a silent connection is probed this often, so a dead one is noticed


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it is done, cancelling again if it carries on: on Python 3.11
    `asyncio.wait_for` (which redis-py uses to send a command) swallows a cancellation that lands
    as the command completes, and a single cancel then left shutdown waiting forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


class InvalidationListener:
    """Background task owning one LISTEN connection."""

    def __init__(self, settings: Settings, cache: AuthCache, metrics: Metrics) -> None:
        self._settings = settings
        self._cache = cache
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._l2_queue: asyncio.Queue[list[str]] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.received = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="phoenix-invalidation-listener")
        self._drain_task = asyncio.create_task(self._drain_l2(), name="phoenix-invalidation-l2")

    async def stop(self) -> None:
        for task in (self._task, self._drain_task):
            if task is not None:
                await _cancel(task)

    async def _run(self) -> None:
        delay = BACKOFF_START
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._settings.database_url.get_secret_value(),
                    autocommit=True,
                    connect_timeout=3,
                    application_name="phoenix-auth-listener",
                )
            except psycopg.Error as exc:
                log.warning(
                    "invalidation listener cannot connect",
                    extra={"fields": {"error": type(exc).__name__, "retry_in": round(delay, 2)}},
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._cache.listener_up()
                    self.connected.set()
                    self._metrics.dependency_up.labels("listener").set(1)
                    log.info(
                        "invalidation listener connected", extra={"fields": {"reconnects": self.reconnects}}
                    )
                    delay = BACKOFF_START
                    await self._consume(conn)
            except psycopg.Error as exc:
                log.warning(
                    "invalidation listener lost its connection",
                    extra={"fields": {"error": type(exc).__name__}},
                )
            finally:
                self.connected.clear()
                self._cache.listener_down()
                self._metrics.dependency_up.labels("listener").set(0)
            self.reconnects += 1
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(BACKOFF_MAX, delay * 2)

    async def _consume(self, conn: psycopg.AsyncConnection) -> None:
        """Handle notifications; probe the connection when it has been silent for a while.

        The loop body never awaits: psycopg's `notifies()` holds the connection lock while it is
        suspended at a yield, so awaiting there (and being cancelled) could deadlock the close.
        L1 is dropped synchronously; L2 deletions go to a queue drained by `_drain_l2`."""
        while True:
            async with contextlib.aclosing(conn.notifies(timeout=KEEPALIVE_SECONDS)) as notifies:
                async for notify in notifies:
                    self.handle(notify.payload)
            await conn.execute("SELECT 1")

    def handle(self, payload: str) -> None:
        """Apply one notification payload (JSON from the schema's triggers): L1 now, L2 queued."""
        self.received += 1
        try:
            message = json.loads(payload)
            kind = message.get("kind")
        except (ValueError, AttributeError):
            log.warning("ignored malformed invalidation payload")
            return
        keys: list[str] = []
        if kind == "user":
            keys = self._cache.drop_user_l1(message.get("id"), message.get("email"))
            self._metrics.invalidations.labels("user").inc()
        elif kind == "session":
            hex_hash = message.get("hash")
            if isinstance(hex_hash, str):
                keys = self._cache.drop_session_l1(hex_hash)
                self._metrics.invalidations.labels("session").inc()
        else:
            return
        self._metrics.stats.invalidations += 1
        if keys:
            self._l2_queue.put_nowait(keys)

    async def _drain_l2(self) -> None:
        """Delete invalidated L2 keys in batches (every replica does this; deletes are idempotent)."""
        while True:
            keys = await self._l2_queue.get()
            while not self._l2_queue.empty() and len(keys) < 500:
                keys.extend(self._l2_queue.get_nowait())
            await self._cache.delete_l2(keys)
