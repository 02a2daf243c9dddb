"""Helpers of the reliability tests: processes we own and may kill, and load we can bound.

Why a private PostgreSQL: these tests stop, kill and restart the database under load, and other
engineers' tests use the shared cluster on 5432 at the same time. So each test session creates
its own cluster with `initdb` in a temp dir (run as the `postgres` user when we are root), on a
free loopback port, with a unique superuser password (which the secrets test also plants).

- `PrivatePostgres`: initdb/start/stop(mode)/restart of a throw-away cluster; `create_database()`
  gives a migrated database of the project's schema.
- `PhoenixServer`: the real `phoenix-auth serve` console script as a subprocess on a free port,
  its stdout+stderr captured to a file, RSS of the process tree from /proc.
- `LoadRecorder` / `Sample`: every request's start time, latency, status and error code.

Free ports, the private redis-server, the service's environment and process, Prometheus parsing and
percentiles come from `phoenix_testkit` (shared with the auth integration tests and the benchmarks).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from phoenix_testkit import service as testkit_service
from phoenix_testkit.databases import create_migrated_database
from phoenix_testkit.hashes import fast_hash
from phoenix_testkit.ports import free_port
from phoenix_testkit.prometheus import metric_value
from phoenix_testkit.redis import RedisServer
from phoenix_testkit.service import FAST_ARGON2
from phoenix_testkit.stats import percentile

__all__ = [
    "CLIENT_LIMITS",
    "FAST_ARGON2",
    "LoadRecorder",
    "PhoenixServer",
    "PrivatePostgres",
    "RedisServer",
    "Sample",
    "fast_hash",
    "free_port",
    "metric_value",
    "percentile",
]

# The service closes idle keep-alive connections after 5 s (uvicorn timeout_keep_alive): a client
# reusing one at that very moment gets a ReadError that says nothing about the service. Clients of
# these tests drop idle connections after 2 s instead.
CLIENT_LIMITS = httpx.Limits(max_connections=128, max_keepalive_connections=128, keepalive_expiry=2.0)

PG_BIN = Path(os.environ.get("PHOENIX_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries needed for a private cluster are not installed."""


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port, owned by one test session."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise PostgresUnavailable(f"{PG_BIN}/initdb not found (install postgresql-15)")
        self.dir = Path(tempfile.mkdtemp(prefix="phoenix-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self.port = free_port()
        # Unique per session, so the secrets test can grep for it.
        self.password = "pgpw-" + secrets.token_hex(12)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=120,
        )
        pwfile.unlink()

    def _run(self, cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            _as_postgres(cmd), capture_output=True, text=True, timeout=timeout, check=False, cwd=self.dir
        )
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=60 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=on -c shared_buffers=32MB"
        )
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        """`mode` is pg_ctl's: smart, fast, or immediate (a crash: recovery runs on the next start)."""
        with contextlib.suppress(RuntimeError):
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def running(self) -> bool:
        result = subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.dir,
        )
        return result.returncode == 0

    def pids(self) -> list[int]:
        """The postmaster and its children (backends, background workers)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return process_tree(int((self.data / "postmaster.pid").read_text().split()[0]))
        return []

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new database with the project's schema and the seed's indexes; returns its URL."""
        return create_migrated_database(self.url(), prefix="phoenix_r_")

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def make_users(url: str, count: int, hashed: Any = None, prefix: str = "r") -> list[tuple[str, str, str]]:
    """Insert `count` users the way another app would; returns [(id, email, password)].

    `hashed(password) -> str` picks the hash function (fast argon2id by default)."""
    hashed = hashed or fast_hash
    tag = uuid.uuid4().hex[:8]
    rows = []
    for i in range(count):
        email = f"{prefix}-{tag}-{i}@example.com"
        password = secrets.token_urlsafe(12)
        rows.append((email, password, hashed(password)))
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        for email, password, digest in rows:
            row = conn.execute(
                "INSERT INTO users (email, name, role, hashed_password, team_name) "
                "VALUES (%s, 'Rel User', 'user', %s, 'Team R') RETURNING id",
                (email, digest),
            ).fetchone()
            assert row is not None
            out.append((row[0], email, password))
    return out


def base_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of a `phoenix-auth serve` process: the test service's, two hash threads, one worker."""
    defaults = {
        "PHOENIX_ARGON2_PARALLELISM": "1",
        "PHOENIX_HASH_THREADS": "2",
        "PHOENIX_MAX_DB_CONNECTIONS": "4",
        "PHOENIX_WORKERS": "1",
    }
    return testkit_service.service_env(database_url, redis_url, **{**defaults, **extra})


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_jiffies(pid: int) -> int:
    """utime + stime of one process (0 when it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    idle = values[3] + values[4]
    return total - idle, total


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(_children(current))
    return out


class PhoenixServer(testkit_service.ServiceProcess):
    """`phoenix-auth serve` on free ports with the given environment; output captured to a file."""

    def __init__(self, env: dict[str, str]) -> None:
        exe = shutil.which("phoenix-auth")
        cmd = (
            [exe, "serve"]
            if exe
            else [
                sys.executable,
                "-c",
                "import sys; from phoenix_auth.cli import main; "
                "sys.argv=['phoenix-auth','serve']; raise SystemExit(main())",
            ]
        )
        super().__init__(cmd, {**env, "PHOENIX_HOST": "127.0.0.1"}, log_prefix="phoenix-rel-")
        self.env = dict(env)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until /readyz is 200 (PostgreSQL reachable) and the invalidation listener is up."""
        self.wait_until(
            "/readyz",
            lambda status, body: status == 200 and isinstance(body, dict) and bool(body.get("listener")),
            timeout,
        )

    def pids(self) -> list[int]:
        """The server process and its uvicorn worker processes (if any)."""
        return [self.proc.pid, *_children(self.proc.pid)]

    def rss_kib(self) -> dict[int, int]:
        return {pid: rss_kib(pid) for pid in self.pids()}


# --------------------------------------------------------------------------- load bookkeeping
@dataclass(frozen=True, slots=True)
class Sample:
    kind: str  # "login" | "session" | ...
    started: float  # monotonic seconds
    latency: float  # seconds
    status: int  # 0 = transport error (connection refused, timeout, reset)
    error: str | None  # the body's `error` code, or the transport exception's type
    message: str | None = None
    retry_after: str | None = None


@dataclass
class LoadRecorder:
    samples: list[Sample] = field(default_factory=list)

    async def call(self, kind: str, coro: Any) -> httpx.Response | None:
        """Await one request, record it, never raise for HTTP-level or transport failures."""
        start = time.monotonic()
        try:
            response: httpx.Response = await coro
        except httpx.HTTPError as exc:
            self.samples.append(Sample(kind, start, time.monotonic() - start, 0, type(exc).__name__))
            return None
        latency = time.monotonic() - start
        code = message = None
        if response.status_code >= 400:
            with contextlib.suppress(ValueError, AttributeError):
                body = response.json()
                code, message = body.get("error"), body.get("message")
        self.samples.append(
            Sample(
                kind, start, latency, response.status_code, code, message, response.headers.get("retry-after")
            )
        )
        return response

    def between(self, start: float, end: float, kind: str | None = None) -> list[Sample]:
        return [s for s in self.samples if start <= s.started < end and (kind is None or s.kind == kind)]

    def by_status(self, samples: list[Sample] | None = None) -> dict[int, int]:
        out: dict[int, int] = {}
        for s in self.samples if samples is None else samples:
            out[s.status] = out.get(s.status, 0) + 1
        return out
