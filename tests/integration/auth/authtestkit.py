"""Helpers shared by the auth integration tests (imported by conftest.py and the test modules).

Shared fixtures for the auth service's integration tests: real PostgreSQL, real Redis, no mocks.

- `database_url`: a uniquely named database per test session, migrated with the project's
  schema (and the seed's indexes when `migrations.run_migrate` is available), dropped at the end.
- `redis_url`: a private `redis-server` on a free loopback port (never the shared 6379).
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
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import psycopg
from argon2 import PasswordHasher as Argon2
from argon2 import Type

from phoenix_auth.app import create_app
from phoenix_auth.settings import Settings

ADMIN_URL = os.environ.get(
    "PHOENIX_TEST_ADMIN_URL", "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix_test"
)
SCHEMA = Path(__file__).resolve().parents[3] / "auth_service" / "phoenix_auth" / "sql" / "schema.sql"
FAST_ARGON2 = {"argon2_memory_kib": 8 * 1024, "argon2_time_cost": 1, "argon2_parallelism": 1}
# The L2 signing key every test service gets unless a test says otherwise (unset, L2 is off).
TEST_SIGNING_KEY = "test-l2-key-" + secrets.token_urlsafe(32)
_fast_hasher = Argon2(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _url_for(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def _migrate(url: str) -> None:
    try:
        from phoenix_auth import migrations

        migrations.run_migrate(url, log=lambda _line: None)
        return
    except ImportError:
        pass
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())
        conn.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_users_email_auth_covering ON users (lower(email)) "
            "INCLUDE (id, email, name, role, hashed_password, team_name, disabled, password_changed_at)"
        )


class RedisServer:
    """A private redis-server in a temp dir; can be killed and restarted on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="phoenix-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        """`with RedisServer() as server:` starts it and always cleans up (fixtures use this)."""
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


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
    base_url = f"http://testserver:{app.state.settings.admin_port}"
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


async def scrape(app: Any) -> str:
    """The app's /metrics text, from its admin listener (the public port answers 404)."""
    async with admin_client(app) as admin:
        response = await admin.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text


def fast_hash(password: str) -> str:
    return _fast_hasher.hash(password)


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


@dataclass
class AuthUser:
    id: str
    email: str
    password: str


class ServiceProcess:
    """`uvicorn phoenix_auth.app:app_from_env` on a free port, configured by environment."""

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="phoenix-svc-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {
            **os.environ,
            **env,
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_ADMIN_PORT": str(self.admin_port),
            "PHOENIX_WORKERS": str(workers),
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from phoenix_auth.server import run; from phoenix_auth.settings import Settings; "
                "run(Settings())",
            ],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(self.base_url + "/api/phoenix/health", timeout=1)
                if r.status_code == 200 and r.json()["cache"]["stats"]["listener"]["connected"]:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"service not ready:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def settings_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PHOENIX_ARGON2_MEMORY_KIB": str(FAST_ARGON2["argon2_memory_kib"]),
        "PHOENIX_ARGON2_TIME_COST": "1",
        "PHOENIX_HASH_THREADS": "1",
        "PHOENIX_MAX_DB_CONNECTIONS": "3",
        "PHOENIX_MIN_DB_CONNECTIONS": "1",
        "PHOENIX_SUMMARY_INTERVAL": "0",
        "PHOENIX_LOG_FORMAT": "json",
        "PHOENIX_CACHE_SIGNING_KEY": TEST_SIGNING_KEY,
    }
    env.update(extra)
    return env


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
