"""Helpers shared by the auth integration tests (imported by conftest.py and the test modules).

Shared fixtures for the auth service's integration tests: real PostgreSQL, real Redis, no mocks.

- `database_url`: a uniquely named database per test session, migrated with the project's
  schema and the seed's indexes (`phoenix-auth migrate`), dropped at the end.
- `redis_url`: a private `redis-server` on a free loopback port (never the shared 6379).
- The service's environment, process, free ports and Redis come from `phoenix_testkit` (shared with
  the reliability tests and the benchmarks).
- `make_settings(**overrides)`: Settings pointing at both, with cheap argon2 parameters.
- `running_app(settings)`: an app with its lifespan running, driven by httpx + ASGITransport
  (requests to the public port); `admin_client(app)`: a client of the same app's admin port.
- `start_service(settings_env)`: a real uvicorn subprocess on a free port (for cross-process tests).
- `make_user(...)`: insert a user straight into the database (as another app would).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from phoenix_auth.app import create_app
from phoenix_auth.settings import Settings
from phoenix_testkit import service as testkit_service
from phoenix_testkit.databases import migrate, migrated_database
from phoenix_testkit.hashes import bcrypt_hash, fast_hash
from phoenix_testkit.ports import free_port
from phoenix_testkit.redis import RedisServer
from phoenix_testkit.service import FAST_ARGON2, TEST_SIGNING_KEY

__all__ = [
    "ADMIN_URL",
    "FAST_ARGON2",
    "TEST_SIGNING_KEY",
    "AuthUser",
    "RedisServer",
    "ServiceProcess",
    "TcpProxy",
    "admin_client",
    "bcrypt_hash",
    "fast_hash",
    "free_port",
    "migrate",
    "migrated_database",
    "running_app",
    "scrape",
    "settings_env",
]

ADMIN_URL = os.environ.get(
    "PHOENIX_TEST_ADMIN_URL", "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix_test"
)


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, peer: str | None = None
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # A fresh client address per app, so per-IP throttle counters never leak between tests.
        peer = peer or f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            client.peer_ip = peer  # type: ignore[attr-defined]
            yield app, client


@contextlib.asynccontextmanager
async def admin_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app`'s admin listener: ASGITransport puts the URL's port in scope["server"],
    which is how the app tells its two listeners apart."""
    transport = httpx.ASGITransport(app=app, client=("10.255.0.1", 40000))
    base_url = f"http://testserver:{app.resources.settings.admin_port}"
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


async def scrape(app: Any) -> str:
    """The app's /metrics text, from its admin listener (the public port answers 404)."""
    async with admin_client(app) as admin:
        response = await admin.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text


def server_timing(response: httpx.Response) -> dict[str, float]:
    """The spans of the server's Server-Timing header that carry a duration (milliseconds)."""
    return {
        name.strip(): float(dur)
        for name, _, dur in (part.partition(";dur=") for part in response.headers["server-timing"].split(","))
        if dur
    }


class TimingRounds:
    """Failed-login times gathered in rounds, one try of each kind per round in random order, and
    judged as an attacker would average them: the gap of a kind from the reference kind is the
    median of the per-round differences. Pairing inside a round cancels what a shared machine's
    load does to all kinds alike (a neighbour's build doubles every verify for a minute), which
    the difference of two medians taken over minutes does not: in CI runs that drift alone made
    gaps of 5-10 ms between kinds whose code paths are the same."""

    def __init__(self, *kinds: str) -> None:
        self.times: dict[str, list[float]] = {kind: [] for kind in kinds}

    def add(self, kind: str, seconds: float) -> None:
        self.times[kind].append(seconds)

    def gaps_ms(self, reference: str) -> dict[str, float]:
        ref = self.times[reference]
        return {
            kind: abs(statistics.median(a - b for a, b in zip(values, ref, strict=True))) * 1000
            for kind, values in self.times.items()
            if kind != reference
        }

    def medians_ms(self) -> dict[str, float]:
        return {kind: round(statistics.median(values) * 1000, 2) for kind, values in self.times.items()}


@dataclass
class AuthUser:
    id: str
    email: str
    password: str


class ServiceProcess(testkit_service.ServiceProcess):
    """`phoenix_auth.server.run` on free ports, configured by environment."""

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        cmd = [
            sys.executable,
            "-c",
            "from phoenix_auth.server import run; from phoenix_auth.settings import Settings; "
            "run(Settings())",
        ]
        super().__init__(cmd, {**env, "PHOENIX_WORKERS": str(workers)})

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until /api/phoenix/health answers 200 with the invalidation listener connected."""
        self.wait_until(
            "/api/phoenix/health",
            lambda status, body: status == 200 and body["cache"]["stats"]["listener"]["connected"],
            timeout,
        )

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)


settings_env = testkit_service.service_env


class TcpProxy:
    """An asyncio TCP forwarder on a free loopback port, to cut PostgreSQL off from one app
    without stopping the shared server. `stop()` closes the listener and every open connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


@contextlib.asynccontextmanager
async def slow_link(upstream_port: int, delay: float) -> AsyncIterator[int]:
    """A TCP proxy to 127.0.0.1:`upstream_port` that holds what the client sends for `delay`
    seconds before passing it on; yields its port."""

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: float) -> None:
        try:
            while data := await src.read(65536):
                if hold:
                    await asyncio.sleep(hold)
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        with contextlib.suppress(asyncio.CancelledError):  # the proxy closing under a connection
            await asyncio.gather(
                pump(reader, up_writer, delay), pump(up_reader, writer, 0), return_exceptions=True
            )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def session_count(database_url: str, user_id: str) -> int:
    """Rows of `phoenix_sessions` for one user (revoked or not), read as `database_url`'s role."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM phoenix_sessions WHERE user_id = %s", (user_id,)).fetchone()
    assert row is not None
    return int(row[0])
